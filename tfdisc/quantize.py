"""Input discretization: bit-depth reduction (paper eq. 2).

For an 8-bit intensity ``I`` and ``bits`` = δ, eq. 2 of the paper reads::

    s   = 256 / 2**δ
    I_δ = floor(I / s) · s + s / 2

``bit_depth`` applies it on the 0–255 scale of ``value_range`` and returns
values in the same scale as its input. Note that for δ = 8 (s = 1) eq. 2 maps
``I`` to ``I + 0.5``, so the largest output is 255.5/255 of the range.
"""
import math
import numbers

import numpy as np
import tensorflow as tf

__all__ = ["GRADIENTS", "bin_bounds", "bin_width", "bit_depth", "check_bits", "check_edges",
           "check_gradient", "check_value_range", "custom_edges", "edges_from_data", "eq2_edges"]

GRADIENTS = ("straight_through", "none")

# Float inputs ``k/255`` are not exact in float32: 255·x may land a hair below
# an integer bin edge. Intensities within this tolerance (in 0–255 units) of a
# bin edge are assigned to the bin above, so every exact 8-bit value is binned
# as eq. 2 says.
_EDGE_TOLERANCE = 1e-3


def check_bits(bits):
    """Returns ``bits`` as an int, or raises ``ValueError`` if not in 1..8."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        if isinstance(bits, float) and bits.is_integer():
            bits = int(bits)
        else:
            raise ValueError(f"`bits` must be an integer in [1, 8], got {bits!r}.")
    bits = int(bits)
    if not 1 <= bits <= 8:
        raise ValueError(f"`bits` must be an integer in [1, 8], got {bits}.")
    return bits



def bin_width(bits):
    """The bin width ``s = 256 / 2**bits`` of paper eq. 2 on the 0–255 scale, as an int.

    128 for 1 bit down to 1 for 8 bits: bin ``k`` holds the 8-bit intensities
    ``k·s`` to ``(k + 1)·s − 1`` and its level is ``k·s + s/2``.

    Raises:
      ValueError: ``bits`` not an integer in [1, 8].
    """
    return 256 // 2**check_bits(bits)

def eq2_edges(bits):
    """Eq. 2's bin edges on the 0–255 scale: ``k · s`` for ``k = 1 .. 2**bits − 1``."""
    step = bin_width(bits)
    return tuple(float(k * step) for k in range(1, 2**bits))


def check_edges(edges, bits):
    """Custom bin edges as a tuple of floats, or None for eq. 2's.

    ``edges`` are the ``2**bits − 1`` intensities (0–255 scale) where one bin
    ends and the next begins: bin ``k`` holds the intensities in
    ``[edges[k − 1], edges[k])`` (with 0 and 256 as the outer ends) and its
    level is the bin's middle, so eq. 2's edges ``k · s`` give eq. 2 exactly.

    Raises:
      ValueError: not a sequence of ``2**bits − 1`` finite numbers, strictly
        increasing (unsorted or duplicate edges are named), in ``(0, 255]``.
    """
    bits = check_bits(bits)
    if edges is None:
        return None
    if isinstance(edges, (str, bytes)) or not hasattr(edges, "__len__"):
        raise ValueError(f"`edges` must be a sequence of {2**bits - 1} numbers, got {edges!r}.")
    values = []
    for e in edges:
        if isinstance(e, bool) or not isinstance(e, numbers.Real):
            raise ValueError(f"`edges` must hold numbers, got {e!r} in {list(edges)!r}.")
        values.append(float(e))
    if len(values) != 2**bits - 1:
        raise ValueError(f"`edges` of a {bits}-bit quantizer must hold {2**bits - 1} edge(s) "
                         f"(one per boundary between its {2**bits} bins), got {len(values)}.")
    for e in values:
        if not math.isfinite(e) or not 0.0 < e <= 255.0:
            raise ValueError(f"`edges` must lie in (0, 255] (0–255 intensity scale), got {e!r}.")
    for a, b in zip(values, values[1:]):
        if a == b:
            raise ValueError(f"`edges` holds the duplicate edge {a!r}: bins would be empty.")
        if a > b:
            raise ValueError(f"`edges` must be increasing, got {a!r} before {b!r}.")
    return tuple(values)


def custom_edges(edges, bits):
    """``check_edges``, normalized: None for eq. 2's own edges (they are eq. 2)."""
    edges = check_edges(edges, bits)
    return None if edges == eq2_edges(bits) else edges


def bin_bounds(bits, edges=None):
    """float64 array ``[0, e_1, …, e_{2**bits − 1}, 256]``: bin ``k`` is ``[b[k], b[k + 1])``."""
    edges = check_edges(edges, bits)
    inner = eq2_edges(bits) if edges is None else edges
    return np.array((0.0,) + tuple(inner) + (256.0,), np.float64)


