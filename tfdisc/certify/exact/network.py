"""A BNN read as the exact verifier needs it, with sound float32 rounding allowances.

Supported models (a chain, as the zoo's ``fcn*`` BNNs): ``BitDepthQuantization`` →
(``Flatten``) → float ``Dense`` (linear) → (``BatchNormalization``) → one or more
larq ``QuantDense`` with ``ste_sign`` input and kernel quantizers (linear, each
optionally followed by ``BatchNormalization``) → float ``Dense`` logits (linear).
``Dropout`` is the identity at inference and may sit anywhere.

Each binary layer computes an exact integer ``d`` (±1 inputs and weights); what
follows it up to the next sign is the per-channel affine ``a·d + s`` (bias and
batch norm folded with ``tfdisc.convert.folding.batch_norm_affine``). Every
quantity here is a real (float64) value plus a bound on how far the model's
float32 arithmetic can move it; the encoder decides a sign only outside that band.
"""
import larq as lq
import numpy as np
import tensorflow as tf

from tfdisc.certify import checks
from tfdisc.certify.rules import affine, base, elementwise
from tfdisc.convert import folding
from tfdisc.layers import BitDepthQuantization

__all__ = ["BinaryLayer", "ExactUnsupportedError", "FirstLayerForm", "Network",
           "first_binary_bounds", "first_layer_form", "read", "sign_sets"]

U = base.UNIT_ROUNDOFF
_SIGN_QUANTIZERS = {"ste_sign", "SteSign"}


class ExactUnsupportedError(checks.UnsupportedLayerError):
    """The model is not of the form the exact BNN verifier encodes."""


def _refuse(model, layer, why):
    raise ExactUnsupportedError(
        f"Model {model.name!r}: the exact BNN verifier does not support layer {layer.name!r} "
        f"({type(layer).__name__}): {why}. Supported: BitDepthQuantization → (Flatten) → Dense → "
        f"(BatchNormalization) → QuantDense(ste_sign input and kernel) (+ BatchNormalization) … → "
        f"Dense logits; use method='branch' for other models.")


def _linear(layer):
    fn = layer.activation
    return elementwise.name(fn) == "linear" and fn is tf.keras.activations.get("linear")


def _affine_after(bias, bn, units):
    """float64 ``(a, s)`` of a bias (or None) and batch norm after a layer: ``out = a·dot + s``."""
    a = np.ones(units, np.float64)
    s = np.zeros(units, np.float64)
    if bias is not None:
        s = np.asarray(bias, np.float32).astype(np.float64)
    if bn is not None:
        inv, shift = folding.batch_norm_affine(bn)
        inv = np.asarray(inv, np.float32).astype(np.float64)
        shift = np.asarray(shift, np.float32).astype(np.float64)
        a, s = a * inv, s * inv + shift
    return a, s


class BinaryLayer:
    """A ``QuantDense`` (±1 kernel ``w`` [n, m]) and its folded affine ``a·d + s`` per unit."""

    def __init__(self, w, a, s, name):
        self.w, self.a, self.s, self.name = w, a, s, name
        self.w64 = w.astype(np.float64)  # exact: ±1 entries, sums of at most 2^53

    def out_error(self, d):
        """Bound on |float32 ``a·d + s`` − real| (a and s are themselves float32 results)."""
        return 64.0 * U * (np.abs(self.a) * np.abs(d) + np.abs(self.s)) + base.TINY


