"""``bit_depth``: paper eq. 2 on float32 images as one C++ op, for inference."""

import numpy as np
import tensorflow as tf

from tfdisc import quantize
from tfdisc.ops import _loader


def bit_depth(x, bits, *, value_range=(0.0, 1.0), straight_through=True):
    """``tfdisc.quantize.bit_depth(x, bits, value_range=...)`` in one op.

    The same float32 values, bit for bit, as the ~15 TensorFlow ops of
    :func:`tfdisc.quantize.bit_depth` (NaN read as ``low``, clipped, eq. 2),
    in one pass. No gradient is registered: this is the inference form that
    ``tfdisc.convert.to_packed`` puts in packed networks; attacks and training
    use :func:`tfdisc.quantize.bit_depth`.

    Args:
      x: float32 tensor of images on the scale of ``value_range``.
      bits: Integer δ in [1, 8].
      value_range: ``(low, high)`` of the input and of the output.
      straight_through: Return the forward value of the straight-through form
        (``clipped + (quantized - clipped)``, which can differ from
        ``quantized`` in the last bit), as the layer with
        ``gradient="straight_through"`` computes it; False returns the
        quantized value itself (``gradient="none"``).

    Returns:
      float32 tensor of the shape of ``x``.

    Raises:
      ValueError: ``bits`` not an integer in [1, 8], a bad ``value_range``
        (including ranges float32 cannot quantize, such as ``(0, 1e-39)``:
        ``tfdisc.quantize.check_value_range``), or a non-bool
        ``straight_through``.
      TypeError: ``x`` is not float32.
    """
    bits = quantize.check_bits(bits)
    low, high = quantize.check_value_range(value_range)
    if not isinstance(straight_through, (bool, np.bool_)):
        raise ValueError(f"`straight_through` must be True or False, got {straight_through!r}.")
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32:
        raise TypeError(f"`x` must be float32 for tfdisc.ops.bit_depth, got {x.dtype.name}; "
                        "use tfdisc.quantize.bit_depth for other dtypes.")
    return _loader.load().tfdisc_bit_depth(
        x, bits=bits, low=low, high=high, scale=255.0 / (high - low),
        unscale=(high - low) / 255.0, straight_through=bool(straight_through))
