"""The bound rule interface, the interval type, the propagation context and the rule registry.

A ``BoundRule`` bounds one layer type, as auto_LiRPA's bound classes do one
operator each: ``interval`` maps input intervals to a sound output interval;
``linear`` (CROWN/DeepPoly back-substitution) and ``encode`` (exact MILP /
CP-SAT encoding) are declared for the verifiers to come and raise
``NotImplementedError`` naming the layer and the method, so a caller can fall
back to ``interval``. ``check`` refuses layer configurations the rule does not
cover (activation names, padding, ...).

Rules are held in a registry keyed by layer class. ``lookup`` resolves a layer
through its class's MRO to the nearest registered class, but only if no class
in between brings its own ``call`` (or ``convolution_op``) in user code:
a user subclass of ``Dense`` that overrides ``call`` computes something else,
so it is refused (``checks.check_library_code``) unless a rule is registered
for it.
"""
import tensorflow as tf

from tfdisc.certify import checks

__all__ = ["BoundRule", "Context", "Interval", "LinearStep", "TINY", "UNIT_ROUNDOFF", "gamma",
           "gamma64", "linear_error", "lookup", "refuse", "register", "registered"]

UNIT_ROUNDOFF = 2.0**-24  # float32
TINY = 1e-30  # keeps radii positive (underflow)


def gamma(n):
    """Relative float32 error bound of an n-term sum, with slack for the model's non-fused ops."""
    nu = n * UNIT_ROUNDOFF
    return 2.0 * nu / (1.0 - nu)  # factor 2: slack for the model's non-fused ops


def gamma64(n):
    """Relative float64 error bound of an n-term sum (the linear bounds compute in float64)."""
    nu = n * 2.0**-53
    return 2.0 * nu / (1.0 - nu)


def linear_error(s, fan_in, outputs, model_gamma=None):
    """``error`` of an affine ``LinearStep`` from ``s = |W|·max|in| + |bias|`` (float64).

    The model's float32 rounding, ``gamma(fan_in + 1)·s`` (or ``model_gamma·s``), plus the
    float64 rounding of ``back`` (``γ64(fan_in)·|A|·|W|·max|in|``) and of the driver's sums over
    the ``outputs`` units, both below ``4·γ64(fan_in + outputs + 2)·|A|·s``.
    """
    g = gamma(fan_in + 1) if model_gamma is None else model_gamma
    return (g + 4.0 * gamma64(fan_in + outputs + 2)) * s


class LinearStep:
    """One step of a layer's linear relaxation, as ``BoundRule.linear`` returns it.

    ``kind == "affine"``: ``out = W·in + bias + e`` with the model's float32 rounding
    ``|e| ≤ error``. ``back(A)`` maps float64 coefficients ``[batch, rows, *out]`` to
    ``A·W``, ``[batch, rows, *in]``; ``bias`` (float64, broadcast to ``[batch, *out]``) and
    ``error`` (float64 ``[batch, *out]``, ≥ 0; it also covers the float64 rounding of
    ``back`` and of the sums ``Σ A·bias``, ``Σ |A|·error`` over ``out``) may be None;
    ``interval`` is a sound ``Interval`` of ``out`` (float32, as ``interval`` computes it).
    ``kind == "relu"``: ``out = max(in, 0)``, exact in float32; the driver relaxes it from
    the bounds of ``in``.
    """

    def __init__(self, kind, back=None, bias=None, error=None, interval=None):
        if kind not in ("affine", "relu"):
            raise ValueError(f"LinearStep kind must be 'affine' or 'relu', got {kind!r}.")
        self.kind, self.back, self.bias, self.error, self.interval = (kind, back, bias, error,
                                                                      interval)


class Interval:
    """Lower and upper bound, and an optional clean point (training BN statistics)."""

    def __init__(self, lower, upper, point=None):
        self.lower, self.upper, self.point = lower, upper, point

    def map(self, fn):
        """``fn`` applied to both ends (and the point): sound for non-decreasing ``fn``."""
        return Interval(fn(self.lower), fn(self.upper),
                        None if self.point is None else fn(self.point))


class Context:
    """What a rule needs besides the layer: the mode and the float32 helpers.

    Attributes:
      exact: widen for float32 rounding and round ends outward (certification); else plain,
        differentiable float32 (training).
      training: use batch statistics of the clean point (certified training).
      follows_input: the current layer's only input is the model input.
    """

    def __init__(self, exact, training):
        self.exact = exact
        self.training = training
        self.dtype = tf.float32
        self.follows_input = False

    def cast(self, t):
        return tf.cast(t, self.dtype)

    def ends(self, lower, upper, point=None):
        """Interval from computed ends; exact mode rounds them one ulp outward."""
        if self.exact:
            lower = tf.math.nextafter(lower, tf.constant(-float("inf"), lower.dtype))
            upper = tf.math.nextafter(upper, tf.constant(float("inf"), upper.dtype))
        return Interval(lower, upper, point)

    def affine(self, iv, apply, weight, bias, fan_in):
        """``apply(x, W) + b`` over ``iv`` in centre/radius form: ``W·c + b ± |W|·r``.

        ``apply`` is linear in ``x``; ``fan_in`` is the length of the sums it computes (for
        the float32 rounding widening in exact mode).
        """
        w = self.cast(weight)
        aw = tf.abs(w)
        centre = (iv.upper + iv.lower) / 2.0
        radius = (iv.upper - iv.lower) / 2.0
        mid = apply(centre, w)
        if self.exact:
            # Model error γ|W|·max|x| and ours (2γ, centre product and centre/radius
            # rounding) in one product |W|·(r + 3γ·max|x|), itself rounded: ×(1 + γ).
            g = gamma(fan_in + 1)
            mag = tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper))
            rad = apply(radius + 3.0 * g * mag, aw) * (1.0 + g) + TINY
            if bias is not None:
                rad += 3.0 * g * tf.abs(self.cast(bias))
        else:
            rad = apply(radius, aw)
        if bias is not None:
            mid += self.cast(bias)
        point = None
        if iv.point is not None:
            point = apply(iv.point, w) + (0.0 if bias is None else self.cast(bias))
        return self.ends(mid - rad, mid + rad, point)


