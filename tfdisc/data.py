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

Decoded arrays are cached as ``.npz`` under ``TFDISC_CACHE_DIR`` (default
``~/.cache/tfdisc``), keyed by the source files' paths, sizes and mtimes.
"""
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import tensorflow as tf

__all__ = ["DATASETS", "DataError", "from_arrays", "info", "load", "load_arrays", "read_idx", "to_float"]

_CACHE_VERSION = 1
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".tar")
_SPLITS = ("train", "test")


class DataError(ValueError):
    """Missing, corrupt or unrecognised dataset files."""


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


# ---------------------------------------------------------------- IDX (MNIST)

def _open_maybe_gz(path):
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"Corrupt gzip file {path}: {e}.") from e
    return raw


def read_idx(path):
    """Reads an IDX file (optionally gzip-compressed) into a numpy array."""
    raw = _open_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number).")
    type_code, ndim = raw[2], raw[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if type_code not in dtypes or ndim == 0:
        raise DataError(f"{path} is not an IDX file (type 0x{type_code:02x}, {ndim} dims).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header).")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(dtypes[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"found {len(raw) - header} bytes."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


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


def _load_mnist(images_path, labels_path):
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"MNIST-format files must hold images of rank 3 and labels of rank 1; got "
            f"{images.shape} in {images_path} and {labels.shape} in {labels_path}."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels."
        )
    return images[..., None].astype(np.uint8), labels.astype(np.int64)


# ---------------------------------------------------------------- CIFAR batches

def _unpickle(path):
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"Corrupt CIFAR python batch {path}: {e}.") from e


def _cifar_python(directory, split, cifar100):
    if not cifar100:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    else:
        names = [split]
        label_key = b"fine_labels"
    paths = [os.path.join(directory, n) for n in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"Missing CIFAR python batch files: {', '.join(missing)}.")
    xs, ys = [], []
    for path in paths:
        batch = _unpickle(path)
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise DataError(f"{path} is not a CIFAR python batch (keys data/{label_key.decode()}).")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path}: expected data of shape (N, 3072), got {data.shape}.")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_binary(directory, split, cifar100):
    if cifar100:
        names = ["train.bin"] if split == "train" else ["test.bin"]
        label_bytes, label_index = 2, 1
    else:
        names = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train"
                 else ["test_batch.bin"])
        label_bytes, label_index = 1, 0
    record = label_bytes + 3072
    xs, ys = [], []
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise DataError(f"Missing CIFAR binary batch file {path}.")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise DataError(f"{path} is truncated or corrupt: {raw.size} bytes is not a multiple "
                            f"of the {record}-byte record.")
        raw = raw.reshape(-1, record)
        ys.append(raw[:, label_index].astype(np.int64))
        xs.append(raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------- image folders

def _decode_image(data, where, shape):
    from PIL import Image  # pylint: disable=import-outside-toplevel

    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("L" if shape[-1] == 1 else "RGB")
            if image.size != (shape[1], shape[0]):
                image = image.resize((shape[1], shape[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Exception as e:  # PIL raises many types for bad data
        raise DataError(f"Cannot decode image {where}: {e}.") from e
    return array.reshape(shape)


def _class_order(names, dataset):
    names = sorted(set(names))
    if dataset == "cifar10" and set(names) == set(_CIFAR10_CLASSES):
        return list(_CIFAR10_CLASSES)
    return names


def _split_dir_names(split):
    return ("train",) if split == "train" else ("test", "val", "validation")


def _folder_entries(root, split):
    for split_name in _split_dir_names(split):
        split_dir = os.path.join(root, split_name)
        if os.path.isdir(split_dir):
            break
    else:
        return None
    entries = []
    for cls in sorted(os.listdir(split_dir)):
        cls_dir = os.path.join(split_dir, cls)
        if not os.path.isdir(cls_dir):
            continue
        for fname in sorted(os.listdir(cls_dir)):
            if fname.lower().endswith(_IMAGE_EXTENSIONS):
                entries.append((cls, os.path.join(cls_dir, fname)))
    return entries


def _load_folder(entries, root, split, dataset, shape):
    """Decodes the ``(class, path)`` entries of ``_folder_entries(root, split)``."""
    if not entries:
        raise DataError(f"No images under {root}/{split}/<class>/ (expected *.png or *.jpg).")
    classes = _class_order([c for c, _ in entries], dataset)
    index = {c: i for i, c in enumerate(classes)}
    xs = np.empty((len(entries),) + shape, np.uint8)
    ys = np.empty(len(entries), np.int64)
    for i, (cls, path) in enumerate(entries):
        with open(path, "rb") as f:
            xs[i] = _decode_image(f.read(), path, shape)
        ys[i] = index[cls]
    return xs, ys


def _load_archive(path, split, dataset, shape):
    """Reads ``[prefix/]split/<class>/<image>`` members of a tar archive."""
    wanted = _split_dir_names(split)
    items = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.lower().endswith(_IMAGE_EXTENSIONS):
                    continue
                parts = member.name.replace("\\", "/").split("/")
                if len(parts) < 3 or parts[-3] not in wanted:
                    continue
                data = tar.extractfile(member).read()
                items.append((parts[-2], member.name, data))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"Corrupt or unreadable archive {path}: {e}.") from e
    if not items:
        raise DataError(
            f"Archive {path} has no images at {wanted[0]}/<class>/*.png|jpg "
            f"(expected layout: {_EXPECTED_LAYOUT.get(dataset, 'train|test/<class>/<image>')})."
        )
    items.sort(key=lambda item: item[1])
    classes = _class_order([c for c, _, _ in items], dataset)
    index = {c: i for i, c in enumerate(classes)}
    xs = np.empty((len(items),) + shape, np.uint8)
    ys = np.empty(len(items), np.int64)
    for i, (cls, name, data) in enumerate(items):
        xs[i] = _decode_image(data, f"{path}:{name}", shape)
        ys[i] = index[cls]
    return xs, ys


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
    path = os.path.join(_cache_dir(), f"{name}-{split}-{_cache_key(kind, name, split, sources)}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path) as cached:
                return cached["x"], cached["y"]
        except Exception:  # a corrupt cache entry is rebuilt
            pass
    x, y = loader()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, path)
    except OSError:  # read-only home: work without a cache
        pass
    return x, y


# ---------------------------------------------------------------- dispatch

def _candidate_dirs(directory, name):
    dirs = [directory, os.path.join(directory, name)]
    if name == "imagenet2012":
        dirs.append(os.path.join(directory, "imagenet"))
    return [d for d in dirs if os.path.isdir(d)]


def _local_arrays(directory, name, split):
    """Arrays from a local directory, or None if it holds nothing for ``name``."""
    shape = DATASETS[name][0]
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
                               lambda: _load_mnist(images, labels))
            continue
        if name in ("cifar10", "cifar100"):
            c100 = name == "cifar100"
            py_dir = os.path.join(d, "cifar-100-python" if c100 else "cifar-10-batches-py")
            if os.path.isdir(py_dir):
                files = [os.path.join(py_dir, f) for f in sorted(os.listdir(py_dir))]
                return _cached("cifar-py", name, split, files,
                               lambda: _cifar_python(py_dir, split, c100))
            bin_dir = os.path.join(d, "cifar-100-binary" if c100 else "cifar-10-batches-bin")
            if os.path.isdir(bin_dir):
                files = [os.path.join(bin_dir, f) for f in sorted(os.listdir(bin_dir))]
                return _cached("cifar-bin", name, split, files,
                               lambda: _cifar_binary(bin_dir, split, c100))
        entries = _folder_entries(d, split)
        if entries is not None:
            return _cached("folder", name, split, [p for _, p in entries],
                           lambda: _load_folder(entries, d, split, name, shape))
        archives = sorted(f for f in os.listdir(d) if f.lower().endswith(_ARCHIVE_EXTENSIONS))
        if archives:
            archive = os.path.join(d, archives[0])
            return _cached("tar", name, split, [archive],
                           lambda: _load_archive(archive, split, name, shape))
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


def load_arrays(name, split, *, data_dir=None):
    """Loads a whole split as numpy arrays ``(uint8 images NHWC, int64 labels)``.

    Raises:
      ValueError: unknown dataset or split.
      DataError: a named or configured data directory that does not exist or
        holds missing, corrupt or unrecognised files; or no local copy and
        tensorflow-datasets cannot provide the data.
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
    else:
        arrays = _tfds_arrays(name, split)
    x, y = arrays
    num_classes = DATASETS[name][1]
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}].")
    return x, y


def to_float(images):
    """uint8 images → float32 in [0, 1]."""
    return tf.cast(images, tf.float32) / 255.0


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

    Example:
      >>> ds = load("mnist", "test", data_dir="../shared/datasets/mnist", limit=256)
    """
    x, y = load_arrays(name, split, data_dir=data_dir)
    return from_arrays(x, y, batch_size=batch_size, shuffle=split == "train" if shuffle is None
                       else shuffle, seed=seed, limit=limit, drop_remainder=drop_remainder)


def from_arrays(x, y, *, batch_size=128, shuffle=False, seed=0, limit=None, drop_remainder=False):
    """``tf.data`` pipeline over uint8 image and label arrays, as ``load`` builds it."""
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}.")
        x, y = x[:limit], y[:limit]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(y), 60000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda image, label: (to_float(image), label),
                num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