class Network:
    """The parts of a supported BNN.

    Attributes:
      quantizer: the ``BitDepthQuantization`` layer.
      w0, b0: float64 first-layer kernel [pixels, units] and bias.
      a0, s0: float64 per-unit affine after it (batch norm), ``out = a0·h + s0``.
      binary: list of ``BinaryLayer`` (at least one).
      w_out, b_out: float64 logits kernel [units, classes] and bias.
    """

    def __init__(self, quantizer, w0, b0, a0, s0, binary, w_out, b_out):
        self.quantizer = quantizer
        self.w0, self.b0, self.a0, self.s0 = w0, b0, a0, s0
        self.binary, self.w_out, self.b_out = binary, w_out, b_out

    def first_error(self, x_max, jitter):
        """Per first-layer unit: bound on |float32 output − real output| over inputs with
        ``|x_p| ≤ x_max[p]``, each off its level by at most ``jitter``."""
        pixels = self.w0.shape[0]
        aw = np.abs(self.w0)
        s1 = x_max @ aw + np.abs(self.b0)
        moved = jitter * aw.sum(axis=0)
        h_err = base.gamma(pixels + 2) * s1 + moved
        h_max = s1 + moved
        err = np.abs(self.a0) * h_err + 32.0 * U * (np.abs(self.a0) * h_max + np.abs(self.s0))
        return 2.0 * err + 1e-9 * (np.abs(self.a0) * h_max + np.abs(self.s0)) + base.TINY

    def margin_error(self, y, k):
        """Bound on |float32 (z_y − z_k) − real| from the last binary layer's affine outputs."""
        last = self.binary[-1]
        n = last.w.shape[0]
        h_max = np.abs(last.a) * n + np.abs(last.s)
        h_err = last.out_error(n)
        units = self.w_out.shape[0]
        total = 0.0
        for c in (y, k):
            col = np.abs(self.w_out[:, c])
            total += (base.gamma(units + 2) * (col @ (h_max + h_err) + abs(self.b_out[c]))
                      + col @ h_err)
        return 2.0 * total + 1e-9 * (np.abs(self.w_out[:, [y, k]]).sum(axis=1) @ h_max) + 1e-30


