"""Exact projection onto the L∞ ε-ball and the clip range, for the attacks.

``tf.clip_by_value(x_adv, x - eps, x + eps)`` is not exact: ``x - eps`` is
rounded to the nearest float, up to half an ulp outside the ball, and
TensorFlow's CPU kernels flush subnormal inputs and results to zero. PGD
left hundreds of pixels per run up to 2.4e-8 outside the ball that way.

What ``project`` guarantees, for float16, bfloat16, float32 and float64 images:

* ``|x_adv − x| ≤ ε`` in **exact real arithmetic**, for every element, where
  ε is the number given (a Python float, or the value of a tensor). It follows
  that the float32 check ``np.abs(x_adv - x) <= np.float32(eps)`` holds too
  (rounding is monotone). The attacks (``tfdisc.attacks``) pass ε to their
  graphs as the largest float32 ≤ ε, so the ball holds for the ε asked for.
* ``clip[0] ≤ x_adv ≤ clip[1]`` (exact reals) whenever the ball reaches the
  clip range, in particular whenever ``x`` is inside it. For a pixel outside
  ``clip`` by more than ε (which ``tfdisc.checks.check_images`` refuses beyond
  rounding) the ball wins: ``x_adv`` is the ball's point nearest to ``clip``.
* ``x_adv`` is the nearest point of that set to ``x_adv`` as given: each bound
  is the float closest to ``x ± ε`` on the inside, so nothing is lost to a
  conservative margin. One exception, for float64 images only: a pixel of
  magnitude below 2**-960 (about 1e-289) other than 0 keeps its value, and an
  ε below 2**-960 counts as 0 (still inside the ball; TensorFlow flushes
  float64 subnormals, so the exact sum cannot be formed there).

How: the bounds ``x ± ε`` are computed exactly in float64 as a rounded sum
and its error (TwoSum, Knuth), from exact float64 copies of ``x`` and ε made
from their bits (a cast would flush subnormals), and rounded inwards to the
image dtype; every comparison and clip then runs on the floats' bit patterns
as ordered integers, which no flush-to-zero mode touches.
"""
import numbers

import numpy as np
import tensorflow as tf

__all__ = ["ball", "clip_between", "clip_range", "project", "round_down", "round_up"]

# dtype: (integer type of its bits, mantissa bits, exponent bias)
_FORMATS = {
    tf.float16: (tf.int16, 10, 15),
    tf.bfloat16: (tf.int16, 7, 127),
    tf.float32: (tf.int32, 23, 127),
    tf.float64: (tf.int64, 52, 1023),
}


def _format(dtype):
    dtype = tf.as_dtype(dtype)
    if dtype not in _FORMATS:
        raise TypeError(f"Images must be float16, bfloat16, float32 or float64, got {dtype.name}.")
    return dtype, _FORMATS[dtype]


# ----------------------------------------------------------------- Python side (numpy, no FTZ)

def _np_step(value, up):
    """The next float of value's numpy dtype above (up) or below it, via its bits."""
    int_dtype = np.dtype(f"i{value.dtype.itemsize}")
    shift, top = 8 * value.dtype.itemsize - 1, int(np.iinfo(int_dtype).max)
    bits = int(np.asarray(value).view(int_dtype))
    key = bits ^ ((bits >> shift) & top)
    key += 1 if up else -1
    bits = key ^ ((key >> shift) & top)
    return np.asarray(bits, int_dtype).view(value.dtype)[()]


def round_down(value, dtype):
    """The largest ``dtype`` value ≤ ``value`` (a finite Python number), as a numpy scalar."""
    dtype, _ = _format(dtype)
    value = float(value)
    with np.errstate(over="ignore"):
        rounded = np.asarray(value, np.float64).astype(dtype.as_numpy_dtype)[()]
    return _np_step(rounded, up=False) if float(rounded) > value else rounded


def round_up(value, dtype):
    """The smallest ``dtype`` value ≥ ``value`` (a finite Python number), as a numpy scalar."""
    dtype, _ = _format(dtype)
    value = float(value)
    with np.errstate(over="ignore"):
        rounded = np.asarray(value, np.float64).astype(dtype.as_numpy_dtype)[()]
    return _np_step(rounded, up=True) if float(rounded) < value else rounded


def clip_range(clip, dtype):
    """``clip`` rounded inwards to ``dtype``: the pair of ``dtype`` values inside it, or None.

    Raises:
      ValueError: no ``dtype`` value lies in ``clip``.
    """
    if clip is None:
        return None
    low, high = round_up(clip[0], dtype), round_down(clip[1], dtype)
    if not low <= high:
        raise ValueError(f"`clip` {tuple(clip)!r} contains no {tf.as_dtype(dtype).name} value.")
    return low, high


