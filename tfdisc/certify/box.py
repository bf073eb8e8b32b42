"""The exact set of quantized inputs an L∞ attacker can reach through ``BitDepthQuantization``.

Under ``‖x' − x‖∞ ≤ ε`` (and ``x'`` inside ``clip``) pixel ``i`` ranges over the
real interval ``[max(clip_lo, x_i − ε), min(clip_hi, x_i + ε)]``. The layer's
bin function (paper eq. 2 with its own edge tolerance) is non-decreasing, so the
levels the pixel can reach are exactly the consecutive bins between the bins of
the two endpoints: a box of per-pixel level ranges.

Soundness in float32: the endpoints ``x ± ε`` are rounded, so for ε > 0 they are
widened by ``slack`` (a few ulps, at least 2⁻²⁰ of the value range) before being
binned *by the layer's own function* (``tfdisc.quantize.bit_depth``). An
endpoint within that slack of a bin edge therefore reaches both neighbouring
bins (widening at bin edges); elsewhere the box is exact.

Integer images are 8-bit intensities (the layer's integer path, no edge
tolerance); ε is on the scale of ``value_range`` (ε = 0.1 with range [0, 1]
is 25.5 intensity steps) and the attacker's image is an integer image too:
intensities ``J`` with ``|J − I| ≤ ε·255/(high − low)``, clipped to [0, 255].
"""
import numpy as np
import tensorflow as tf

from tfdisc import checks as checks_lib
from tfdisc.layers import BitDepthQuantization

__all__ = ["Box", "check_labels", "input_box", "input_quantizer", "interval", "jitter",
           "into_ball", "level_interval", "levels", "lowest_intensity", "realize"]

_F32_EPS = float(np.finfo(np.float32).eps)


def input_quantizer(model):
    """The model's ``BitDepthQuantization`` if it is the first layer after the input, else None.

    Raises:
      ValueError: the model has a ``BitDepthQuantization`` layer elsewhere
        (the reachable box is defined for the input quantizer only).
    """
    layers = [layer for layer in model.layers
              if not isinstance(layer, tf.keras.layers.InputLayer)]
    quantizers = [layer for layer in layers if isinstance(layer, BitDepthQuantization)]
    if not quantizers:
        return None
    if len(quantizers) > 1 or layers[0] is not quantizers[0]:
        raise ValueError(
            f"Model {model.name!r}: certification needs BitDepthQuantization as the first layer "
            f"after the input and nowhere else; found it at "
            f"{[layer.name for layer in quantizers]}.")
    return quantizers[0]


def _slack(layer_range):
    low, high = layer_range
    scale = max(abs(low), abs(high), 1.0)
    return max((high - low) * 2.0**-20, 16.0 * _F32_EPS * scale)


def interval(x, eps, *, clip=(0.0, 1.0), value_range=(0.0, 1.0)):
    """Per-pixel attacker interval ``[lo, hi]`` as float32 tensors (float images only).

    For ε > 0 the endpoints are widened by a few ulps (see module doc), so every
    float32 image in the ε-ball and the clip range lies inside.
    """
    eps = checks_lib.check_eps(eps)
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"`x` must be float images here, got {x.dtype.name}.")
    x = tf.cast(x, tf.float32)
    slack = _slack(value_range) if eps > 0 else 0.0
    lo = x - eps - slack
    hi = x + eps + slack
    if clip is not None:
        lo = tf.maximum(lo, clip[0])
        hi = tf.minimum(hi, clip[1])
    # The clean image is always in the box (it may lie within rounding tolerance outside clip).
    return tf.minimum(lo, x), tf.maximum(hi, x)


def interval_tensor(x, eps, clip, value_range):
    """TF-only version of ``interval`` for a tensor ε (used by certified training)."""
    x = tf.cast(x, tf.float32)
    eps = tf.cast(eps, tf.float32)
    slack = tf.where(eps > 0, _slack(value_range), 0.0)
    lo, hi = x - eps - slack, x + eps + slack
    if clip is not None:
        lo, hi = tf.maximum(lo, clip[0]), tf.minimum(hi, clip[1])
    return tf.minimum(lo, x), tf.maximum(hi, x)


