"""Datasets as ``tf.data`` pipelines of (float32 image in [0, 1], int64 label).

Sources, in order: the ``data_dir`` argument (flag ``--data_dir``), the
``TFDISC_DATA_DIR`` environment variable, then tensorflow-datasets (which
downloads on a machine with internet access).

Local formats understood in a data directory (the directory itself, or its
sub-directory named after the dataset, e.g. ``$TFDISC_DATA_DIR/mnist``):

* MNIST format: ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]`` (MNIST,
  Fashion-MNIST and any other MNIST-format set).
* CIFAR python batches (``cifar-10-batches-py/`` with ``data_batch_1..5`` and
  ``test_batch``; ``cifar-100-python/`` with ``train`` and ``test``) or binary
  batches (``cifar-10-batches-bin/``, ``cifar-100-binary/``).
* An image-folder tree ``train|test/<class>/*.{png,jpg,jpeg}`` (``val`` is
  accepted for ``test``), or a ``.tar.gz``/``.tgz``/``.tar`` archive of one.

The readers of these formats, and their checks, are in ``tfdisc.data_formats``
(one module per format family). Each dataset is one entry of the registry
``tfdisc.datasets``: shape, classes, the layouts above it may come in, official
split sizes, tensorflow-datasets name; ``tfdisc.datasets.register`` adds one.

Labels of an image-folder dataset come from ONE class map per dataset, the
same for every split: the sorted class directories of the ``train`` split
(empty class directories count), or, for ``cifar10`` when every class name is
a CIFAR10 class name, the official CIFAR10 order (airplane=0 ... truck=9).
A ``test`` split may lack classes; a class it holds that the map does not
know is an error. A tree without ``train/`` can be read only if its split
holds every class of the dataset.

What ``load_arrays`` (and so ``load``) rejects, with a ``DataError`` that
names the file:

* a corrupt or truncated ``.gz`` file (IDX or ``.tar.gz``);
* an IDX file whose header does not match its size, or whose image and
  label counts differ;
* a CIFAR python batch that is corrupt, truncated, not a CIFAR batch, holds
  a different number of images and labels, or refers to anything but plain
  data and numpy arrays (batches are read with a restricted unpickler:
  nothing in the file is executed, a module it names is never imported);
* CIFAR binary batches whose size is not a whole number of records, or
  CIFAR10 batch files of different sizes (the official ones hold 10000
  records each, so one cut at a record boundary is caught);
* a tar archive that ends without its end-of-archive block (cut at a member
  boundary), has a corrupt header, or whose gzip stream fails its CRC or
  length check, even after the images it needs were read;
* an image that cannot be decoded; a split that holds a class the class map
  does not know; a split without any example; labels outside
  ``[0, num_classes)``.

An image whose shape is not the dataset's (e.g. 32x32 IDX images read as
MNIST, whose images are 28x28) is a ``DataError`` naming the file.

``from_arrays`` (and so ``load``) raises ``ValueError`` for no examples (e.g.
a slice ``x[:0]``), ``x`` and ``y`` of different lengths, and a bad
``batch_size`` or ``limit``. It scales images from 0-255 to [0, 1] once:
integer arrays are 0-255, float arrays whose values all lie in [0, 1] are
already scaled (``value_range`` says it explicitly). A batch larger than the
data is one batch of all of it.

Counts are logged (absl INFO) per class for every local load, with a warning
when a split's size differs from the official one in ``SPLIT_SIZES`` (a subset
is legitimate, e.g. the small synthetic sets of the tests, so this is not an
error) or when a class of the map has no example in the split.

Decoded arrays are cached as ``.npz`` under ``TFDISC_CACHE_DIR`` (default
``~/.cache/tfdisc``), keyed by the source files' paths, sizes and mtimes, and
read back with ``allow_pickle=False``.
"""
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tfdisc import datasets
from tfdisc.data_formats import DataError, read_idx  # noqa: F401 (public here too)
from tfdisc.data_formats import cache

__all__ = ["DATASETS", "SPLIT_SIZES", "DataError", "from_arrays", "info", "load", "load_arrays",
           "read_idx", "to_float"]

#: ``{name: tfdisc.datasets.Dataset}``: the registry itself (add with ``tfdisc.datasets.register``).
DATASETS = datasets.REGISTRY
#: ``{name: {split: number of examples of the official split}}``, from the registry.
SPLIT_SIZES = datasets.SPLIT_SIZES


def info(name):
    """(image_shape, num_classes) of a dataset name."""
    spec = datasets.get(name)
    return spec.shape, spec.num_classes