def _chain(model):
    layers = [layer for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    previous = None
    for layer in layers:
        if len(layer._inbound_nodes) != 1:  # pylint: disable=protected-access
            _refuse(model, layer, "the layer is called more than once")
        if previous is not None and layer.input is not previous.output:
            _refuse(model, layer, "the model is not a single chain of layers")
        previous = layer
    if layers and model.output is not layers[-1].output:
        _refuse(model, layers[-1], "the last layer is not the model output")
    return layers


def read(model):
    """The ``Network`` of a supported BNN; ``ExactUnsupportedError`` naming the first layer that
    does not fit."""
    layers = [layer for layer in _chain(model)
              if not isinstance(layer, tf.keras.layers.Dropout)]
    if not layers or not isinstance(layers[0], BitDepthQuantization):
        raise ExactUnsupportedError(
            f"Model {model.name!r}: the exact verifier needs BitDepthQuantization as the first "
            f"layer (the reachable quantized inputs are what it encodes).")
    quantizer = layers[0]
    i = 1
    if i < len(layers) and isinstance(layers[i], tf.keras.layers.Flatten):
        i += 1
    dense_types = (tf.keras.layers.Dense,)

    def take_bn(j):
        if j < len(layers) and isinstance(layers[j], tf.keras.layers.BatchNormalization):
            axis = layers[j].axis
            axis = axis if isinstance(axis, (list, tuple)) else [axis]
            if [a % 2 for a in axis] != [1]:
                _refuse(model, layers[j], "batch norm not over the last axis")
            return layers[j], j + 1
        return None, j

    if i >= len(layers) or type(layers[i]) not in dense_types:
        _refuse(model, layers[min(i, len(layers) - 1)], "expected the float first Dense layer")
    first = layers[i]
    if len(first.input_shape) != 2 or not _linear(first):
        _refuse(model, first, "the first Dense must take a flat input and be linear")
    bn, i = take_bn(i + 1)
    w0 = np.asarray(first.kernel, np.float32).astype(np.float64)
    b0 = (np.asarray(first.bias, np.float32).astype(np.float64) if first.use_bias
          else np.zeros(w0.shape[1]))
    a0, s0 = _affine_after(None, bn, w0.shape[1])
    binary = []
    while i < len(layers) and isinstance(layers[i], lq.layers.QuantDense):
        layer = layers[i]
        names = (elementwise.name(layer.input_quantizer), elementwise.name(layer.kernel_quantizer))
        if names[0] not in _SIGN_QUANTIZERS or names[1] not in _SIGN_QUANTIZERS:
            _refuse(model, layer, f"quantizers {names}; ste_sign input and kernel only")
        if not _linear(layer):
            _refuse(model, layer, "activation must be linear")
        w = np.asarray(affine.kernel(layer), np.float32)
        if not np.all(np.abs(w) == 1.0):
            _refuse(model, layer, "its quantized kernel is not ±1")
        bn, i = take_bn(i + 1)
        a, s = _affine_after(layer.bias if layer.use_bias else None, bn, w.shape[1])
        binary.append(BinaryLayer(w.astype(np.int64), a, s, layer.name))
    if not binary:
        _refuse(model, layers[min(i, len(layers) - 1)], "no binary (QuantDense) layer after the "
                "first layer")
    if i != len(layers) - 1 or type(layers[i]) not in dense_types or not _linear(layers[i]):
        _refuse(model, layers[min(i, len(layers) - 1)], "expected the float Dense logits layer "
                "(linear) right after the last binary block")
    out = layers[i]
    w_out = np.asarray(out.kernel, np.float32).astype(np.float64)
    b_out = (np.asarray(out.bias, np.float32).astype(np.float64) if out.use_bias
             else np.zeros(w_out.shape[1]))
    return Network(quantizer, w0, b0, a0, s0, binary, w_out, b_out)


class FirstLayerForm:
    """The first layer's units over one example's box, in float64.

    Attributes:
      free: flat indices of the free pixels.
      choices: int array [c, 2] of (pixel, bin) for every reachable bin above a free pixel's
        lowest one; choosing it adds ``coef[c]`` to the units.
      coef: float64 [c, units]; f0: every unit's value at the lowest bins; lo, hi: its exact
        range over the box; err: the float32 rounding and jitter allowance (``first_error``);
        slack: the float64 allowance of these sums; fixed: per unit True/False where the sign
        is the same over the whole box and beyond the allowances, else None.
    """

    def __init__(self, free, choices, coef, f0, lo, hi, err, slack, fixed):
        self.free, self.choices, self.coef = free, choices, coef
        self.f0, self.lo, self.hi, self.err, self.slack, self.fixed = f0, lo, hi, err, slack, fixed


def first_layer_form(net, table, lo_bin, hi_bin, jitter):
    """``FirstLayerForm`` of ``net`` over the box of bins ``[lo_bin, hi_bin]`` (flat)."""
    table64 = table.astype(np.float64)
    base_x = table64[lo_bin]
    x_max = np.maximum(np.abs(table64[lo_bin]), np.abs(table64[hi_bin]))
    err = net.first_error(x_max, jitter)
    f0 = net.a0 * (base_x @ net.w0 + net.b0) + net.s0
    free = np.nonzero(hi_bin > lo_bin)[0]
    choices = np.array([(p, b) for p in free for b in range(lo_bin[p] + 1, hi_bin[p] + 1)],
                       np.int64).reshape(-1, 2)
    dx = table64[choices[:, 1]] - table64[lo_bin[choices[:, 0]]]
    coef = net.w0[choices[:, 0]] * dx[:, None] * net.a0[None, :]
    lo = f0 + np.minimum(coef, 0).sum(axis=0)
    hi = f0 + np.maximum(coef, 0).sum(axis=0)
    slack = 1e-9 * (np.abs(coef).sum(axis=0) + np.abs(f0))
    fixed = [True if lo[j] - slack[j] >= err[j] else False if hi[j] + slack[j] < -err[j] else None
             for j in range(len(f0))]
    return FirstLayerForm(free, choices, coef, f0, lo, hi, err, slack, fixed)


def _half_line(d, mask):
    """The set ``d[mask]`` of a monotone mask over the grid ``d`` as ("all" | "none" | ("ge", t)
    | ("le", t))."""
    if mask.all():
        return "all"
    if not mask.any():
        return "none"
    if mask[-1] and np.all(mask[np.argmax(mask):]):
        return ("ge", int(d[mask].min()))
    if mask[0] and not np.any(mask[np.argmin(mask):]):
        return ("le", int(d[mask].max()))
    raise AssertionError("sign sets of a monotone affine map must be half-lines")


def sign_sets(layer):
    """Per unit j of a binary layer: where each output sign is possible in float32.

    Returns a list of ``(plus, minus)``: the values of the exact integer
    ``d = Σ w·s`` at which the unit's output ``a·d + s`` (with its float32 error
    ``out_error``) may be +1, and may be −1, each as ``_half_line`` describes.
    """
    n, m = layer.w.shape
    d = np.arange(-n, n + 1, 2)
    out = layer.a[None, :] * d[:, None] + layer.s[None, :]
    err = layer.out_error(d[:, None])
    certainly_pos = out - err >= 0.0  # sign(0) = +1
    certainly_neg = out + err < 0.0
    return [(_half_line(d, ~certainly_neg[:, j]), _half_line(d, ~certainly_pos[:, j]))
            for j in range(m)]


def first_binary_bounds(form, layer):
    """Bounds on the exact integer sums ``d = Σ w·s`` of the first binary layer over the box,
    tighter than the interval ``Σ|w|`` of the free signs where their units share pixels.

    Each free first-layer sign is bounded by lines in its pre-activation ``f``
    (``f = f0 + coef·u``, the pixel choices ``u``): ``s ≤ 1 + λ(f + E)`` and
    ``s ≥ −1 + μ(f − E)`` hold over ``[lo, hi]`` for ``0 ≤ λ ≤ 2/(−lo − E)`` and
    ``0 ≤ μ ≤ 2/(hi − E)`` (E: the rounding band, where either sign may come out).
    Summed with the weights, each bound on ``d`` is linear in ``u`` and is
    maximised exactly over the box (one level per pixel). Per unit the tightest of
    three slope choices (none, steepest, steepest where the unit leans to one side)
    is kept. Computed in float64 and widened by 1e-9 relative before rounding
    inward to the integers ``d`` can take.

    Returns:
      float arrays ``(d_min, d_max)`` over the units of ``layer``.
    """
    free = np.array([j for j, f in enumerate(form.fixed) if f is None], np.int64)
    signs = np.array([0 if f is None else (1 if f else -1) for f in form.fixed], np.float64)
    w = layer.w.astype(np.float64)
    const = signs @ w
    n = w.shape[0]
    radius = np.abs(w[free]).sum(axis=0)
    best_lo, best_hi = const - radius, const + radius
    if not len(free) or not len(form.choices):
        return best_lo, best_hi
    e = form.err[free] + form.slack[free]
    lo, hi = form.lo[free] - form.slack[free], form.hi[free] + form.slack[free]
    f0 = form.f0[free]
    lam_max = np.where(lo < -e, 2.0 / np.maximum(-lo - e, 1e-300), 0.0)
    mu_max = np.where(hi > e, 2.0 / np.maximum(hi - e, 1e-300), 0.0)
    starts = np.nonzero(np.r_[True, form.choices[1:, 0] != form.choices[:-1, 0]])[0]

    def box_max(coef_f):
        """max over the box of Σ_c (coef·coef_f)[c]·u_c, per unit (columns)."""
        per_choice = form.coef[:, free] @ coef_f  # [choices, units]
        return np.maximum(np.maximum.reduceat(per_choice, starts, axis=0), 0.0).sum(axis=0)

    wf = w[free]
    leans_neg = (hi + e < -lo - e)[:, None]
    leans_pos = (-lo + e < hi - e)[:, None]
    for lam, mu in ((lam_max, mu_max),
                    (np.where(leans_neg[:, 0], lam_max, 0.0),
                     np.where(leans_pos[:, 0], mu_max, 0.0))):
        lam, mu = lam[:, None], mu[:, None]
        # upper bound on d: w > 0 takes the upper line of s, w < 0 the lower one.
        a_up = np.where(wf > 0, wf * lam, wf * mu)
        b_up = np.where(wf > 0, wf * (1 + lam * (f0[:, None] + e[:, None])),
                        wf * (-1 + mu * (f0[:, None] - e[:, None])))
        up = const + b_up.sum(axis=0) + box_max(a_up)
        a_lo = np.where(wf > 0, wf * mu, wf * lam)
        b_lo = np.where(wf > 0, wf * (-1 + mu * (f0[:, None] - e[:, None])),
                        wf * (1 + lam * (f0[:, None] + e[:, None])))
        low = const + b_lo.sum(axis=0) - box_max(-a_lo)
        pad = 1e-9 * (np.abs(b_up).sum(axis=0) + np.abs(b_lo).sum(axis=0) + n)
        best_hi = np.minimum(best_hi, up + pad)
        best_lo = np.maximum(best_lo, low - pad)
    # d takes the values −n, −n + 2, …, n: round inward to that grid.
    best_lo = np.ceil((best_lo + n) / 2.0) * 2.0 - n
    best_hi = np.floor((best_hi + n) / 2.0) * 2.0 - n
    return best_lo, best_hi