def check_labels(model, y, batch):
    """Integer labels (numpy int64 ``[batch]``) checked as the attacks check them.

    Accepts what ``tfdisc.checks.check_labels`` accepts (``[N]`` or ``[N, 1]``
    integers, one-hot floats); refuses float class indices, labels outside the
    model's classes and a count different from ``batch``.
    """
    return checks_lib.check_labels(y, checks_lib.num_classes(model), batch).numpy()


def _check_images(model, x, clip, integer):
    """Refuses images the box cannot be computed for (as the attacks refuse them)."""
    shape = model.input_shape
    if isinstance(shape, list):
        raise ValueError(f"Model {model.name!r} has {len(shape)} inputs; certification needs one.")
    known = all(d is not None for d in shape[1:])
    if integer:
        if x.ndim != len(shape) or (known and tuple(x.shape[1:]) != tuple(shape[1:])):
            raise ValueError(f"`x` has shape {x.shape} but the model expects {shape}.")
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(
                f"Integer images must be 8-bit intensities in [0, 255], got values in "
                f"[{x.min()}, {x.max()}].")
        return
    if not known and x.ndim != len(shape):
        raise ValueError(f"`x` has shape {x.shape} but the model expects {shape}.")
    checks_lib.check_images(x, clip, shape if known else None)


def _integer_interval(x, eps, value_range):
    low, high = value_range
    e = eps * 255.0 / (high - low)
    intensity = np.asarray(x, np.float64)
    lo = np.clip(np.ceil(intensity - e - 1e-9), 0, 255)
    hi = np.clip(np.floor(intensity + e + 1e-9), 0, 255)
    return lo.astype(np.int32), hi.astype(np.int32)


def levels(layer, integer=False):
    """The layer's output levels, exactly as it computes them (float32 path or integer path).

    Returns:
      float32 numpy array of the ``2**bits`` levels, increasing.
    """
    bounds = layer.bin_bounds
    low, high = layer.value_range
    if integer:
        reps = tf.constant(lowest_intensity(bounds[:-1]), tf.int32)
    else:
        centres = (bounds[:-1] + bounds[1:]) / 2.0 / 255.0 * (high - low) + low
        reps = tf.constant(centres, tf.float32)
    return layer.quantize(reps, gradient="none").numpy()


def lowest_intensity(edges):
    """The lowest 8-bit intensity at or above each bin edge (0–255 scale)."""
    return np.ceil(np.asarray(edges, np.float64)).astype(np.int64)


def jitter(layer, integer=False):
    """Largest difference between the layer's float output and its level.

    With the straight-through gradient the layer returns ``x + (q − x)``, which
    float32 rounding may move off the level ``q`` by up to an ulp of the range.
    """
    if integer or layer.gradient == "none":
        return 0.0
    low, high = layer.value_range
    return 4.0 * _F32_EPS * max(abs(low), abs(high))


def bin_of(values, table):
    """Bin of each quantized value (the nearest level; values carry at most an ulp of jitter)."""
    mids = ((table[1:].astype(np.float64) + table[:-1]) / 2.0).astype(np.float32)
    return np.searchsorted(mids, np.asarray(values, np.float32)).astype(np.int32)


class Box:
    """The reachable quantized inputs of a batch at one ε.

    Attributes:
      x: the clean images (numpy, as given).
      eps: ε.
      lower, upper: float32 numpy arrays (shape of ``x``) of the lowest and
        highest reachable quantized value of every pixel (widened by the
        layer's float jitter, see ``jitter``): the interval fed to the layers
        after the quantizer. Without a quantizer, the raw interval.
      layer: the model's ``BitDepthQuantization`` or None.
      lo_bin, hi_bin: int32 numpy arrays of the reachable bin range per pixel
        (None without a quantizer).
      table: the level of every bin (float32), or None.
      integer: images are 8-bit integers.
      clip: the clip range of float attacks.
    """

    def __init__(self, x, eps, lower, upper, layer, lo_bin, hi_bin, table, integer, clip):
        self.x, self.eps = x, eps
        self.lower, self.upper = lower, upper
        self.layer, self.lo_bin, self.hi_bin, self.table = layer, lo_bin, hi_bin, table
        self.integer, self.clip = integer, clip

    @property
    def free(self):
        """Boolean array: pixels that can reach more than one level."""
        if self.lo_bin is None:
            return self.upper > self.lower
        return self.hi_bin > self.lo_bin

    def num_free(self):
        """Free pixels per example (int array)."""
        return self.free.reshape(len(self.x), -1).sum(axis=1)