class BoundRule:
    """Bounds of one layer type. Subclass it and ``register`` an instance for a layer class.

    ``inputs`` is the number of inputs the rule takes (``None``: any number, e.g. ``Add``).
    """

    inputs = 1

    def check(self, layer):
        """Raises ``checks.UnsupportedLayerError`` if this layer's configuration is not
        covered by the rule. Called before ``interval``, and before the margin form."""
        del layer

    def interval(self, layer, inputs, ctx):
        """Sound output ``Interval`` of ``layer`` over the input ``Interval`` list ``inputs``.

        In exact mode (``ctx.exact``) the bounds must contain the layer's float32 outputs.
        """
        raise NotImplementedError(self._missing(layer, "interval"))

    def linear(self, layer, inputs, ctx):
        """Linear (CROWN/DeepPoly) relaxation of ``layer`` for back-substitution
        (``tfdisc.certify.linear``): a list of ``LinearStep`` (empty: the identity) over the
        input ``Interval`` list ``inputs`` (exact mode). Layers without one raise
        ``NotImplementedError``; callers fall back to ``interval``."""
        raise NotImplementedError(self._missing(layer, "linear"))

    def encode(self, layer, inputs, ctx):
        """Exact solver (MILP / CP-SAT) encoding of ``layer``: not implemented yet for any
        layer; callers fall back to ``interval``."""
        raise NotImplementedError(self._missing(layer, "encode"))

    def margin_form(self, layer):
        """True if ``margin`` can bound ``layer`` as the output layer."""
        del layer
        return False

    def margin(self, layer, iv, y, ctx):
        """Upper bounds ``[batch, classes]`` on ``z_j − z_y`` (0 at j = y) when ``layer`` is
        the output layer, from its input ``Interval`` ``iv`` and int32 labels ``y`` in one step
        (tighter than from the logit bounds). Only called if ``margin_form(layer)``."""
        raise NotImplementedError(self._missing(layer, "margin"))

    def _missing(self, layer, method):
        return (f"{type(self).__name__} has no `{method}` rule for layer {layer.name!r} "
                f"({type(layer).__name__}); fall back to interval bounds.")


_RULES = {}  # layer class -> BoundRule, or None: refused even if an ancestor has a rule


def register(layer_class, rule):
    """Bounds layers of ``layer_class`` (and its subclasses that keep its ``call``) by ``rule``.

    A rule registered for a class replaces any earlier one for that class. Registering a rule
    for a layer with its own ``call`` vouches that the rule bounds that ``call`` soundly.

    Args:
      layer_class: a Keras layer class.
      rule: a ``BoundRule`` instance.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, tf.keras.layers.Layer)):
        raise TypeError(f"`layer_class` must be a Keras layer class, got {layer_class!r}.")
    if not isinstance(rule, BoundRule):
        raise TypeError(f"`rule` must be a BoundRule instance (subclass "
                        f"tfdisc.certify.rules.BoundRule), got {type(rule).__name__}.")
    _RULES[layer_class] = rule


def refuse(layer_class):
    """Refuses ``layer_class`` and its subclasses even if an ancestor class has a rule (e.g.
    ``Conv2DTranspose``, a ``Conv2D`` subclass that computes another map)."""
    if not (isinstance(layer_class, type) and issubclass(layer_class, tf.keras.layers.Layer)):
        raise TypeError(f"`layer_class` must be a Keras layer class, got {layer_class!r}.")
    _RULES[layer_class] = None


def registered(layer_class):
    """The rule registered for exactly ``layer_class``, or ``None``."""
    return _RULES.get(layer_class)


def lookup(layer):
    """The rule for ``layer``: its class's, else the nearest registered ancestor's; ``None`` if
    there is none.

    Raises ``UnsupportedLayerError`` if the layer's ``call`` (or ``convolution_op``) is user
    code that the resolved rule was not registered for (a custom layer, an overridden call).
    """
    owner = next((c for c in type(layer).__mro__ if c in _RULES), None)
    rule = None if owner is None else _RULES[owner]
    checks.check_library_code(layer, covered_by=owner if rule is not None else None)
    return rule
