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

The readers of these formats, and their checks, are in ``tfdisc.data_formats``.

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
import hashlib
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tfdisc import data_formats
from tfdisc.data_formats import DataError, read_idx  # noqa: F401 (public here too)

__all__ = ["DATASETS", "SPLIT_SIZES", "DataError", "from_arrays", "info", "load", "load_arrays",
           "read_idx", "to_float"]

_CACHE_VERSION = 2
_ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".tar")
_SPLITS = ("train", "test")


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck")

# name -> (image shape, num_classes, tfds name, tfds test split name)
DATASETS = {
    "mnist": ((28, 28, 1), 10, "mnist", "test"),
    "fashion_mnist": ((28, 28, 1), 10, "fashion_mnist", "test"),
    "cifar10": ((32, 32, 3), 10, "cifar10", "test"),
    "cifar100": ((32, 32, 3), 100, "cifar100", "test"),
    "imagenet2012": ((224, 224, 3), 1000, "imagenet2012", "validation"),
}

# name -> {split: number of examples of the official split}
SPLIT_SIZES = {
    "mnist": {"train": 60000, "test": 10000},
    "fashion_mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
    "imagenet2012": {"train": 1281167, "test": 50000},
}

_EXPECTED_LAYOUT = {
    "mnist": "the four MNIST-format files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
             "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or uncompressed)",
    "cifar10": "cifar-10-batches-py/ or cifar-10-batches-bin/, or an image-folder tree "
               "train|test/<class>/*.png|jpg, or a .tar.gz of such a tree",
    "cifar100": "cifar-100-python/ or cifar-100-binary/, or an image-folder tree "
                "train|test/<class>/*.png|jpg, or a .tar.gz of such a tree",
    "imagenet2012": "an image-folder tree train|test/<class>/*.jpg (val accepted for test), or a "
                    ".tar.gz of such a tree",
}
_EXPECTED_LAYOUT["fashion_mnist"] = _EXPECTED_LAYOUT["mnist"]


def info(name):
    """(image_shape, num_classes) of a dataset name."""
    _check_name(name)
    shape, classes, _, _ = DATASETS[name]
    return shape, classes


def _check_name(name):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}.")


def _check_split(split):
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {_SPLITS}, got {split!r}.")


# ---------------------------------------------------------------- local files

def _find_file(directory, names):
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    return None


