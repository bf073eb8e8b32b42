"""CIFAR batches: python (``cifar-10-batches-py/``, ``cifar-100-python/``) and binary.

* ``read_cifar_python`` reads python batches through ``safe_unpickle``;
  images and labels must agree in number.
* ``read_cifar_binary`` reads binary batches: whole records, and CIFAR10
  batch files of equal size (the official ones hold 10000 records each).

``CifarPython`` and ``CifarBinary`` are their layouts: a sub-directory of that
name. Every reader raises ``DataError`` naming the file.
"""
import os

import numpy as np

from tfdisc.data_formats.base import DataError, Found, Layout
from tfdisc.data_formats.safe_pickle import safe_unpickle

__all__ = ["CifarBinary", "CifarPython", "read_cifar_binary", "read_cifar_python"]


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



class _Batches(Layout):
    """A sub-directory of batch files read by ``_reader(directory, split, cifar100)``."""

    _reader = None

    def __init__(self, subdir, *, cifar100):
        self.subdir = subdir
        self.cifar100 = cifar100
        self.describe = f"{subdir}/"

    def find(self, directory, split, dataset):
        batches = os.path.join(directory, self.subdir)
        if not os.path.isdir(batches):
            return None
        files = [os.path.join(batches, f) for f in sorted(os.listdir(batches))]
        reader = type(self)._reader
        return Found(self.subdir, files, lambda: reader(batches, split, self.cifar100), batches)


class CifarPython(_Batches):
    """``<subdir>/`` of CIFAR python batches, e.g. ``cifar-10-batches-py/``."""

    _reader = staticmethod(read_cifar_python)


class CifarBinary(_Batches):
    """``<subdir>/`` of CIFAR binary batches, e.g. ``cifar-10-batches-bin/``."""

    _reader = staticmethod(read_cifar_binary)