# ----------------------------------------------------------------- TensorFlow side (graph-safe)

def _keys(v, int_type):
    """Bits of ``v`` as integers ordered like the floats (−0 just below +0)."""
    bits = tf.bitcast(v, int_type)
    return tf.bitwise.bitwise_xor(
        bits, tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, int_type.size * 8 - 1),
                                     tf.constant(int_type.max, int_type)))


def _from_keys(keys, dtype, int_type):
    return tf.bitcast(_keys(keys, int_type), dtype)  # the map is its own inverse


def _pow2(exponent):
    """2**exponent as float64, exactly, for int64 exponents in the normal range."""
    return tf.bitcast(tf.bitwise.left_shift(exponent + 1023, tf.constant(52, tf.int64)), tf.float64)


def _to_float64(v):
    """``v`` as float64, exactly, subnormals included (a TF cast would flush them)."""
    dtype, (int_type, mant, bias) = _format(v.dtype)
    if dtype == tf.float64:
        return v
    width = int_type.size * 8
    bits = tf.bitwise.bitwise_and(tf.cast(tf.bitcast(v, int_type), tf.int64), (1 << width) - 1)
    exponent = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, tf.constant(mant, tf.int64)),
                                      (1 << (width - 1 - mant)) - 1)
    fraction = tf.bitwise.bitwise_and(bits, (1 << mant) - 1)
    subnormal = tf.equal(exponent, 0)
    significand = tf.where(subnormal, fraction, fraction + (1 << mant))
    power = tf.where(subnormal, tf.ones_like(exponent), exponent) - (bias + mant)
    magnitude = tf.cast(significand, tf.float64) * _pow2(power)
    value = tf.where(tf.bitwise.right_shift(bits, tf.constant(width - 1, tf.int64)) > 0,
                     -magnitude, magnitude)
    special = tf.equal(exponent, (1 << (width - 1 - mant)) - 1)  # inf, NaN: a cast is exact
    return tf.where(special, tf.cast(v, tf.float64), value)


