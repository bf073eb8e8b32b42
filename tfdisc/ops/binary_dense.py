"""``binary_dense``: exact +-1 matrix product on packed operands."""

import numpy as np
import tensorflow as tf

from tfdisc.ops import _loader, _transform
from tfdisc.ops.bitpack import bitpack_reference, unpack_reference


def binary_dense(x, weights, k, *, multiplier=None, bias=None, output="float",
                 word_bits=None):
    """``k - 2 * popcount(x XOR w)``, then an optional per-unit transform.

    Args:
      x: Packed input ``[..., words]`` (int32 or int64 words, see bitpack).
      weights: Packed weights ``[units, words]`` of the same word type
        (see :func:`pack_dense_weights`).
      k: Number of real bits per row; ``words == ceil(k / word bits)``.
      multiplier: Optional ``[units]`` float scale (folded batch norm, XNOR
        scale).
      bias: Optional ``[units]`` float offset.
      output: ``"float"`` (``dot * multiplier + bias``), ``"int32"`` (the raw
        dot product; no multiplier/bias) or ``"bitpacked"`` (signs of the
        float value, packed).
      word_bits: Word size of a bitpacked output (default: the input's).

    Returns:
      ``[..., units]`` float32/int32, or ``[..., ceil(units / word_bits)]``
      packed words.

    Raises:
      ValueError: ``k`` not an integer (2.5 is refused, not truncated).
      tf.errors.InvalidArgumentError: shapes, k or dtypes do not match.
    """
    x = tf.convert_to_tensor(x)
    weights = tf.convert_to_tensor(weights)
    out_type, bitpacked = _transform.op_output_args(output, word_bits, x.dtype)
    reshape = x.shape.rank != 2
    flat = tf.reshape(x, [-1, tf.shape(x)[-1]]) if reshape else x
    y = _loader.load().tfdisc_binary_dense(
        flat, weights, _transform.vector(multiplier), _transform.vector(bias),
        k=_transform.integer(k, "k"), out_type=out_type, bitpacked_output=bitpacked)
    if reshape:
        y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], tf.shape(y)[-1:]], 0))
    return y


def pack_dense_weights(kernel, *, word_bits=32, pixel_shape=None):
    """Packs a Dense kernel ``[K, units]`` to ``[units, words]`` (numpy).

    Args:
      kernel: Float kernel; its signs are packed (0 counts as +1).
      word_bits: 32 or 64.
      pixel_shape: ``(H, W, C)`` when the layer's input is a flattened packed
        NHWC tensor: rows are then packed per pixel (``H * W * ceil(C / B)``
        words), matching a Flatten of packed conv output.
    """
    kernel = np.asarray(kernel)
    rows = kernel.T
    if pixel_shape is not None:
        h, w, c = pixel_shape
        packed = bitpack_reference(rows.reshape(rows.shape[0], h, w, c), word_bits)
        return packed.reshape(rows.shape[0], -1)
    return bitpack_reference(rows, word_bits)


def binary_dense_reference(x, weights, k, *, multiplier=None, bias=None,
                           output="float", word_bits=None):
    """Numpy twin of :func:`binary_dense` (unpacks to +-1 and multiplies)."""
    _transform.check_output(output)
    x = np.asarray(x)
    weights = np.asarray(weights)
    xs = unpack_reference(x, k).astype(np.int64)
    ws = unpack_reference(weights, k).astype(np.int64)
    dot = xs @ ws.T
    word_bits = word_bits or x.dtype.itemsize * 8
    return _transform.transform_reference(dot, multiplier, bias, output, word_bits)
