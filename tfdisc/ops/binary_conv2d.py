"""``binary_conv2d`` and ``bitpacked_max_pool2d`` on channel-packed NHWC, and
``float_conv2d_bits``: a float first layer that emits packed sign bits."""

import numpy as np
import tensorflow as tf

from tfdisc.ops import _loader, _transform
from tfdisc.ops.bitpack import bitpack_reference, unpack_reference

PADDINGS = ("SAME", "VALID")


def _pair(value, name):
    """``(h, w)`` from an int or a pair of ints (1.5 is refused, not truncated; the op checks ≥ 1)."""
    try:
        values = [value, value] if np.ndim(value) == 0 else list(value)
    except TypeError:
        values = None
    if values is None or len(values) != 2:
        raise ValueError(f"`{name}` must be an int or a pair of ints, got {value!r}.")
    return tuple(_transform.integer(v, name) for v in values)


def _padding(padding):
    padding = padding.upper() if isinstance(padding, str) else padding
    if padding not in PADDINGS:
        raise ValueError(f"`padding` must be 'SAME' or 'VALID', got {padding!r}.")
    return padding


def binary_conv2d(x, filters, channels_in, *, strides=1, padding="VALID",
                  pad_value=0, dilations=1, multiplier=None, bias=None,
                  output="float", word_bits=None):
    """Binary convolution of packed NHWC `x` with packed OHWI `filters`.

    Equals ``tf.nn.conv2d(sign(x), sign(w))`` of larq's float layer exactly.

    Args:
      x: ``[N, H, W, words]`` packed input.
      filters: ``[out_channels, kh, kw, words]`` packed (see
        :func:`pack_conv_filter`).
      channels_in: Real input channels C (``words == ceil(C / word bits)``).
      strides, dilations: Int or ``(h, w)``.
      padding: ``"SAME"`` or ``"VALID"`` (TensorFlow's definition).
      pad_value: Value of SAME padding: 1 or -1 (larq ``pad_values=+-1.0``) or
        0 (zero padding, larq's default; exact through a correction term).
        Any other value (0.5, ...) is refused with a ValueError.
      multiplier, bias, output, word_bits: as in ``binary_dense``.

    Raises:
      ValueError: ``pad_value`` not -1, 0 or 1; ``channels_in`` not an
        integer; ``strides`` or ``dilations`` not integers; bad
        ``padding`` or ``output``.
      tf.errors.InvalidArgumentError: shapes that do not fit together.
    """
    x = tf.convert_to_tensor(x)
    out_type, bitpacked = _transform.op_output_args(output, word_bits, x.dtype)
    return _loader.load().tfdisc_binary_conv2d(
        x, filters, _transform.vector(multiplier), _transform.vector(bias),
        channels_in=_transform.integer(channels_in, "channels_in"),
        strides=list(_pair(strides, "strides")),
        dilations=list(_pair(dilations, "dilations")), padding=_padding(padding),
        pad_value=_transform.pad_value(pad_value), out_type=out_type,
        bitpacked_output=bitpacked)


def float_conv2d_bits(x, kernel, bias=None, *, strides=1, padding="VALID", dilations=1,
                      word_bits=32):
    """Sign bits of a float convolution, ``bitpack(tf.nn.conv2d(x, kernel) + bias)``.

    For a full-precision layer whose output only feeds binary layers (a BNN's
    first convolution with its batch norm folded in): the float output is
    never written, only its bits. The sums run in filter order (fused
    multiply-adds on AVX2), not TensorFlow's, so a value within float
    rounding of zero can get the other bit.

    Args:
      x: ``[N, H, W, C]`` float32.
      kernel: ``[kh, kw, C, out_channels]`` float32 (HWIO, a Keras kernel).
      bias: ``[out_channels]`` float32, or None for zeros.
      strides, dilations: Int or ``(h, w)``.
      padding: ``"SAME"`` (zeros) or ``"VALID"``.
      word_bits: 32 (int32 words) or 64 (int64 words).

    Returns:
      ``[N, OH, OW, ceil(out_channels / word_bits)]`` packed words, bit 1 = -1.

    Raises:
      ValueError: bad ``padding``, ``strides``, ``dilations`` or ``word_bits``.
      tf.errors.InvalidArgumentError: shapes that do not fit together.
    """
    if word_bits not in (32, 64):
        raise ValueError(f"`word_bits` must be 32 or 64, got {word_bits!r}.")
    x = tf.convert_to_tensor(x, tf.float32)
    kernel = tf.convert_to_tensor(kernel, tf.float32)
    if bias is None:
        bias = tf.zeros(kernel.shape[-1:] if kernel.shape.rank == 4 else (0,), tf.float32)
    return _loader.load().tfdisc_float_conv2d_bits(
        x, kernel, tf.convert_to_tensor(bias, tf.float32),
        strides=list(_pair(strides, "strides")), dilations=list(_pair(dilations, "dilations")),
        padding=_padding(padding), out_type=tf.int32 if word_bits == 32 else tf.int64)


