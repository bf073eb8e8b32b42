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

Counts are logged (absl INFO) per class for every local load, with a warning
when a split's size differs from the official one in ``SPLIT_SIZES`` (a subset
is legitimate, e.g. the small synthetic sets of the tests, so this is not an
error) or when a class of the map has no example in the split.

Decoded arrays are cached as ``.npz`` under ``TFDISC_CACHE_DIR`` (default
``~/.cache/tfdisc``), keyed by the source files' paths, sizes and mtimes, and
read back with ``allow_pickle=False``.
"""
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zlib

from absl import logging
import numpy as np
import tensorflow as tf

__all__ = ["DATASETS", "SPLIT_SIZES", "DataError", "from_arrays", "info", "load", "load_arrays",
           "read_idx", "to_float"]

_CACHE_VERSION = 2
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


# ---------------------------------------------------------------- IDX (MNIST)

def _open_maybe_gz(path):
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"Corrupt or truncated gzip file {path}: {e}.") from e
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
    if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
        raise DataError(f"MNIST-format files must hold uint8 images and integer labels; got "
                        f"{images.dtype} in {images_path} and {labels.dtype} in {labels_path}.")
    return images[..., None], labels.astype(np.int64)


# ---------------------------------------------------------------- CIFAR python batches
# A CIFAR python batch is a pickled dict of plain data and numpy arrays. The
# unpickler below resolves only the few globals such a pickle names, each to a
# builder of our own that checks its arguments: no numpy unpickling code, no
# import, no call of anything a file chooses.

class _Dtype:
    """A ``numpy.dtype`` named by a pickle: plain numbers only, byte order from its state."""

    def __init__(self, descr, align=False, copy=False):  # pylint: disable=unused-argument
        if isinstance(descr, bytes):
            descr = descr.decode("latin1")
        if not isinstance(descr, str):
            raise pickle.UnpicklingError(f"unsupported numpy dtype {descr!r}")
        try:
            self.dtype = np.dtype(descr)
        except TypeError as e:
            raise pickle.UnpicklingError(f"unsupported numpy dtype {descr!r}") from e
        if self.dtype.kind not in "biuf" or self.dtype.fields or self.dtype.subdtype:
            raise pickle.UnpicklingError(f"numpy dtype {descr!r} is not a plain number type")

    def __setstate__(self, state):
        byteorder = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if isinstance(byteorder, bytes):
            byteorder = byteorder.decode("latin1")
        if byteorder in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(byteorder)
        elif byteorder not in ("|", "="):
            raise pickle.UnpicklingError(f"unsupported numpy dtype state {state!r}")


def _as_dtype(value):
    if not isinstance(value, _Dtype):
        raise pickle.UnpicklingError(f"expected a numpy dtype, got {type(value).__name__}")
    return value.dtype


def _as_shape(value):
    if not (isinstance(value, tuple) and all(isinstance(d, int) and d >= 0 for d in value)):
        raise pickle.UnpicklingError(f"bad numpy array shape {value!r}")
    return value


def _array_from_bytes(raw, dtype, shape, order):
    if isinstance(raw, str):  # protocol 0-2 pickles of Python 2 str, read as latin1
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray, pickle.PickleBuffer)):
        raise pickle.UnpicklingError(f"numpy array data must be bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise pickle.UnpicklingError(
            f"numpy array of shape {shape} and dtype {dtype} needs "
            f"{int(np.prod(shape)) * dtype.itemsize} bytes, the pickle holds {len(raw)}")
    return np.frombuffer(raw, dtype).reshape(shape, order=order).copy()


class _Array:
    """An array of the pickle: ``_reconstruct(ndarray, ...)`` then ``__setstate__``, or built."""

    def __init__(self, array=None):
        self.array = array

    def __setstate__(self, state):
        if self.array is not None or not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("unsupported numpy array state")
        _, shape, dtype, fortran, raw = state
        self.array = _array_from_bytes(raw, _as_dtype(dtype), _as_shape(shape),
                                       "F" if fortran else "C")


class _NdarrayClass:  # pylint: disable=too-few-public-methods
    """Stands for the class ``numpy.ndarray`` named in a pickle."""


_NDARRAY = _NdarrayClass()


def _reconstruct(subtype, shape, typecode):  # pylint: disable=unused-argument
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("only numpy.ndarray may be reconstructed")
    return _Array()


def _frombuffer(buf, dtype, shape, order):  # protocol 5 pickles of arrays
    return _Array(_array_from_bytes(buf, _as_dtype(dtype), _as_shape(shape),
                                    "F" if order == "F" else "C"))


def _scalar(dtype, raw):  # numpy scalars, e.g. labels pickled as a list of np.int64
    return _Array(_array_from_bytes(raw, _as_dtype(dtype), (), "C"))


def _codecs_encode(text, encoding="utf-8"):  # how protocol 0-2 pickles of Python 3 bytes look
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 text")
    return text.encode("latin1")


_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _codecs_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR batch never holds (only plain "
                f"data and numpy arrays are read; nothing is imported or run)") from None


def _plain(value):
    """Arrays built by the unpickler in place of their ``_Array`` holders."""
    if isinstance(value, _Array):
        if value.array is None:
            raise pickle.UnpicklingError("a numpy array without its data")
        return value.array[()] if value.array.ndim == 0 else value.array
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (_Dtype, _NdarrayClass)):
        raise pickle.UnpicklingError("a bare numpy dtype or class where data was expected")
    return value


def _unpickle(path):
    """A CIFAR python batch as a dict with str keys (the official files have bytes keys)."""
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        if not isinstance(batch, dict):
            raise pickle.UnpicklingError(f"it holds a {type(batch).__name__}, not a dict")
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _plain(v)
                for k, v in batch.items()}
    except DataError:
        raise
    except Exception as e:  # the unpickler raises many types for corrupt data
        raise DataError(f"Cannot read CIFAR python batch {path}: {type(e).__name__}: {e}.") from e


def _integer_array(value, path, key, ndim):
    """``value`` (a list of ints or an integer array) as an array of rank ``ndim``."""
    array = np.asarray(value) if isinstance(value, (list, np.ndarray)) else None
    if array is not None and array.size == 0 and array.dtype.kind == "f":  # np.asarray([])
        array = array.astype(np.int64)
    if array is None or array.dtype.kind not in "iu" or array.ndim != ndim:
        what = (f"a {type(value).__name__}" if array is None
                else f"{array.dtype} of shape {array.shape}")
        raise DataError(f"{path}: {key!r} must be integers of rank {ndim}, got {what}.")
    return array


def _cifar_python(directory, split, cifar100):
    if not cifar100:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = "labels"
    else:
        names = [split]
        label_key = "fine_labels"
    paths = [os.path.join(directory, n) for n in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"Missing CIFAR python batch files: {', '.join(missing)}.")
    xs, ys = [], []
    for path in paths:
        batch = _unpickle(path)
        if "data" not in batch or label_key not in batch:
            raise DataError(f"{path} is not a CIFAR python batch (keys data/{label_key}).")
        data = _integer_array(batch["data"], path, "data", 2)
        labels = _integer_array(batch[label_key], path, label_key, 1)
        if data.shape[1] != 3072:
            raise DataError(f"{path}: expected data of shape (N, 3072), got {data.shape}.")
        if data.size and (data.min() < 0 or data.max() > 255):
            raise DataError(f"{path}: pixel values must lie in [0, 255], got "
                            f"[{data.min()}, {data.max()}].")
        if len(data) != len(labels):
            raise DataError(f"{path} holds {len(data)} images but {len(labels)} labels "
                            f"({label_key!r}).")
        xs.append(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------- CIFAR binary batches

def _cifar_binary(directory, split, cifar100):
    if cifar100:
        names = ["train.bin"] if split == "train" else ["test.bin"]
        label_bytes, label_index = 2, 1
    else:
        names = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train"
                 else ["test_batch.bin"])
        label_bytes, label_index = 1, 0
    record = label_bytes + 3072
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise DataError(f"Missing CIFAR binary batch file {path}.")
        size = os.path.getsize(path)
        if size == 0 or size % record:
            raise DataError(f"{path} is truncated or corrupt: {size} bytes is not a multiple "
                            f"of the {record}-byte record.")
    if not cifar100:  # the binary format has no header: compare the batches with each other
        sizes = {n: os.path.getsize(os.path.join(directory, n)) // record
                 for n in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
                 if os.path.isfile(os.path.join(directory, n))}
        if len(set(sizes.values())) > 1:
            raise DataError(
                f"CIFAR10 binary batches in {directory} hold different numbers of records "
                f"({', '.join(f'{n}: {c}' for n, c in sizes.items())}); the official batches "
                f"hold 10000 each, so one is truncated or does not belong.")
    xs, ys = [], []
    for name in names:
        raw = np.fromfile(os.path.join(directory, name), dtype=np.uint8).reshape(-1, record)
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


def _split_dir_names(split):
    return ("train",) if split == "train" else ("test", "val", "validation")


def _is_image(name):
    return not name.startswith(".") and name.lower().endswith(_IMAGE_EXTENSIONS)


def _class_map(dataset, train_classes, split_classes, where, split):
    """The dataset's class names in label order, checked against one split's classes.

    ``train_classes`` is None when the source has no train split.
    """
    found = set(split_classes) | set(train_classes or ())
    if dataset == "cifar10" and found <= set(_CIFAR10_CLASSES):
        classes = list(_CIFAR10_CLASSES)
    elif train_classes is not None:
        classes = sorted(set(train_classes))
    else:
        classes = sorted(set(split_classes))
        expected = DATASETS[dataset][1]
        if len(classes) != expected:
            raise DataError(
                f"{where} has no train split to take the class list from, and its {split} split "
                f"holds {len(classes)} classes, not the {expected} of {dataset}: labels would "
                f"depend on which classes are present. Add train/<class>/ directories (they may "
                f"be empty).")
    unknown = sorted(set(split_classes) - set(classes))
    if unknown:
        raise DataError(
            f"The {split} split of {where} holds classes the training split does not have: "
            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}. Labels come from "
            f"one class map per dataset (the train split's class directories).")
    return classes


def _folder_listing(root, split, dataset):
    """``(classes, entries)`` of a tree ``root/split/<class>/<image>``, or None.

    ``entries`` are ``(label, path)`` in sorted order.
    """
    def class_dirs(split_dir):
        return sorted(c for c in os.listdir(split_dir)
                      if not c.startswith(".") and os.path.isdir(os.path.join(split_dir, c)))

    split_dir = next((os.path.join(root, s) for s in _split_dir_names(split)
                      if os.path.isdir(os.path.join(root, s))), None)
    if split_dir is None:
        return None
    train_dir = os.path.join(root, "train")
    train_classes = class_dirs(train_dir) if os.path.isdir(train_dir) else None
    split_classes = class_dirs(split_dir)
    classes = _class_map(dataset, train_classes, split_classes, root, split)
    index = {c: i for i, c in enumerate(classes)}
    entries = [(index[c], os.path.join(split_dir, c, f)) for c in split_classes
               for f in sorted(os.listdir(os.path.join(split_dir, c))) if _is_image(f)]
    if not entries:
        raise DataError(f"No images under {split_dir}/<class>/ (expected *.png or *.jpg).")
    return classes, entries


def _load_folder(entries, shape):
    """Decodes the ``(label, path)`` entries of ``_folder_listing``."""
    xs = np.empty((len(entries),) + shape, np.uint8)
    ys = np.empty(len(entries), np.int64)
    for i, (label, path) in enumerate(entries):
        with open(path, "rb") as f:
            xs[i] = _decode_image(f.read(), path, shape)
        ys[i] = label
    return xs, ys


def _read_archive(path, split):
    """Classes and the wanted split's images of a tar archive, after checking its integrity.

    Returns ``(train_classes or None, split_classes, [(class, member name, bytes)])``.
    ``tarfile`` stops without an error where a member header is missing or
    invalid, so the block where it stopped must be the end-of-archive block,
    and a gzip stream is read to its end for the CRC and length check.
    """
    wanted = _split_dir_names(split)
    classes = {}  # split directory name -> set of class names
    items = []
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            with tarfile.open(fileobj=stream, mode="r:") as tar:
                for member in tar:
                    parts = [p for p in member.name.replace("\\", "/").split("/")
                             if p not in ("", ".")]
                    if member.isdir() and len(parts) >= 2 and not parts[-1].startswith("."):
                        classes.setdefault(parts[-2], set()).add(parts[-1])
                    elif member.isfile() and len(parts) >= 3 and _is_image(parts[-1]):
                        classes.setdefault(parts[-3], set()).add(parts[-2])
                        if parts[-3] in wanted:
                            items.append((parts[-2], member.name, tar.extractfile(member).read()))
                end = tar.offset
            stream.seek(end)
            block = stream.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE:
                raise tarfile.ReadError(f"the archive ends at byte {end} without its "
                                        f"end-of-archive block")
            if block.count(0) != len(block):
                raise tarfile.ReadError(f"invalid member header at byte {end}")
            while stream.read(1 << 20):  # the gzip CRC and length are checked at the end
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"Archive {path} is truncated or corrupt: {e}.") from e
    split_classes = set().union(*(classes.get(s, set()) for s in wanted))
    return classes.get("train"), split_classes, items


def _load_archive(path, split, dataset, shape):
    """Reads ``[prefix/]split/<class>/<image>`` members of a tar archive."""
    train_classes, split_classes, items = _read_archive(path, split)
    if not items:
        raise DataError(
            f"Archive {path} has no images at {_split_dir_names(split)[0]}/<class>/*.png|jpg "
            f"(expected layout: {_EXPECTED_LAYOUT.get(dataset, 'train|test/<class>/<image>')})."
        )
    classes = _class_map(dataset, train_classes, split_classes, path, split)
    index = {c: i for i, c in enumerate(classes)}
    items.sort(key=lambda item: (item[0], item[1]))  # as a tree: by class, then by name
    xs = np.empty((len(items),) + shape, np.uint8)
    ys = np.empty(len(items), np.int64)
    for i, (cls, name, data) in enumerate(items):
        xs[i] = _decode_image(data, f"{path}:{name}", shape)
        ys[i] = index[cls]
    return xs, ys, classes


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
    path = os.path.join(_cache_dir(), f"{name}-{split}-{_cache_key(kind, name, split, sources)}.npz")
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
                               lambda: _load_mnist(images, labels)) + (images,)
            continue
        if name in ("cifar10", "cifar100"):
            c100 = name == "cifar100"
            py_dir = os.path.join(d, "cifar-100-python" if c100 else "cifar-10-batches-py")
            if os.path.isdir(py_dir):
                files = [os.path.join(py_dir, f) for f in sorted(os.listdir(py_dir))]
                return _cached("cifar-py", name, split, files,
                               lambda: _cifar_python(py_dir, split, c100)) + (py_dir,)
            bin_dir = os.path.join(d, "cifar-100-binary" if c100 else "cifar-10-batches-bin")
            if os.path.isdir(bin_dir):
                files = [os.path.join(bin_dir, f) for f in sorted(os.listdir(bin_dir))]
                return _cached("cifar-bin", name, split, files,
                               lambda: _cifar_binary(bin_dir, split, c100)) + (bin_dir,)
        listing = _folder_listing(d, split, name)
        if listing is not None:
            classes, entries = listing
            return _cached(f"folder|{'/'.join(classes)}", name, split, [p for _, p in entries],
                           lambda: _load_folder(entries, shape) + (classes,)) + (d,)
        archives = sorted(f for f in os.listdir(d) if f.lower().endswith(_ARCHIVE_EXTENSIONS))
        if archives:
            archive = os.path.join(d, archives[0])
            return _cached("tar", name, split, [archive],
                           lambda: _load_archive(archive, split, name, shape)) + (archive,)
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
    _report_counts(name, split, y, classes, source)
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

    Raises:
      ValueError: unknown dataset or split, bad ``batch_size`` or ``limit``.
      DataError: as ``load_arrays``.

    Example:
      >>> ds = load("mnist", "test", data_dir="../shared/datasets/mnist", limit=256)
    """
    x, y = load_arrays(name, split, data_dir=data_dir)
    return from_arrays(x, y, batch_size=batch_size, shuffle=split == "train" if shuffle is None
                       else shuffle, seed=seed, limit=limit, drop_remainder=drop_remainder)


def from_arrays(x, y, *, batch_size=128, shuffle=False, seed=0, limit=None, drop_remainder=False):
    """``tf.data`` pipeline over uint8 image and label arrays, as ``load`` builds it.

    Raises:
      ValueError: bad ``batch_size`` or ``limit``, ``x`` and ``y`` of different
        lengths, or no examples (e.g. an empty slice of a split).
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
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(y), 60000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda image, label: (to_float(image), label),
                num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