def _mnist_sources(directory, split):
    prefix = "train" if split == "train" else "t10k"
    images = _find_file(directory, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"])
    labels = _find_file(directory, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"])
    return images, labels

# ---------------------------------------------------------------- cache

def _cache_dir():
    return os.environ.get("TFDISC_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfdisc")


def _cache_key(kind, name, split, sources):
    h = hashlib.sha1(f"{_CACHE_VERSION}|{kind}|{name}|{split}".encode())
    for path in sources:
        stat = os.stat(path)
        h.update(f"|{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cached(kind, name, split, sources, loader):
    """``loader() -> (x, y[, class names])`` through the .npz cache; returns a 3-tuple."""
    key = _cache_key(kind, name, split, sources)
    path = os.path.join(_cache_dir(), f"{name}-{split}-{key}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as cached:
                classes = cached["classes"].tolist() if "classes" in cached else None
                return cached["x"], cached["y"], classes
        except Exception:  # a corrupt cache entry is rebuilt
            pass
    x, y, *rest = loader()
    classes = rest[0] if rest else None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        extra = {} if classes is None else {"classes": np.array(classes, dtype=str)}
        np.savez(tmp, x=x, y=y, **extra)
        os.replace(tmp, path)
    except OSError:  # read-only home: work without a cache
        pass
    return x, y, classes


# ---------------------------------------------------------------- dispatch

def _candidate_dirs(directory, name):
    dirs = [directory, os.path.join(directory, name)]
    if name == "imagenet2012":
        dirs.append(os.path.join(directory, "imagenet"))
    return [d for d in dirs if os.path.isdir(d)]


def _local_arrays(directory, name, split):
    """``(x, y, class names or None, source)`` from a local directory, or None."""
    shape, num_classes = DATASETS[name][:2]
    official = _CIFAR10_CLASSES if name == "cifar10" else None
    for d in _candidate_dirs(directory, name):
        if name in ("mnist", "fashion_mnist"):
            images, labels = _mnist_sources(d, split)
            if images or labels:
                if not (images and labels):
                    raise DataError(
                        f"Incomplete MNIST-format data in {d}: found {images or labels} but not "
                        f"its {'labels' if images else 'images'} file; expected "
                        f"{_EXPECTED_LAYOUT[name]}."
                    )
                return _cached("idx", name, split, [images, labels],
                               lambda: data_formats.read_mnist(images, labels)) + (images,)
            continue
        if name in ("cifar10", "cifar100"):
            c100 = name == "cifar100"
            for sub, reader in (("cifar-100-python" if c100 else "cifar-10-batches-py",
                                 data_formats.read_cifar_python),
                                ("cifar-100-binary" if c100 else "cifar-10-batches-bin",
                                 data_formats.read_cifar_binary)):
                batches = os.path.join(d, sub)
                if os.path.isdir(batches):
                    files = [os.path.join(batches, f) for f in sorted(os.listdir(batches))]
                    return _cached(sub, name, split, files,
                                   lambda: reader(batches, split, c100)) + (batches,)
        listing = data_formats.list_image_folder(d, split, num_classes=num_classes,
                                                 official=official)
        if listing is not None:
            classes, entries = listing
            return _cached(f"folder|{'/'.join(classes)}", name, split, [p for _, p in entries],
                           lambda: data_formats.read_image_folder(entries, shape) + (classes,)
                           ) + (d,)
        archives = sorted(f for f in os.listdir(d) if f.lower().endswith(_ARCHIVE_EXTENSIONS))
        if archives:
            archive = os.path.join(d, archives[0])
            return _cached("tar", name, split, [archive], lambda: data_formats.read_image_archive(
                archive, split, shape=shape, num_classes=num_classes, official=official)
                           ) + (archive,)
    return None


def _tfds_arrays(name, split):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    _, _, tfds_name, test_split = DATASETS[name]
    tfds_split = "train" if split == "train" else test_split
    try:
        ds = tfds.load(tfds_name, split=tfds_split, as_supervised=True, batch_size=-1)
    except Exception as e:  # network, missing manual download, ...
        raise DataError(
            f"No local copy of {name!r} was found (pass --data_dir / data_dir=, or set "
            f"TFDISC_DATA_DIR, to a directory with {_EXPECTED_LAYOUT[name]}), and "
            f"tensorflow-datasets could not provide {tfds_name!r}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    x, y = tfds.as_numpy(ds)
    return np.asarray(x, np.uint8), np.asarray(y, np.int64)


def _report_counts(name, split, y, classes, source):
    """Logs the examples per class; warns on an unofficial split size or an empty class."""
    num_classes = len(classes) if classes else DATASETS[name][1]
    counts = np.bincount(y, minlength=num_classes)
    labels = classes or [str(i) for i in range(num_classes)]
    if len(counts) <= 20:
        per_class = ", ".join(f"{c} {n}" for c, n in zip(labels, counts))
    else:
        lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
        per_class = f"fewest {labels[lo]} {counts[lo]}, most {labels[hi]} {counts[hi]}"
    logging.info("%s %s from %s: %d examples, %d classes (%s).", name, split, source, len(y),
                 num_classes, per_class)
    expected = SPLIT_SIZES[name][split]
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
    _check_name(name)
    _check_split(split)
    directory = data_dir if data_dir else os.environ.get("TFDISC_DATA_DIR")
    if directory:
        source = "data_dir" if data_dir else "TFDISC_DATA_DIR"
        if not os.path.isdir(directory):
            raise DataError(f"{source} {directory!r} is not a directory; expected a directory with "
                            f"{_EXPECTED_LAYOUT[name]}.")
        arrays = _local_arrays(directory, name, split)
        if arrays is None:
            raise DataError(f"{source} {directory!r} holds no {name} data; expected "
                            f"{_EXPECTED_LAYOUT[name]}.")
        x, y, classes, source = arrays
    else:
        (x, y), classes, source = _tfds_arrays(name, split), None, "tensorflow-datasets"
    if len(y) == 0:
        raise DataError(f"The {name} {split} split from {source} holds no examples.")
    num_classes = DATASETS[name][1]
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}] "
                        f"in {source}.")
    shape = DATASETS[name][0]
    if tuple(x.shape[1:]) != shape:
        raise DataError(f"{source} holds {name} {split} images of shape {tuple(x.shape[1:])}, "
                        f"but {name} images are {shape} (height, width, channels): the file "
                        f"belongs to another dataset, or pass the dataset it holds.")
    _report_counts(name, split, y, classes, source)
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
      name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or
        ``imagenet2012``.
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