def bitpacked_max_pool2d(x, pool_size, *, strides=None, padding="VALID",
                         or_mask=None):
    """Max pooling of packed +-1 data (bitwise AND; OR where `or_mask` is set).

    Args:
      x: ``[N, H, W, words]`` packed.
      pool_size, strides: Int or ``(h, w)``; strides default to pool_size.
      padding: ``"SAME"`` or ``"VALID"``.
      or_mask: Optional ``[words]`` packed mask of channels to min-pool (see
        cc_ops/kernels/bitpacked_max_pool_op.cc).
    """
    x = tf.convert_to_tensor(x)
    pool_size = _pair(pool_size, "pool_size")
    strides = pool_size if strides is None else _pair(strides, "strides")
    if or_mask is None:
        or_mask = tf.zeros([0], x.dtype)
    return _loader.load().tfdisc_bitpacked_max_pool2d(
        x, or_mask, ksize=list(pool_size), strides=list(strides),
        padding=_padding(padding))


def pack_conv_filter(kernel, *, word_bits=32):
    """Packs a Keras conv kernel ``[kh, kw, C, O]`` to ``[O, kh, kw, words]``."""
    kernel = np.asarray(kernel)
    return bitpack_reference(np.transpose(kernel, (3, 0, 1, 2)), word_bits)


def _geometry(size, kernel, stride, dilation, padding):
    eff = (kernel - 1) * dilation + 1
    if padding == "SAME":
        out = -(-size // stride)
        total = max((out - 1) * stride + eff - size, 0)
        return out, total // 2, total - total // 2
    return (size - eff) // stride + 1, 0, 0


def binary_conv2d_reference(x, filters, channels_in, *, strides=1,
                            padding="VALID", pad_value=0, dilations=1,
                            multiplier=None, bias=None, output="float",
                            word_bits=None):
    """Numpy twin of :func:`binary_conv2d`: unpack, pad with `pad_value`,
    sum over taps in integers."""
    _transform.check_output(output)
    padding = _padding(padding)
    (sh, sw), (dh, dw) = _pair(strides, "strides"), _pair(dilations, "dilations")
    x = np.asarray(x)
    filters = np.asarray(filters)
    xs = unpack_reference(x, channels_in).astype(np.int64)
    ws = unpack_reference(filters, channels_in).astype(np.int64)
    n, h, w, _ = xs.shape
    o, kh, kw, _ = ws.shape
    oh, top, bottom = _geometry(h, kh, sh, dh, padding)
    ow, left, right = _geometry(w, kw, sw, dw, padding)
    xp = np.pad(xs, ((0, 0), (top, bottom), (left, right), (0, 0)),
                constant_values=pad_value)
    dot = np.zeros((n, oh, ow, o), np.int64)
    for fy in range(kh):
        for fx in range(kw):
            patch = xp[:, fy * dh: fy * dh + (oh - 1) * sh + 1: sh,
                       fx * dw: fx * dw + (ow - 1) * sw + 1: sw, :]
            dot += np.einsum("nhwc,oc->nhwo", patch, ws[:, fy, fx, :])
    word_bits = word_bits or x.dtype.itemsize * 8
    return _transform.transform_reference(dot, multiplier, bias, output, word_bits)


def bitpacked_max_pool2d_reference(x, pool_size, *, strides=None,
                                   padding="VALID", or_mask=None):
    """Numpy twin of :func:`bitpacked_max_pool2d` via +-1 max/min pooling."""
    x = np.asarray(x)
    word_bits = x.dtype.itemsize * 8
    c = x.shape[-1] * word_bits
    pool_size = _pair(pool_size, "pool_size")
    strides = pool_size if strides is None else _pair(strides, "strides")
    padding = _padding(padding)
    v = unpack_reference(x, c)
    n, h, w, _ = v.shape
    oh, top, bottom = _geometry(h, pool_size[0], strides[0], 1, padding)
    ow, left, right = _geometry(w, pool_size[1], strides[1], 1, padding)
    mx = np.pad(v, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    mn = np.pad(v, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=np.inf)
    out_max = np.full((n, oh, ow, c), -np.inf, np.float32)
    out_min = np.full((n, oh, ow, c), np.inf, np.float32)
    for fy in range(pool_size[0]):
        for fx in range(pool_size[1]):
            sl = (slice(None), slice(fy, fy + (oh - 1) * strides[0] + 1, strides[0]),
                  slice(fx, fx + (ow - 1) * strides[1] + 1, strides[1]))
            out_max = np.maximum(out_max, mx[sl])
            out_min = np.minimum(out_min, mn[sl])
    if or_mask is not None:
        use_min = unpack_reference(np.asarray(or_mask)[None], c)[0] < 0
        out_max = np.where(use_min, out_min, out_max)
    return bitpack_reference(out_max, word_bits)