def _check_split(split):
    if split not in datasets.SPLITS:
        raise ValueError(f"`split` must be one of {datasets.SPLITS}, got {split!r}.")


# ---------------------------------------------------------------- local files

def _candidate_dirs(directory, spec):
    dirs = [directory] + [os.path.join(directory, sub) for sub in spec.candidate_subdirs()]
    return [d for d in dirs if os.path.isdir(d)]


def _local_arrays(directory, spec, split):
    """``(x, y, class names or None, source)`` from a local directory, or None.

    The first layout of the entry found in the first candidate directory wins.
    """
    for d in _candidate_dirs(directory, spec):
        for layout in spec.layouts:
            found = layout.find(d, split, spec)
            if found is not None:
                return cache.cached(found.kind, spec.name, split, found.sources,
                                    found.read) + (found.where,)
    return None


def _tfds_arrays(spec, split):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    name, tfds_name = spec.name, spec.tfds_name
    tfds_split = "train" if split == "train" else spec.tfds_test_split
    try:
        ds = tfds.load(tfds_name, split=tfds_split, as_supervised=True, batch_size=-1)
    except Exception as e:  # network, missing manual download, ...
        raise DataError(
            f"No local copy of {name!r} was found (pass --data_dir / data_dir=, or set "
            f"TFDISC_DATA_DIR, to a directory with {spec.layout_help}), and "
            f"tensorflow-datasets could not provide {tfds_name!r}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    x, y = tfds.as_numpy(ds)
    return np.asarray(x, np.uint8), np.asarray(y, np.int64)


def _report_counts(spec, split, y, classes, source):
    """Logs the examples per class; warns on an unofficial split size or an empty class."""
    name = spec.name
    num_classes = len(classes) if classes else spec.num_classes
    counts = np.bincount(y, minlength=num_classes)
    labels = classes or [str(i) for i in range(num_classes)]
    if len(counts) <= 20:
        per_class = ", ".join(f"{c} {n}" for c, n in zip(labels, counts))
    else:
        lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
        per_class = f"fewest {labels[lo]} {counts[lo]}, most {labels[hi]} {counts[hi]}"
    logging.info("%s %s from %s: %d examples, %d classes (%s).", name, split, source, len(y),
                 num_classes, per_class)
    expected = spec.split_sizes[split]
    if len(y) != expected:
        logging.warning("%s %s from %s holds %d examples; the official split has %d (fine for a "
                        "subset, otherwise the copy is incomplete).", name, split, source, len(y),
                        expected)
    empty = [c for c, n in zip(labels, counts) if n == 0]
    if empty:
        logging.warning("%s %s from %s has no example of %d classes: %s.", name, split, source,
                        len(empty), ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else ""))


def load_arrays(name, split, *, data_dir=None):
    """Loads a whole split as numpy arrays ``(uint8 images NHWC, int64 labels)``.

    Raises:
      ValueError: unknown dataset or split.
      DataError: a named or configured data directory that does not exist or
        holds missing, corrupt, truncated or unrecognised files, an empty
        split, or labels outside ``[0, num_classes)`` (module doc: "What
        ``load_arrays`` rejects"); or no local copy and tensorflow-datasets
        cannot provide the data.
    """
    spec = datasets.get(name)
    _check_split(split)
    directory = data_dir if data_dir else os.environ.get("TFDISC_DATA_DIR")
    if directory:
        source = "data_dir" if data_dir else "TFDISC_DATA_DIR"
        if not os.path.isdir(directory):
            raise DataError(f"{source} {directory!r} is not a directory; expected a directory with "
                            f"{spec.layout_help}.")
        arrays = _local_arrays(directory, spec, split)
        if arrays is None:
            raise DataError(f"{source} {directory!r} holds no {name} data; expected "
                            f"{spec.layout_help}.")
        x, y, classes, source = arrays
    else:
        (x, y), classes, source = _tfds_arrays(spec, split), None, "tensorflow-datasets"
    if len(y) == 0:
        raise DataError(f"The {name} {split} split from {source} holds no examples.")
    num_classes = spec.num_classes
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}] "
                        f"in {source}.")
    shape = spec.shape
    if tuple(x.shape[1:]) != shape:
        raise DataError(f"{source} holds {name} {split} images of shape {tuple(x.shape[1:])}, "
                        f"but {name} images are {shape} (height, width, channels): the file "
                        f"belongs to another dataset, or pass the dataset it holds.")
    _report_counts(spec, split, y, classes, source)
    return x, y