def edges_from_data(images, bits, eps, *, value_range=(0.0, 1.0)):
    """Bin edges placed away from where the data's pixels concentrate (a documented option).

    Each of eq. 2's edges ``k · s`` moves within ``(k·s − s/2, k·s + s/2)``, on
    a half-intensity grid, to where the fewest pixels of ``images`` lie within
    ``eps`` of it: those are the pixels an L∞ perturbation of ``eps`` can move
    across the edge (free pixels). Ties keep the edge nearest eq. 2's. The
    edges stay increasing and every bin keeps at least half of eq. 2's width
    on each side of its own edge, so no bin collapses.

    Args:
      images: training images, uint8 intensities or floats on ``value_range``.
      bits: integer in [1, 8].
      eps: L∞ radius on the ``value_range`` scale (e.g. 0.3 for MNIST in [0, 1]).

    Returns:
      tuple of ``2**bits − 1`` floats, valid for ``check_edges``.
    """
    bits = check_bits(bits)
    low, high = check_value_range(value_range)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) \
            or eps < 0:
        raise ValueError(f"`eps` must be a finite number ≥ 0, got {eps!r}.")
    x = np.asarray(images)
    if x.size == 0:
        raise ValueError("`images` is empty: edges cannot be chosen from no data.")
    if x.dtype.kind in "ui":
        intensity = np.clip(x.astype(np.float64), 0.0, 255.0)
    elif x.dtype.kind == "f":
        intensity = np.clip((x.astype(np.float64) - low) * 255.0 / (high - low), 0.0, 255.0)
    else:
        raise ValueError(f"`images` must be numeric, got dtype {x.dtype}.")
    hist = np.bincount(np.round(intensity).astype(np.int64).ravel(), minlength=256)
    cum = np.concatenate([[0], np.cumsum(hist)])
    radius = float(eps) * 255.0 / (high - low)
    step = bin_width(bits)
    edges = []
    for k in range(1, 2**bits):
        centre = float(k * step)
        grid = np.arange(centre - step / 2.0 + 0.5, centre + step / 2.0, 0.5)
        grid = grid[(grid > 0.0) & (grid <= 255.0)]
        lo = np.clip(np.ceil(grid - radius), 0, 256).astype(np.int64)
        hi = np.clip(np.floor(grid + radius) + 1, 0, 256).astype(np.int64)
        free = cum[hi] - cum[np.minimum(lo, hi)]
        best = np.flatnonzero(free == free.min())
        edges.append(float(grid[best[np.argmin(np.abs(grid[best] - centre))]]))
    return check_edges(edges, bits)


def check_gradient(gradient):
    if gradient not in GRADIENTS:
        raise ValueError(f"`gradient` must be one of {GRADIENTS}, got {gradient!r}.")
    return gradient


def check_value_range(value_range):
    """``value_range`` as a float pair ``(low, high)`` that float32 arithmetic can quantize.

    Raises:
      ValueError: not a pair of finite numbers with low < high, or a range
        float32 cannot represent: an end beyond ±3.4e38, a width that
        overflows float32 or whose ``width / 510`` (the lowest level's offset)
        is not a normal float32 number, e.g. ``(0, 1e-39)`` (which gave NaN),
        or a range so narrow for its
        magnitude that neighbouring levels would round to the same float32
        value, e.g. ``(1e10, 1e10 + 1)``.
    """
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"`value_range` must be a pair (low, high) of numbers, got {value_range!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"`value_range` must be finite, got {value_range!r}.")
    if not high > low:
        raise ValueError(f"`value_range` must have low < high, got {value_range!r}.")
    problem = _float32_problem(low, high)
    if problem:
        raise ValueError(f"`value_range` {value_range!r} cannot be quantized in float32: "
                         f"{problem}. Use a range of width between about 6e-36 and 3e38, "
                         "wide enough for its magnitude (e.g. (0, 1) or (0, 255)).")
    return (low, high)


def _float32_problem(low, high):
    """Why float32 cannot carry the quantizer's arithmetic on [low, high], or None."""
    f32 = np.float32
    with np.errstate(over="ignore", under="ignore"):
        low32, high32 = f32(low), f32(high)
        if not (np.isfinite(low32) and np.isfinite(high32)):
            return "an end lies beyond the float32 range (±3.4e38)"
        width = high32 - low32
        scale, unscale = f32(255.0 / (high - low)), f32((high - low) / 255.0)
    tiny = np.finfo(np.float32).tiny
    if not low32 < high32:
        return "both ends round to the same float32 value"
    if not np.isfinite(width):
        return f"its width {high - low!r} overflows float32"
    # The lowest level is low + 0.5 · width / 255: its offset must be a normal
    # float32 (TensorFlow flushes subnormals to zero), and 255 / width finite.
    if not (np.isfinite(scale) and 0.5 * unscale >= tiny):
        return (f"its width {high - low!r} is too small: width / 510 is not a normal float32 "
                "number")
    with np.errstate(over="ignore"):
        top = f32(low32 + f32(f32(255.5) * unscale))  # the highest level (eq. 2 at δ = 8)
    if not np.isfinite(top):
        return f"its highest level, {low!r} + 255.5 / 255 of the width, overflows float32"
    if unscale < np.spacing(max(abs(low32), abs(high32))):
        return (f"its width {high - low!r} is too small for its magnitude: neighbouring "
                "levels would round to the same float32 value")
    return None


