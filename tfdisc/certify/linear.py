"""Linear bounds by back-substitution (CROWN, Zhang et al. 2018; DeepPoly, Singh et al. 2019).

Each layer's rule (``BoundRule.linear``) describes it as steps: affine maps
``out = W·in + b + e`` with the model's float32 rounding ``|e| ≤ error``
(``back(A) = A·W``), and ReLUs. A linear objective ``A·z`` on the logits (the
margins ``z_y − z_k``) is pushed back step by step to the quantized input box
and minimized there in closed form:

* affine: ``A·z = (A·W)·in + A·b + A·e ≥ (A·W)·in + A·b − |A|·error``;
* ReLU over pre-activation bounds ``[l, u]``: a unit with ``l ≥ 0`` passes, one
  with ``u ≤ 0`` is 0; an unstable one is bounded below by ``λ·z`` with CROWN's
  adaptive ``λ = 1`` if ``u > −l`` else 0, and above by the triangle
  ``s·z + t``, ``s = u/(u − l)``; each coefficient takes the side its sign needs.

Intermediate pre-activation bounds (the ``[l, u]`` of every ReLU) are full
CROWN: each unstable unit is bounded by its own back-substitution to the input
(both signs), intersected with the interval bound (IBP, from the tightened
bounds of the layer before). A layer with more than ``max_rows`` unstable units
keeps its interval bounds (cheaper; large convolutions).

Soundness in float32: the back-substitution runs in float64 numpy. Each affine
step's ``error`` covers the model's float32 rounding (the allowances of the
interval rules, computed from sound bounds of its input) and the float64
rounding of ``back`` and of the sums over its units; every other float64 sum is
covered by ``2·γ64(n)`` of the sum of the magnitudes of all its terms, and the
result is rounded down to float32. So the margin bound holds for the float32
model, whatever its summation order.

Layers without a linear rule (max pooling, sign activations, ``Add``, ...)
raise ``NotImplementedError``; ``margin_upper`` then falls back to the interval
bounds, so it is never looser than ``tfdisc.certify.margin_upper``.
"""
import numpy as np
import tensorflow as tf

from tfdisc.certify import bounds as bounds_lib
from tfdisc.certify import box as box_lib
from tfdisc.certify import rules
from tfdisc.certify.rules import base

__all__ = ["DEFAULT_MAX_ROWS", "bounded_steps", "chunk_size", "margin_lower", "margin_upper",
           "supports"]

DEFAULT_MAX_ROWS = 2048  # unstable units per layer bounded by back-substitution
_U64 = 2.0**-53


def _sum(t):
    """Sum over every axis after the first two: ``[batch, rows]``."""
    return t.reshape(t.shape[0], t.shape[1], -1).sum(axis=2)


def _f64(t):
    return np.asarray(t.numpy() if tf.is_tensor(t) else t, np.float32).astype(np.float64)


def _down32(v):
    """float32 ≤ v (float64)."""
    r = v.astype(np.float32)
    return np.where(r.astype(np.float64) > v, np.nextafter(r, np.float32(-np.inf)), r)


def _backsub(chain, box, a):
    """Sound float64 lower bounds ``[batch, rows]`` of ``A·out`` over the box, ``out`` the
    output of the last step of ``chain``, for coefficients ``a`` ``[batch, rows, *out]``."""
    const = np.zeros(a.shape[:2])
    budget = np.zeros(a.shape[:2])  # Σ |terms| of every float64 sum, for its rounding
    terms = 4 + 3 * len(chain)
    for step, iv_in, _ in reversed(chain):
        terms += int(np.prod(a.shape[2:]))
        if step.kind == "affine":
            if step.bias is not None:
                bias = np.broadcast_to(step.bias, (a.shape[0],) + a.shape[2:])[:, None]
                const += _sum(a * bias)
                budget += _sum(np.abs(a) * np.abs(bias))
            if step.error is not None:
                err = _sum(np.abs(a) * step.error[:, None])
                const -= err
                budget += err
            a = step.back(a)
            continue
        low, up = _f64(iv_in.lower)[:, None], _f64(iv_in.upper)[:, None]
        active = low >= 0.0
        unstable = (low < 0.0) & (up > 0.0)
        lam = np.where(active | (unstable & (up > -low)), 1.0, 0.0)  # CROWN's adaptive slope
        width = np.where(unstable, up - low, 1.0)
        s = np.where(active, 1.0, np.where(unstable, up / width, 0.0))
        # relu(z) ≤ s·z + t on [l, u] for the computed s: t ≥ max(−s·l, u − s·u), rounded up.
        t = np.where(unstable, np.maximum(-s * low, up - s * up)
                     + 8.0 * _U64 * (np.abs(low) + np.abs(up)), 0.0)
        pos = a >= 0.0
        neg_a = np.where(pos, 0.0, a)
        const += _sum(neg_a * t)
        budget += _sum(np.abs(neg_a) * t)
        # a·s rounds (s ∉ {0, 1} on unstable units): ≤ u64·|a·s|·max|z|.
        mag = np.maximum(np.abs(low), np.abs(up))
        err = 2.0 * _U64 * _sum(np.abs(neg_a) * np.where(unstable, mag, 0.0))
        const -= err
        budget += err
        a = a * np.where(pos, lam, s)
    low, up = box
    const += _sum(np.where(a >= 0.0, a * low[:, None], a * up[:, None]))
    budget += _sum(np.abs(a) * np.maximum(np.abs(low), np.abs(up))[:, None])
    terms += int(np.prod(a.shape[2:]))
    return const - 2.0 * base.gamma64(terms) * (budget + np.abs(const)) * (1.0 + 2.0**-20)