def _two_sum(a, b):
    """``(s, err)`` with ``s = fl(a + b)`` and ``a + b = s + err`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) - (bb - b)


def _round_keys(s, err, dtype, up):
    """Keys of the ``dtype`` value nearest ``s + err`` (exact) on the side ``up`` / down."""
    dtype, (int_type, mant, bias) = _format(dtype)
    if dtype == tf.float64:
        keys = _keys(s, int_type)
        step = err > 0 if up else err < 0
    else:
        candidate = tf.cast(s, dtype)  # nearest (or a neighbour); ±inf beyond the range
        keys = _keys(candidate, int_type)
        above = tf.cast(candidate, tf.float64) - s  # exact: candidate is within an ulp of s
        step = above < err if up else above > err
    keys = tf.where(step, keys + (1 if up else -1), keys)
    if dtype == tf.float64:
        return keys
    # |s| below the smallest normal: the bound is a count of the smallest
    # subnormal, the ceiling (floor) of (s + err) · 2**(bias - 1 + mant), taken
    # exactly (scaling by a power of two is exact; err only breaks a tie).
    scaled, scaled_err = s * 2.0 ** (bias - 1 + mant), err * 2.0 ** (bias - 1 + mant)
    if up:
        count = tf.math.ceil(scaled)
        count = tf.where(tf.equal(count, scaled) & (scaled_err > 0), count + 1, count)
    else:
        count = tf.math.floor(scaled)
        count = tf.where(tf.equal(count, scaled) & (scaled_err < 0), count - 1, count)
    magnitude = tf.cast(tf.abs(count), int_type)
    sub_bits = tf.where(count < 0,
                        tf.bitwise.bitwise_or(magnitude, tf.constant(int_type.min, int_type)),
                        magnitude)
    sub_keys = _keys(tf.bitcast(sub_bits, dtype), int_type)
    return tf.where(tf.abs(s) < 2.0 ** (1 - bias), sub_keys, keys)


def _below_2_960(v):
    """|v| < 2**-960, read from the bits of float64 ``v`` (no flush-to-zero)."""
    magnitude = tf.bitwise.bitwise_and(tf.bitcast(v, tf.int64), tf.constant(2**63 - 1, tf.int64))
    return magnitude < (1023 - 960) << 52


def _eps_float64(eps, dtype):
    """ε as an exact float64 tensor (0 below 2**-960, where no float lies within it of x
    other than x itself, except for float64 images: see the module docstring)."""
    if isinstance(eps, numbers.Real) and not isinstance(eps, bool):
        eps = float(eps)
        if not 0.0 <= eps < float("inf"):
            raise ValueError(f"`eps` must be a finite number >= 0, got {eps!r}.")
        return tf.constant(eps if eps >= 2.0**-960 else 0.0, tf.float64)
    eps = tf.convert_to_tensor(eps)
    eps = _to_float64(eps) if eps.dtype == dtype else tf.cast(eps, tf.float64)
    return tf.where(_below_2_960(eps), tf.zeros_like(eps), eps)


def _ball_keys(x, eps, clip):
    dtype, (int_type, _, _) = _format(x.dtype)
    wide, e = _to_float64(x), _eps_float64(eps, dtype)
    low_sum, high_sum = _two_sum(wide, -e), _two_sum(wide, e)
    low = _round_keys(*low_sum, dtype, up=True)
    high = _round_keys(*high_sum, dtype, up=False)
    if dtype == tf.float64:
        # TwoSum is exact while no float64 operand, sum or error is subnormal
        # (TensorFlow flushes those). With ε = 0 or ≥ 2**-960 and x = 0 or
        # |x| ≥ 2**-960, all of them are multiples of 2**-1012: normal or zero.
        # Elsewhere the ball shrinks to x itself.
        tiny = _below_2_960(wide) & tf.not_equal(
            tf.bitwise.bitwise_and(tf.bitcast(x, tf.int64), tf.constant(2**63 - 1, tf.int64)), 0)
        low = tf.where(tiny, _keys(x, int_type), low)
        high = tf.where(tiny, _keys(x, int_type), high)
    clip = clip_range(clip, dtype)
    if clip is None:
        return low, high, int_type
    clip_low = _keys(tf.constant(clip[0], dtype), int_type)
    clip_high = _keys(tf.constant(clip[1], dtype), int_type)
    # Intersection of the ball and the clip range; where it is empty, the
    # ball's point nearest to the clip range.
    return (tf.minimum(tf.maximum(low, clip_low), high),
            tf.maximum(tf.minimum(high, clip_high), low), int_type)


def ball(x, eps, clip=None):
    """The bounds ``(low, high)`` of the projection of ``project``, as tensors like ``x``.

    Every value ``v`` with ``low ≤ v ≤ high`` satisfies ``|v − x| ≤ ε`` exactly
    and lies in ``clip`` where the ball reaches it (see the module docstring).
    """
    x = tf.convert_to_tensor(x)
    low, high, int_type = _ball_keys(x, eps, clip)
    return _from_keys(low, x.dtype, int_type), _from_keys(high, x.dtype, int_type)


def project(x_adv, x, eps, clip=None):
    """Projects ``x_adv`` onto the L∞ ε-ball around ``x`` and the ``clip`` range, exactly.

    Args:
      x_adv: candidate images (NaN entries land on a bound).
      x: the clean images, finite, same shape and float dtype.
      eps: radius ≥ 0: a Python number or a scalar tensor.
      clip: ``(low, high)`` Python numbers, or None.

    Returns:
      ``x_adv`` with every element clipped to ``[x − ε, x + ε]`` and ``clip``
      such that ``|result − x| ≤ ε`` holds in exact real arithmetic (see the
      module docstring for the full statement).
    """
    x = tf.convert_to_tensor(x)
    x_adv = tf.convert_to_tensor(x_adv, x.dtype)
    low, high, int_type = _ball_keys(x, eps, clip)
    keys = tf.minimum(tf.maximum(_keys(x_adv, int_type), low), high)
    return _from_keys(keys, x.dtype, int_type)


def clip_between(v, low, high):
    """``min(max(v, low), high)`` on the floats' bit patterns: exact, subnormals kept.

    With ``(low, high) = ball(x, eps, clip)`` this is ``project(v, x, eps, clip)``
    without recomputing the bounds (PGD projects onto the same ball every step).
    """
    v = tf.convert_to_tensor(v)
    _, (int_type, _, _) = _format(v.dtype)
    keys = tf.minimum(tf.maximum(_keys(v, int_type), _keys(tf.convert_to_tensor(low, v.dtype),
                                                             int_type)),
                      _keys(tf.convert_to_tensor(high, v.dtype), int_type))
    return _from_keys(keys, v.dtype, int_type)
