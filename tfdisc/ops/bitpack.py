"""``bitpack``: signs of the last axis into 32/64-bit words, and numpy twins."""

import numpy as np
import tensorflow as tf

from tfdisc.ops import _loader

_WORD_DTYPES = {32: (tf.int32, np.int32, np.uint32), 64: (tf.int64, np.int64, np.uint64)}


def _check_word_bits(word_bits):
    if word_bits not in _WORD_DTYPES:
        raise ValueError(f"`word_bits` must be 32 or 64, got {word_bits!r}.")


def bitpack(x, *, word_bits=32):
    """Packs ``x < 0`` along the last axis into int32 (or int64) words.

    Negative float32/float64 subnormals pack as +1, like larq's sign under
    TensorFlow's flush-to-zero (see :func:`minus_one_bits`).

    Args:
      x: Tensor of rank >= 1 (float32/64, float16, bfloat16, int8/32/64).
      word_bits: 32 (int32 words) or 64 (int64 words).

    Returns:
      Tensor of shape ``x.shape[:-1] + [ceil(K / word_bits)]``; bit 1 means -1
      and the padding bits are zero.
    """
    _check_word_bits(word_bits)
    return _loader.load().tfdisc_bitpack(x, out_type=_WORD_DTYPES[word_bits][0])


def minus_one_bits(x):
    """The bit of each value: True where ``x`` packs as -1.

    ``x < 0``, except that negative float32/float64 subnormals count as 0,
    as larq's ``sign`` sees them under TensorFlow's flush-to-zero (the op does
    the same, whatever the thread's floating-point mode). float16 and
    bfloat16 are compared in float32 arithmetic, as TensorFlow computes them:
    a bfloat16 subnormal is a float32 subnormal (+1), a float16 subnormal is a
    normal float32 (-1). -0.0 and NaN give +1.
    """
    x = np.asarray(x)
    if x.dtype.kind in "biu":
        return x < 0
    if x.dtype.kind == "f" and x.dtype.itemsize >= 8:
        return x.astype(np.float64) <= -np.finfo(np.float64).tiny
    with np.errstate(invalid="ignore"):
        return x.astype(np.float32) <= -np.finfo(np.float32).tiny


def bitpack_reference(x, word_bits=32):
    """Numpy twin of :func:`bitpack` (bits from :func:`minus_one_bits`)."""
    _check_word_bits(word_bits)
    x = np.asarray(x)
    k = x.shape[-1]
    words = -(-k // word_bits)
    bits = np.zeros(x.shape[:-1] + (words * word_bits,), np.uint64)
    bits[..., :k] = minus_one_bits(x)
    bits = bits.reshape(x.shape[:-1] + (words, word_bits))
    weights = np.left_shift(np.uint64(1), np.arange(word_bits, dtype=np.uint64))
    packed = (bits * weights).sum(axis=-1, dtype=np.uint64)
    _, signed, unsigned = _WORD_DTYPES[word_bits]
    return packed.astype(unsigned).view(signed)


def unpack_reference(packed, k):
    """Inverse of packing: ``[..., words]`` words -> ``[..., k]`` of +-1.0."""
    packed = np.asarray(packed)
    word_bits = packed.dtype.itemsize * 8
    unsigned = packed.view(np.uint32 if word_bits == 32 else np.uint64).astype(np.uint64)
    shifts = np.arange(word_bits, dtype=np.uint64)
    bits = (unsigned[..., None] >> shifts) & np.uint64(1)
    bits = bits.reshape(packed.shape[:-1] + (packed.shape[-1] * word_bits,))[..., :k]
    return np.where(bits == 1, -1.0, 1.0).astype(np.float32)