def to_float(images):
    """Integer (uint8) images in 0-255 → float32 in [0, 1].

    Raises:
      TypeError: float images: they may be in [0, 1] already, and a second
        division would make them black (use ``from_arrays(..., value_range=)``).
    """
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_integer:
        raise TypeError(f"to_float scales integer images in 0-255; got {images.dtype.name} "
                        f"images, which may be in [0, 1] already. Pass them to from_arrays with "
                        f"value_range=(0, 1) or (0, 255).")
    return tf.cast(images, tf.float32) / 255.0


_VALUE_RANGES = ((0, 255), (0, 1))


def _pixel_scale(x, value_range):
    """The divisor that maps ``x`` to [0, 1]: 255 or 1; checks the values lie in the range."""
    x = np.asarray(x)
    if x.dtype.kind not in "uif":
        raise TypeError(f"Images must be a numeric array, got dtype {x.dtype}.")
    if value_range is not None and tuple(value_range) not in _VALUE_RANGES:
        raise ValueError(f"`value_range` must be (0, 255), (0, 1) or None (inferred), got "
                         f"{value_range!r}.")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if x.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("Images hold NaN or infinite values.")
    given = value_range is not None
    if not given:
        value_range = (0, 255) if x.dtype.kind in "ui" or hi > 1.0 else (0, 1)
    if lo < value_range[0] or hi > value_range[1]:
        raise ValueError(f"Image values lie in [{lo:g}, {hi:g}], outside the "
                         f"{'given' if given else 'inferred'} value_range {tuple(value_range)}: "
                         f"images must be in 0-255 (integers or floats) or in [0, 1] (floats).")
    return float(value_range[1])


def load(name, split, *, data_dir=None, batch_size=128, shuffle=None, seed=0, limit=None,
         drop_remainder=False):
    """Loads a dataset split as a batched ``tf.data.Dataset`` of (image, label).

    Args:
      name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
        ``imagenet2012``, or any other name of ``tfdisc.datasets``.
      split: ``"train"`` or ``"test"`` (ImageNet's validation set for
        ``"test"``).
      data_dir: Local data directory (see module doc); defaults to
        ``$TFDISC_DATA_DIR``, then tensorflow-datasets.
      batch_size: Batch size (``None`` for unbatched).
      shuffle: Shuffle examples each epoch; defaults to ``split == "train"``.
      seed: Shuffle seed.
      limit: Keep only the first ``limit`` examples (before shuffling).

    Returns:
      ``tf.data.Dataset`` of (float32 image in [0, 1] of shape HWC, int64 label).

    Raises:
      ValueError: unknown dataset or split, bad ``batch_size`` or ``limit``.
      DataError: as ``load_arrays``.

    Example:
      >>> ds = load("mnist", "test", data_dir="../shared/datasets/mnist", limit=256)
    """
    x, y = load_arrays(name, split, data_dir=data_dir)
    return from_arrays(x, y, batch_size=batch_size, shuffle=split == "train" if shuffle is None
                       else shuffle, seed=seed, limit=limit, drop_remainder=drop_remainder)


def from_arrays(x, y, *, batch_size=128, shuffle=False, seed=0, limit=None, drop_remainder=False,
                value_range=None):
    """``tf.data`` pipeline over image and label arrays, as ``load`` builds it.

    Images come out as float32 in [0, 1], scaled once: ``value_range`` is the
    range of ``x``, ``(0, 255)`` or ``(0, 1)``; None infers it (integer arrays
    are 0-255; float arrays are 0-255 if a value exceeds 1, else [0, 1]).
    A ``batch_size`` above the number of examples gives one batch of all of
    them (as Keras does; tf.data would reserve memory for the whole batch).

    Raises:
      ValueError: bad ``batch_size``, ``limit`` or ``value_range``, values
        outside it (or NaN), ``x`` and ``y`` of different lengths, no examples
        (e.g. an empty slice of a split), or ``drop_remainder`` with fewer
        examples than one batch.
      TypeError: non-numeric images.
    """
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}.")
        x, y = x[:limit], y[:limit]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if len(x) != len(y):
        raise ValueError(f"`x` holds {len(x)} examples but `y` holds {len(y)} labels.")
    if len(y) == 0:
        raise ValueError(f"No examples to build a dataset from: `x` has shape {np.shape(x)} "
                         f"(an empty split, or a slice such as x[:0] or x[:-n] of a short one).")
    scale = _pixel_scale(x, value_range)
    if batch_size is not None and batch_size > len(y):
        if drop_remainder:
            raise ValueError(f"`batch_size` {batch_size} exceeds the {len(y)} examples and "
                             f"`drop_remainder` is set: there would be no batch at all.")
        batch_size = len(y)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(y), 60000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda image, label: (tf.cast(image, tf.float32) / scale, label),
                num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
