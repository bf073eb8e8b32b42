"""A restricted unpickler for CIFAR python batches: nothing in a file is run or imported.

A CIFAR python batch is a pickled dict of plain data and numpy arrays.
``safe_unpickle`` resolves only the few globals such a pickle names (numpy
array, dtype and scalar reconstruction, ``_codecs.encode`` for latin1 text),
each to a builder of our own that checks its arguments: no numpy unpickling
code, no import, no call of anything a file chooses.
"""
import math
import pickle

import numpy as np

from tfdisc.data_formats.base import DataError

__all__ = ["safe_unpickle"]

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