def _tighten(chain, box, max_rows):
    """Intersects the bounds of the last step's output with its own back-substitution."""
    step, iv_in, iv_out = chain[-1]
    low, up = iv_out.lower.numpy(), iv_out.upper.numpy()
    batch, shape = low.shape[0], low.shape[1:]
    flat_l, flat_u = low.reshape(batch, -1).copy(), up.reshape(batch, -1).copy()
    units = np.nonzero(np.any((flat_l < 0) & (flat_u > 0), axis=0))[0]
    if len(units) == 0 or len(units) > max_rows:
        return iv_out
    rows = len(units)
    a = np.zeros((batch, 2 * rows, flat_l.shape[1]))
    a[:, np.arange(rows), units] = 1.0
    a[:, rows + np.arange(rows), units] = -1.0
    bound = _backsub(chain, box, a.reshape((batch, 2 * rows) + shape))
    flat_l[:, units] = np.maximum(flat_l[:, units], _down32(bound[:, :rows]))
    flat_u[:, units] = np.minimum(flat_u[:, units], -_down32(bound[:, rows:]))
    tight = rules.Interval(tf.constant(flat_l.reshape(low.shape)),
                           tf.constant(flat_u.reshape(up.shape)))
    chain[-1] = [step, iv_in, tight]
    return tight


def _chain(model, lower, upper, intermediate, max_rows):
    """[[step, input Interval, output Interval]] for the whole model (tightened bounds)."""
    layers, output_name = bounds_lib.chain(model, "Linear bounds")
    ctx = rules.Context(exact=True, training=False)
    iv = rules.Interval(tf.constant(lower), tf.constant(upper))
    box = (lower.astype(np.float64), upper.astype(np.float64))
    chain, prev = [], None
    for layer, rule, follows_input in layers:
        ctx.follows_input = follows_input
        for step in rule.linear(layer, [iv], ctx):
            if step.kind == "affine":
                out = step.interval
            else:
                if intermediate and chain:
                    iv = _tighten(chain, box, max_rows)
                out = iv.map(tf.nn.relu)
            chain.append([step, iv, out])
            iv = out
        prev = layer.name
    if prev != output_name or iv.lower.shape.rank != 2:
        raise NotImplementedError(
            f"Linear bounds need flat logits at the end of the chain (model {model.name!r}); "
            f"fall back to interval bounds.")
    return chain, box


def _check_box(lower, upper):
    lower = np.asarray(lower.numpy() if tf.is_tensor(lower) else lower, np.float32)
    upper = np.asarray(upper.numpy() if tf.is_tensor(upper) else upper, np.float32)
    if lower.shape != upper.shape or lower.ndim < 1:
        raise ValueError(f"`lower` and `upper` must have one shape [batch, ...], got "
                         f"{lower.shape} and {upper.shape}.")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise ValueError("`lower` and `upper` must be finite (NaN or infinite bound given).")
    if np.any(lower > upper):
        raise ValueError("`lower` must not exceed `upper` (an empty box); pass the box of "
                         "tfdisc.certify.input_box.")
    return lower, upper


def _widest(model):
    sizes = [int(np.prod(layer.output_shape[1:])) for layer in model.layers
             if isinstance(getattr(layer, "output_shape", None), tuple)
             and None not in layer.output_shape[1:]]
    return max(sizes + [1])


