"""Readers of the on-disk dataset formats, each checking what its format allows.

``tfdisc.data`` finds the files and builds pipelines; this module reads them:

* ``read_idx``/``read_mnist``: IDX files (MNIST format), raw or gzip; the
  header's shape must match the data size, and images and labels must agree.
* ``read_cifar_python``: CIFAR python batches through ``safe_unpickle``, a
  restricted unpickler that resolves only the few globals such a pickle names
  (numpy array, dtype and scalar reconstruction, ``_codecs.encode`` for latin1
  text) to builders of our own that check their arguments, so a crafted file
  runs nothing and imports nothing. Images and labels must agree in number.
* ``read_cifar_binary``: CIFAR binary batches: whole records, and CIFAR10
  batch files of equal size (the official ones hold 10000 records each).
* ``list_image_folder``/``read_image_folder`` and ``read_image_archive``:
  ``train|test/<class>/<image>`` trees and tar archives of them, labelled with
  one ``class_map`` per dataset. An archive must end with its end-of-archive
  block, and a gzip stream is read to its end for the CRC and length check.

Every reader raises ``DataError`` naming the file.
"""
import gzip
import io
import math
import os
import pickle
import struct
import tarfile
import zlib

import numpy as np

__all__ = ["DataError", "class_map", "decode_image", "list_image_folder", "read_cifar_binary",
           "read_cifar_python", "read_idx", "read_image_archive", "read_image_folder",
           "read_mnist", "safe_unpickle"]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


class DataError(ValueError):
    """Missing, corrupt or unrecognised dataset files."""


# ---------------------------------------------------------------- IDX (MNIST)

def _read_maybe_gz(path):
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
    raw = _read_maybe_gz(path)
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
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"found {len(raw) - header} bytes."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def read_mnist(images_path, labels_path):
    """MNIST-format image and label files as ``(uint8 images NHW1, int64 labels)``."""
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
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise pickle.UnpicklingError(
            f"numpy array of shape {shape} and dtype {dtype} needs "
            f"{math.prod(shape) * dtype.itemsize} bytes, the pickle holds {len(raw)}")
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


def safe_unpickle(path):
    """A pickled dict of plain data and numpy arrays (a CIFAR python batch), safely.

    Keys come back as str (the official CIFAR files, pickled by Python 2, have
    bytes keys). Anything else a pickle names raises ``DataError``; nothing in
    the file is imported or run.
    """
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


def read_cifar_python(directory, split, cifar100):
    """A split of ``cifar-10-batches-py/`` or ``cifar-100-python/`` as (images NHWC, labels)."""
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
        batch = safe_unpickle(path)
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

def read_cifar_binary(directory, split, cifar100):
    """A split of ``cifar-10-batches-bin/`` or ``cifar-100-binary/`` as (images NHWC, labels)."""
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

def decode_image(data, where, shape):
    """Image file bytes as a uint8 array of ``shape`` (HWC), resized if needed."""
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


def class_map(train_classes, split_classes, *, where, split, num_classes, official=None):
    """The dataset's class names in label order, checked against one split's classes.

    Args:
      train_classes: class directory names of the train split, or None when
        the source has no train split.
      split_classes: class directory names of the split being read.
      where: the source, for messages.
      split: the split being read, for messages.
      num_classes: the dataset's number of classes.
      official: the dataset's official class names in label order (CIFAR10),
        used when every name found is one of them.

    Raises:
      DataError: the split holds a class the map does not know, or there is no
        train split and ``split_classes`` is not every class of the dataset.
    """
    found = set(split_classes) | set(train_classes or ())
    if official and found <= set(official):
        classes = list(official)
    elif train_classes is not None:
        classes = sorted(set(train_classes))
    else:
        classes = sorted(set(split_classes))
        if len(classes) != num_classes:
            raise DataError(
                f"{where} has no train split to take the class list from, and its {split} split "
                f"holds {len(classes)} classes, not the dataset's {num_classes}: labels would "
                f"depend on which classes are present. Add train/<class>/ directories (they may "
                f"be empty).")
    unknown = sorted(set(split_classes) - set(classes))
    if unknown:
        raise DataError(
            f"The {split} split of {where} holds classes the training split does not have: "
            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}. Labels come from "
            f"one class map per dataset (the train split's class directories).")
    return classes


def list_image_folder(root, split, *, num_classes, official=None):
    """``(class names, entries)`` of a tree ``root/split/<class>/<image>``, or None.

    ``entries`` are ``(label, path)`` sorted by class, then file name; labels
    come from ``class_map`` (arguments as there).

    Raises:
      DataError: as ``class_map``, or a split without images.
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
    classes = class_map(train_classes, split_classes, where=root, split=split,
                        num_classes=num_classes, official=official)
    index = {c: i for i, c in enumerate(classes)}
    entries = [(index[c], os.path.join(split_dir, c, f)) for c in split_classes
               for f in sorted(os.listdir(os.path.join(split_dir, c))) if _is_image(f)]
    if not entries:
        raise DataError(f"No images under {split_dir}/<class>/ (expected *.png or *.jpg).")
    return classes, entries


def read_image_folder(entries, shape):
    """Decodes the ``(label, path)`` entries of ``list_image_folder``."""
    xs = np.empty((len(entries),) + shape, np.uint8)
    ys = np.empty(len(entries), np.int64)
    for i, (label, path) in enumerate(entries):
        with open(path, "rb") as f:
            xs[i] = decode_image(f.read(), path, shape)
        ys[i] = label
    return xs, ys


def _scan_archive(path, split):
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


def read_image_archive(path, split, *, shape, num_classes, official=None):
    """``(images, labels, class names)`` of the ``[prefix/]split/<class>/<image>`` members of
    a tar archive (plain or gzip), after checking the whole archive's integrity.

    Labels come from ``class_map`` (arguments as there); images are sorted by
    class, then member name, as ``list_image_folder`` sorts a tree.

    Raises:
      DataError: a truncated or corrupt archive, an image that cannot be
        decoded, no image in the split, or as ``class_map``.
    """
    train_classes, split_classes, items = _scan_archive(path, split)
    if not items:
        raise DataError(
            f"Archive {path} has no images at {_split_dir_names(split)[0]}/<class>/*.png|jpg "
            f"(expected layout: [prefix/]train|test/<class>/<image>)."
        )
    classes = class_map(train_classes, split_classes, where=path, split=split,
                        num_classes=num_classes, official=official)
    index = {c: i for i, c in enumerate(classes)}
    items.sort(key=lambda item: (item[0], item[1]))  # as a tree: by class, then by name
    xs = np.empty((len(items),) + shape, np.uint8)
    ys = np.empty(len(items), np.int64)
    for i, (cls, name, data) in enumerate(items):
        xs[i] = decode_image(data, f"{path}:{name}", shape)
        ys[i] = index[cls]
    return xs, ys, classes