def bit_depth(x, bits, *, value_range=(0.0, 1.0), gradient="straight_through", edges=None):
    """Quantizes intensities to ``bits`` bits with paper eq. 2 (or custom bin edges).

    Args:
      x: Tensor of images. Floats are read on the scale of ``value_range``
        (clipped to it, so ±inf land on the top and bottom levels; NaN pixels
        are read as ``value_range[0]`` and so land on the lowest level);
        integers (e.g. uint8 images) are read as 8-bit intensities 0–255.
      bits: Integer δ in [1, 8].
      value_range: ``(low, high)`` of float inputs and of the output.
      gradient: ``"straight_through"`` (default) passes the incoming gradient
        through unchanged inside ``value_range`` (zero outside, from the clip):
        the attacker knows the discretization (BPDA). ``"none"`` keeps the true
        zero gradient of ``floor``; it only shows gradient masking, and any
        figure made with it must say so.
      edges: None (eq. 2, the default) or ``2**bits − 1`` increasing bin edges
        on the 0–255 scale (see ``check_edges``): each bin maps to its middle.
        Eq. 2's own edges (``eq2_edges``) give eq. 2 bit for bit.

    Returns:
      float32 tensor (the input's float dtype, if floating) with the shape of
      ``x``, on the scale of ``value_range``.

    Raises:
      ValueError: ``bits`` not an integer in [1, 8], bad or non-finite
        ``value_range`` or one float32 cannot quantize (see
        ``check_value_range``), or bad ``gradient``.
      TypeError: ``x`` is not numeric.

    References:
      Paper eq. 2 (input discretization).

    Example:
      >>> bit_depth(tf.constant([0.0, 0.3, 1.0]), 1).numpy()  # I_1 ∈ {64, 192}/255
      array([0.2509804, 0.2509804, 0.7529412], dtype=float32)
    """
    bits = check_bits(bits)
    low, high = check_value_range(value_range)
    check_gradient(gradient)
    edges = check_edges(edges, bits)
    x = tf.convert_to_tensor(x)
    step = float(bin_width(bits))
    if edges is not None:
        bounds = bin_bounds(bits, edges)
        # Bin middles: for eq. 2's edges k·s + s/2 exactly, as the formula below computes them.
        middles = tf.constant((bounds[:-1] + bounds[1:]) / 2.0, tf.float32)
    if x.dtype.is_integer or x.dtype == tf.bool:
        if x.dtype == tf.bool:
            raise TypeError("`x` must be a numeric image tensor, got dtype bool.")
        intensity = tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 255.0)
        if edges is not None:
            quantized = tf.gather(middles, tf.raw_ops.Bucketize(input=intensity,
                                                                boundaries=list(edges)))
        else:
            quantized = tf.floor(intensity / step) * step + step / 2.0
        return quantized / 255.0 * (high - low) + low
    if not x.dtype.is_floating:
        raise TypeError(f"`x` must be a numeric image tensor, got dtype {x.dtype.name}.")
    # NaN != NaN: a NaN pixel is read as `low` (lowest level), never propagated.
    x = tf.where(tf.equal(x, x), x, tf.cast(low, x.dtype))
    clipped = tf.clip_by_value(x, tf.cast(low, x.dtype), tf.cast(high, x.dtype))
    intensity = (clipped - low) * (255.0 / (high - low))
    if edges is not None:
        shifted = intensity + _EDGE_TOLERANCE
        if shifted.dtype not in (tf.float32, tf.float64):  # Bucketize's float types
            shifted = tf.cast(shifted, tf.float32)
        bucket = tf.raw_ops.Bucketize(input=shifted, boundaries=list(edges))
        level = tf.cast(tf.gather(middles, bucket), x.dtype)
    else:
        bin_index = tf.floor((intensity + _EDGE_TOLERANCE) / step)
        bin_index = tf.minimum(bin_index, 2.0**bits - 1.0)
        level = bin_index * step + step / 2.0
    quantized = level * ((high - low) / 255.0) + low
    if gradient == "none":
        return tf.stop_gradient(quantized)
    return clipped + tf.stop_gradient(quantized - clipped)