def chunk_size(model, max_rows=DEFAULT_MAX_ROWS, megabytes=64):
    """Examples per back-substitution chunk, so that one float64 coefficient array
    (≤ 2·max_rows rows over the widest layer) takes about ``megabytes``: at least 1."""
    widest = _widest(model)
    elements = int(megabytes) * (1 << 20) // 8
    return max(1, elements // (2 * min(widest, max(int(max_rows), 16)) * widest))


def margin_lower(model, lower, upper, y, *, intermediate=True, max_rows=DEFAULT_MAX_ROWS,
                 batch_size=None):
    """Lower bounds on ``z_y − z_k`` for every class k over the input box (0 at k = y).

    The example is certified if every k ≠ y has a positive bound. Sound for the
    float32 model (see the module doc).

    Args:
      model: Keras model returning logits, a chain of layers with linear rules.
      lower, upper: the box of the quantized input (``tfdisc.certify.input_box``'s
        ``lower``/``upper``), or of the raw input without a quantizer.
      y: int labels [batch] (as ``tfdisc.checks`` accepts them).
      intermediate: bound every ReLU's input by back-substitution (full CROWN); False: by
        interval propagation (faster, looser).
      max_rows: layers with more unstable units keep their interval bounds.
      batch_size: examples per chunk (default: from the model's widest layer).

    Returns:
      float32 numpy array [batch, classes].

    Raises:
      NotImplementedError: a layer without a linear rule (fall back to interval bounds).
      UnsupportedLayerError: a layer the bounds do not support at all.
      ValueError: an empty, non-finite or mis-shaped box, bad labels.
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a Keras model, got {type(model).__name__}.")
    lower, upper = _check_box(lower, upper)
    y = box_lib.check_labels(model, y, len(lower))
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 0:
        raise ValueError(f"`max_rows` must be an integer ≥ 0, got {max_rows!r}.")
    if batch_size is None:
        batch_size = chunk_size(model, max_rows)
    out = []
    for start in range(0, len(y), batch_size):
        lo, up, yb = (lower[start:start + batch_size], upper[start:start + batch_size],
                      y[start:start + batch_size])
        chain, box = _chain(model, lo, up, intermediate, int(max_rows))
        classes = int(chain[-1][2].lower.shape[-1])
        a = np.zeros((len(yb), classes, classes))
        a[:, np.arange(classes), np.arange(classes)] = -1.0
        a[np.arange(len(yb)), :, yb] += 1.0  # row k: e_y − e_k (row y: 0)
        bound = _down32(_backsub(chain, box, a))
        bound[np.arange(len(yb)), yb] = 0.0
        out.append(bound)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def bounded_steps(model, lower, upper, *, intermediate=True, max_rows=DEFAULT_MAX_ROWS):
    """The model as ``LinearStep``s with sound float32 bounds over the box.

    The bounds ``margin_lower`` starts from (every ReLU input tightened by
    back-substitution when ``intermediate``), for a complete method to start
    from (``tfdisc.certify.exact.relu``).

    Returns:
      list of ``(step, Interval of its input, Interval of its output)``, from the
      input to the logits; every bound is [batch, *shape] float32.

    Raises:
      as ``margin_lower``.
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a Keras model, got {type(model).__name__}.")
    lower, upper = _check_box(lower, upper)
    chain, _ = _chain(model, lower, upper, intermediate, int(max_rows))
    return [tuple(c) for c in chain]


def supports(model):
    """True if every layer of ``model`` has a linear rule (checked on a zero box)."""
    shape = [1] + [int(d) for d in model.input_shape[1:]]
    zeros = np.zeros(shape, np.float32)
    try:
        margin_lower(model, zeros, zeros, np.zeros(1, np.int64))
    except NotImplementedError:
        return False
    return True


def margin_upper(model, lower, upper, y, **kwargs):
    """``tfdisc.certify.margin_upper``'s form (upper bounds on ``z_j − z_y``, 0 at j = y), the
    tighter of the interval and the linear bound per entry; the interval bound alone where a
    layer has no linear rule. ``kwargs``: ``margin_lower``'s options.

    Returns:
      float32 numpy array [batch, classes].
    """
    lower, upper = _check_box(lower, upper)
    y = box_lib.check_labels(model, y, len(lower))
    ibp = bounds_lib.margin_upper(model, tf.constant(lower), tf.constant(upper),
                                  tf.constant(y, tf.int32)).numpy()
    try:
        crown = -margin_lower(model, lower, upper, y, **kwargs)
    except NotImplementedError:
        return ibp
    return np.minimum(ibp, crown)