def input_box(model, x, eps, *, clip=(0.0, 1.0)):
    """The reachable box of a batch ``x`` at ``eps`` for ``model``'s input quantizer.

    Args:
      model: Keras model whose first layer may be ``BitDepthQuantization``.
      x: images, float (on the scale of ``value_range``, inside ``clip``) or
        integer 8-bit intensities.
      eps: L∞ radius ≥ 0 on the value scale.
      clip: valid range of float attack images (ignored for integer images,
        which stay in [0, 255]).

    Returns:
      ``Box``.

    Raises:
      ValueError: bad ε or clip, a quantizer in the wrong place, images of the
        wrong shape, NaN or infinite pixels, float pixels outside ``clip``
        (e.g. 0–255 images for clip (0, 1)), integer pixels outside [0, 255].
      TypeError: non-numeric images.
    """
    eps = checks_lib.check_eps(eps)
    clip = checks_lib.check_clip(clip)
    layer = input_quantizer(model)
    x_np = np.asarray(x.numpy() if tf.is_tensor(x) else x)
    if x_np.dtype == np.bool_ or not np.issubdtype(x_np.dtype, np.number):
        raise TypeError(f"`x` must be numeric images, got dtype {x_np.dtype}.")
    integer = np.issubdtype(x_np.dtype, np.integer)
    _check_images(model, x_np, clip, integer)
    if layer is None:
        if integer:
            raise TypeError("Integer images need a BitDepthQuantization input layer.")
        lo, hi = interval(x_np.astype(np.float32), eps, clip=clip, value_range=clip or (0.0, 1.0))
        return Box(x_np, eps, lo.numpy(), hi.numpy(), None, None, None, None, False, clip)
    if integer and tf.as_dtype(model.inputs[0].dtype).is_floating:
        raise TypeError(
            f"Integer images given, but model {model.name!r} takes {model.inputs[0].dtype.name} "
            f"inputs, so it would read them as floats on the value_range scale; convert them "
            f"(e.g. tfdisc.data.to_float) or build the model with an integer Input.")
    table = levels(layer, integer)
    if integer:
        lo_i, hi_i = _integer_interval(x_np, eps, layer.value_range)
        lo_q = layer.quantize(tf.constant(lo_i), gradient="straight_through")
        hi_q = layer.quantize(tf.constant(hi_i), gradient="straight_through")
    else:
        lo, hi = interval(x_np, eps, clip=clip, value_range=layer.value_range)
        lo_q = layer.quantize(lo, gradient="straight_through")
        hi_q = layer.quantize(hi, gradient="straight_through")
    lo_bin, hi_bin = bin_of(lo_q.numpy(), table), bin_of(hi_q.numpy(), table)
    lower, upper = level_interval(table, lo_bin, hi_bin, jitter(layer, integer))
    return Box(x_np, eps, lower, upper, layer, lo_bin, hi_bin, table, integer, clip)


def level_interval(table, lo_bin, hi_bin, delta):
    """float32 ``(lower, upper)`` containing every layer output in the bin ranges (± ``delta``)."""
    low64 = table.astype(np.float64) - delta
    high64 = table.astype(np.float64) + delta
    low, high = low64.astype(np.float32), high64.astype(np.float32)
    low = np.where(low > low64, np.nextafter(low, np.float32(-np.inf)), low)
    high = np.where(high < high64, np.nextafter(high, np.float32(np.inf)), high)
    return low.astype(np.float32)[lo_bin], high.astype(np.float32)[hi_bin]


def quantized_interval(layer, x, eps, clip=(0.0, 1.0)):
    """TF-traceable ``(lower, upper)`` quantized values of float images ``x`` at tensor ``eps``.

    Same box as ``input_box`` (for float images), for use inside a training step.
    """
    lo, hi = interval_tensor(x, eps, clip, layer.value_range)
    return layer.quantize(lo, gradient="none"), layer.quantize(hi, gradient="none")


def realize(box, index, bins):
    """A concrete image of example ``index`` whose quantized pixels are in ``bins``.

    Args:
      box: ``Box``.
      index: example index in the box's batch.
      bins: int array (shape of one image) of wanted bins, each inside
        ``[lo_bin, hi_bin]``.

    Returns:
      The image (dtype of ``box.x``) inside the ε-ball and clip range whose
      quantized value is ``table[bins]`` pixel-wise, or None if some bin is not
      reachable by a real image (possible only at a widened bin edge).
    """
    layer = box.layer
    x = box.x[index]
    bins = np.asarray(bins).reshape(x.shape)
    bounds = layer.bin_bounds
    low, high = layer.value_range
    if box.integer:
        lo_i, hi_i = _integer_interval(x, box.eps, layer.value_range)
        a = np.maximum(lo_i, lowest_intensity(bounds[bins]))
        b = np.minimum(hi_i, lowest_intensity(bounds[bins + 1]) - 1)
        if np.any(a > b):
            return None
        candidate = np.clip(x.astype(np.int64), a, b).astype(box.x.dtype)
        got = layer.quantize(tf.constant(candidate), gradient="straight_through")
        return candidate if np.array_equal(got.numpy(), box.table[bins]) else None
    x64 = x.astype(np.float64)
    lo = x64 - box.eps
    hi = x64 + box.eps
    if box.clip is not None:
        lo, hi = np.maximum(lo, box.clip[0]), np.minimum(hi, box.clip[1])
    scale = (high - low) / 255.0
    edge_lo = low + bounds[bins] * scale
    edge_hi = low + bounds[bins + 1] * scale
    a, b = np.maximum(lo, edge_lo), np.minimum(hi, edge_hi)
    # Candidates from the safest (bin interior nearest x) to the ball's ends.
    candidates = [np.clip(x64, a + (b - a) * 0.25, b - (b - a) * 0.25), (a + b) / 2.0,
                  np.clip(x64, a, b), a, b]
    want = box.table[bins]
    result = np.full(x.shape, np.nan, np.float32)
    for c in candidates:
        c32 = c.astype(np.float32)
        got = layer.quantize(tf.constant(c32), gradient="straight_through").numpy()
        c64 = c32.astype(np.float64)
        ok = (got == want) & (np.abs(c64 - x64) <= box.eps)
        if box.clip is not None:
            ok &= (c64 >= box.clip[0]) & (c64 <= box.clip[1])
        take = ok & np.isnan(result)
        result[take] = c32[take]
    if np.any(np.isnan(result)):
        return None
    return result.astype(box.x.dtype)


def into_ball(box, index, image):
    """``image`` moved into example ``index``'s ε-ball and clip range, or None.

    A float image off the ball or clip range by no more than float rounding (a few
    ulps, as an attack's ``x + ε·sign(g)`` computed in float32 can be) is moved
    inside, pixel by pixel toward ``x``, in the image's own dtype; one further off,
    or not finite, gives None. An integer image must lie inside as it is.
    """
    x = box.x[index]
    image = np.asarray(image)
    if image.shape != x.shape or image.dtype != x.dtype:
        return None
    if box.integer:
        scale = 255.0 / (box.layer.value_range[1] - box.layer.value_range[0])
        diff = np.abs(image.astype(np.float64) - x.astype(np.float64))
        inside = (np.all(diff <= box.eps * scale + 1e-9) and image.min() >= 0
                  and image.max() <= 255)
        return image if inside else None
    if not np.all(np.isfinite(image)):
        return None
    x64, img64 = x.astype(np.float64), image.astype(np.float64)
    lo, hi = x64 - box.eps, x64 + box.eps
    if box.clip is not None:
        lo, hi = np.maximum(lo, box.clip[0]), np.minimum(hi, box.clip[1])
    tol = 8.0 * float(np.finfo(x.dtype).eps) * np.maximum(1.0, np.abs(x64))
    if np.any(img64 < lo - tol) or np.any(img64 > hi + tol):
        return None
    moved = np.clip(img64, lo, hi).astype(x.dtype)
    for _ in range(8):  # the cast may round just outside: step toward x (inside the ball)
        m64 = moved.astype(np.float64)
        out = (m64 < lo) | (m64 > hi)
        if not out.any():
            return moved
        moved = np.where(out, np.nextafter(moved, x), moved)
    return None
