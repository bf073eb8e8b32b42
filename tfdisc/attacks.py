"""White-box attacks (FGSM, R-FGSM, L∞ PGD), as pure functions on a model that returns logits.

The gradient is taken through the whole model, including its
``BitDepthQuantization`` layer: straight-through (BPDA) by default, or the true
zero gradient of ``floor`` if the layer was built with ``gradient="none"``
(which shows gradient masking, not robustness).

Every attack is also registered by name (``get("pgd")``, ``available()``), so
sweeps (``tfdisc.evaluate``), adversarial training (``tfdisc.training``) and
the activation analysis run any of them the same way, and ``results.json``
records its parameters as the registry describes them. A new attack is one
graph-safe function plus one ``register`` call::

    @register("my_attack", params={"steps": 10}, checks={"steps": check_steps})
    def _my_attack(model, x, y, eps, clip, steps):
        ...  # returns x_adv with ‖x_adv − x‖∞ ≤ eps inside clip (use `project`)
"""
import numbers

import tensorflow as tf

from tfdisc import projection

__all__ = ["Attack", "available", "check_alpha", "check_clip", "check_eps", "check_images",
           "check_labels", "check_step_size", "check_steps", "default_step_size", "fgsm", "get",
           "input_gradient", "loss_gradient", "perturb", "pgd", "project", "random_sign", "register", "rfgsm",
           "sign_step"]


def check_eps(eps, name="eps"):
    """Returns ``eps`` as a float, or raises ``ValueError`` if not a number ≥ 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise ValueError(f"`{name}` must be a non-negative number, got {eps!r}.")
    eps = float(eps)
    if not eps >= 0.0 or eps == float("inf"):
        raise ValueError(f"`{name}` must be a finite non-negative number, got {eps!r}.")
    return eps


def check_clip(clip):
    """``clip`` as a float pair ``(low, high)`` with low < high, or None."""
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise ValueError(f"`clip` must be None or a pair (low, high), got {clip!r}.") from None
    if not low < high:
        raise ValueError(f"`clip` must have low < high, got {clip!r}.")
    return low, high


def _num_classes(model):
    shape = model.output_shape
    if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[-1], int):
        return shape[-1]
    return None


def check_labels(y, num_classes=None, batch=None):
    """Integer class labels of shape ``[batch]`` from any accepted label form.

    Accepted: integer labels of shape ``[N]`` or ``[N, 1]`` (what many loaders
    yield), and one-hot labels only where that is unambiguous: float, shape
    ``[N, num_classes]`` with ``num_classes > 1``, every row a one-hot vector
    (zeros and a single one). Integer labels must lie in ``[0, num_classes)``.

    Args:
      y: labels (tensor or array).
      num_classes: the model's number of classes, if known.
      batch: the number of examples the labels must have, if known.

    Returns:
      int64 tensor of shape ``[N]``.

    Raises:
      ValueError: any other shape or dtype, a float label array that is not
        one-hot, labels outside ``[0, num_classes)``, or a count mismatch.
    """
    y = tf.convert_to_tensor(y)
    form = f"{y.dtype.name} of shape {y.shape}"
    if y.dtype.is_integer:
        if y.shape.rank == 2 and y.shape[-1] == 1:
            y = tf.reshape(y, [-1])
        if y.shape.rank != 1:
            raise ValueError(f"`y` must be integer labels of shape [N] or [N, 1] (or one-hot "
                             f"floats of shape [N, classes]), got {form}.")
        y = tf.cast(y, tf.int64)
    elif y.dtype.is_floating and y.shape.rank == 2 and y.shape[-1] is not None and (
            y.shape[-1] > 1 and (num_classes is None or y.shape[-1] == num_classes)):
        one_hot = tf.reduce_all(tf.logical_or(tf.equal(y, 0), tf.equal(y, 1)), axis=-1) & \
            tf.equal(tf.reduce_sum(y, axis=-1), 1)
        if tf.executing_eagerly() and not bool(tf.reduce_all(one_hot)):
            raise ValueError(f"`y` is a float array of shape {y.shape} but not one-hot (every "
                             "row must hold zeros and a single one); pass integer labels.")
        y = tf.argmax(y, axis=-1)
    else:
        expected = f"[N, {num_classes}]" if num_classes else "[N, classes]"
        raise ValueError(f"`y` must be integer labels of shape [N] or [N, 1], or one-hot "
                         f"floats of shape {expected}, got {form}.")
    if batch is not None and y.shape[0] is not None and y.shape[0] != batch:
        raise ValueError(f"`x` has {batch} examples but `y` has {y.shape[0]} labels.")
    if num_classes is not None and tf.executing_eagerly() and y.shape[0]:
        low, high = int(tf.reduce_min(y)), int(tf.reduce_max(y))
        if low < 0 or high >= num_classes:
            raise ValueError(f"Labels must lie in [0, {num_classes}) for a model with "
                             f"{num_classes} classes, got labels in [{low}, {high}].")
    return y


def check_images(x, clip=None, expected_shape=None):
    """Float images ``x`` as a tensor, checked against the model's input and ``clip``.

    Raises:
      TypeError: non-float images.
      ValueError: wrong rank or shape, NaN or infinite pixels, or pixels outside
        ``clip`` (e.g. 0–255 images given to a model on [0, 1]): an attack
        could not keep ``‖x_adv − x‖∞ ≤ ε`` inside the clip range for them.
    """
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"`x` must be a float tensor of images in the clip range, got "
                        f"{x.dtype.name}.")
    if isinstance(expected_shape, tuple) and len(expected_shape) != x.shape.rank:
        raise ValueError(
            f"`x` has rank {x.shape.rank} (shape {x.shape}) but the model expects inputs of "
            f"shape {expected_shape}."
        )
    if isinstance(expected_shape, tuple) and any(
            want is not None and got != want  # None: the model takes any size there
            for got, want in zip(x.shape[1:], expected_shape[1:])):
        raise ValueError(f"`x` has shape {x.shape} but the model expects {expected_shape}.")
    if tf.executing_eagerly() and tf.size(x) > 0:
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError("`x` holds NaN or infinite pixels; attacks need finite images.")
        if clip is not None:
            low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            tol = _CLIP_TOLERANCE * (clip[1] - clip[0])
            if low < clip[0] - tol or high > clip[1] + tol:
                raise ValueError(
                    f"`x` has pixels in [{low:g}, {high:g}], outside the clip range "
                    f"[{clip[0]:g}, {clip[1]:g}]: scale the images to the clip range (e.g. "
                    "uint8 / 255 for a model on [0, 1]) or pass the matching `clip`.")
    return x


# Pixels this far (relative to the clip range) outside it are taken as rounding.
_CLIP_TOLERANCE = 1e-6


def _check_inputs(model, x, y, clip=None):
    x = check_images(x, clip, model.input_shape)
    y = check_labels(y, _num_classes(model), x.shape[0])
    return x, y


def loss_gradient(model, x, y):
    """∇x of the mean cross-entropy of ``model``'s logits, and the per-example loss.

    Unconnected gradients (e.g. through a quantizer with ``gradient="none"``)
    are zeros, as the true derivative of ``floor`` is. Inputs are not checked
    against a clip range here; pass checked inputs (``check_images``).
    """
    x, y = _check_inputs(model, x, y)
    return _loss_gradient_graph(model, x, y)


@tf.function(reduce_retracing=True)
def _loss_gradient_graph(model, x, y):
    return _loss_gradient(model, x, y)


def input_gradient(model, x, y):
    """Graph-safe ``(∇x L, per-example loss)`` on already-checked inputs (no checks, no tf.function).

    For use inside ``tf.function``s and ``strategy.run`` replica functions.
    """
    return _loss_gradient(model, x, y)


def _loss_gradient(model, x, y):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    grad = tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return grad, loss


# ----------------------------------------------------------------- shared steps

def sign_step(x, direction, size):
    """``x + size · sign(direction)``: the signed step every attack here takes."""
    return x + tf.cast(size, x.dtype) * tf.sign(direction)


def project(x_adv, x, eps, clip):
    """Projects ``x_adv`` onto the L∞ ε-ball around ``x`` and then onto ``clip``, exactly.

    ``|result − x| ≤ eps`` holds element-wise in exact real arithmetic (``eps`` a
    Python number or a tensor's value), so also
    ``np.abs(result - x) <= np.float32(eps)`` in float32; and the result
    lies in ``clip`` wherever the ball reaches it (always for ``x`` inside
    ``clip``). See ``tfdisc.projection``.
    """
    return projection.project(x_adv, x, eps, clip)


def perturb(x, grad, eps, clip=(0.0, 1.0)):
    """``clip(x + eps · sign(grad))``: the FGSM step given a gradient."""
    return project(sign_step(x, grad, eps), x, eps, clip)


def random_sign(shape, dtype=tf.float32):
    """``sign(N(0, I))``: independent ±1 entries (R-FGSM's random direction)."""
    noise = tf.random.normal(shape, dtype=dtype)
    return tf.where(noise >= 0, tf.ones_like(noise), -tf.ones_like(noise))


def default_step_size(eps, steps):
    """PGD step size when none is given: 2.5 · ε / steps (Madry et al. 2018)."""
    return 2.5 * eps / steps


# ----------------------------------------------------------------- parameter checks

def check_steps(steps):
    """``steps`` as an int ≥ 1, or ValueError."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"`steps` must be an integer ≥ 1, got {steps!r}.")
    return int(steps)


def check_step_size(step_size):
    """``step_size`` as a finite float > 0, or ValueError."""
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not (
            0.0 < float(step_size) < float("inf")):
        raise ValueError(f"`step_size` must be a finite number > 0, got {step_size!r}.")
    return float(step_size)


def check_alpha(alpha, eps=None):
    """R-FGSM's random-step size: None (``eps / 2``) or a number ≥ 0, at most ``eps`` if given."""
    if alpha is None:
        return None if eps is None else eps / 2.0
    alpha = check_eps(alpha, "alpha")
    if eps is not None and alpha > eps:
        raise ValueError(f"`alpha` must be in [0, eps] = [0, {eps}], got {alpha}.")
    return alpha


def _optional(check):
    return lambda value: None if value is None else check(value)


# ----------------------------------------------------------------- registry

class Attack:
    """A registered attack: a graph-safe function, its parameters and their checks.

    Attributes:
      name: registry name, as recorded in results.json.
      params: parameter defaults (None means "derived from ε", see ``resolve``).
      uses_gradient: whether the attack differentiates the model (recorded, so
        a gradient-free attack says it cannot be masked).
      reuses_gradient: the attack is ``perturb(x, ∇x L(x), ε)``, so a sweep may
        compute the gradient once per batch and reuse it for every ε.
      graph_safe: ``fn`` runs inside a ``tf.function`` (and so in the replicas
        of a distribution strategy).
    """

    def __init__(self, name, fn, *, params, checks, resolve, describe, uses_gradient,
                 reuses_gradient, doc, graph=True):
        self.name = name
        self.fn = fn
        self.params = dict(params)
        self.uses_gradient = uses_gradient
        self.reuses_gradient = reuses_gradient
        self.doc = doc
        self._checks = dict(checks)
        self._resolve = resolve
        self._describe = describe
        self.graph_safe = bool(graph)
        self._graph = tf.function(fn, reduce_retracing=True) if graph else fn

    def check_params(self, **params):
        """All parameters, defaults filled in and each one checked.

        Raises:
          ValueError: a parameter the attack does not take, or a bad value.
        """
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ValueError(f"Attack {self.name!r} takes no parameter(s) {unknown}; its "
                             f"parameters: {sorted(self.params) or 'none'}.")
        merged = {**self.params, **params}
        return {k: self._checks[k](v) if k in self._checks else v for k, v in merged.items()}

    def resolve(self, eps, params):
        """The concrete keyword arguments of ``fn`` at ``eps`` (checked ``params``)."""
        return self._resolve(eps, params) if self._resolve else dict(params)

    def describe(self, params):
        """JSON-able parameters for results.json (formulas where derived from ε)."""
        return self._describe(params) if self._describe else dict(params)

    def graph(self, model, x, y, eps, clip, **params):
        """Runs the compiled attack on already-checked inputs at one ε."""
        kwargs = self.resolve(eps, self.check_params(**params))
        kwargs = {k: (tf.constant(v, x.dtype) if isinstance(v, float) else v)
                  for k, v in kwargs.items()}
        # ε rounded down to the image dtype, so that the ε-ball holds for the ε asked for.
        eps_tensor = tf.constant(projection.round_down(eps, x.dtype), x.dtype)
        return tf.convert_to_tensor(
            self._graph(model, x, y, eps_tensor, clip, **kwargs), x.dtype)

    def __call__(self, model, x, y, eps, *, clip=(0.0, 1.0), **params):
        """Checks every input and returns adversarial images for ``eps``."""
        eps = check_eps(eps)
        clip = check_clip(clip)
        x, y = _check_inputs(model, x, y, clip)
        return self.graph(model, x, y, eps, clip, **params)

    def __repr__(self):
        return f"Attack({self.name!r}, params={self.params})"


_REGISTRY = {}


def register(name, *, params=None, checks=None, resolve=None, describe=None,
             uses_gradient=True, reuses_gradient=False, graph=True):
    """Decorator registering ``fn(model, x, y, eps, clip, **params) -> x_adv`` as ``name``.

    ``fn`` gets checked inputs and must be graph-safe (it runs in a
    ``tf.function``) unless ``graph=False`` (then it runs eagerly, and cannot
    run inside a distribution strategy's replicas). ``resolve(eps, params)`` turns checked parameters into
    ``fn``'s keyword arguments at one ε (e.g. a default step size of ε/2);
    ``describe(params)`` gives what results.json records.
    """
    def decorator(fn):
        if name in _REGISTRY:
            raise ValueError(f"Attack {name!r} is already registered.")
        _REGISTRY[name] = Attack(name, fn, params=params or {}, checks=checks or {},
                                 resolve=resolve, describe=describe,
                                 uses_gradient=uses_gradient, reuses_gradient=reuses_gradient,
                                 doc=(fn.__doc__ or "").strip().split("\n")[0], graph=graph)
        return fn
    return decorator


def get(name):
    """The registered ``Attack`` called ``name``; ValueError naming the available ones."""
    if isinstance(name, Attack):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"Unknown attack {name!r}; available: {', '.join(available())}.")
    return _REGISTRY[name]


def available():
    """Names of the registered attacks, sorted."""
    return tuple(sorted(_REGISTRY))


# ----------------------------------------------------------------- the attacks

@register("fgsm", reuses_gradient=True)
def _fgsm(model, x, y, eps, clip):
    """FGSM: one signed gradient step of ε."""
    grad, _ = _loss_gradient(model, x, y)
    return perturb(x, grad, eps, clip)


def _rfgsm_resolve(eps, params):
    alpha = params["alpha"]
    return {"alpha": eps / 2.0 if alpha is None else min(alpha, eps)}


@register("rfgsm", params={"alpha": None}, checks={"alpha": check_alpha},
          resolve=_rfgsm_resolve,
          describe=lambda p: {"alpha": "eps/2" if p["alpha"] is None else p["alpha"]})
def _rfgsm(model, x, y, eps, clip, alpha):
    """R-FGSM: a random sign step of α, then a gradient sign step of ε − α."""
    x_start = project(sign_step(x, random_sign(tf.shape(x), x.dtype), alpha), x, eps, clip)
    grad, _ = _loss_gradient(model, x_start, y)
    return project(sign_step(x_start, grad, eps - alpha), x, eps, clip)


def _pgd_resolve(eps, params):
    step = params["step_size"]
    return {"steps": params["steps"], "random_start": bool(params["random_start"]),
            "step_size": default_step_size(eps, params["steps"]) if step is None else step}


@register("pgd", params={"steps": 20, "step_size": None, "random_start": True},
          checks={"steps": check_steps, "step_size": _optional(check_step_size),
                  "random_start": bool},
          resolve=_pgd_resolve,
          describe=lambda p: {"steps": p["steps"], "random_start": p["random_start"],
                              "step_size": ("2.5*eps/steps" if p["step_size"] is None
                                            else p["step_size"])})
def _pgd(model, x, y, eps, clip, steps, step_size, random_start):
    """L∞ PGD: random start in the ε-ball, then signed gradient steps, projected."""
    low, high = projection.ball(x, eps, clip)  # the same exact bounds for every step
    if random_start:
        x_adv = projection.clip_between(
            x + tf.random.uniform(tf.shape(x), -eps, eps, dtype=x.dtype), low, high)
    else:
        x_adv = x
    for _ in tf.range(steps):
        grad, _ = _loss_gradient(model, x_adv, y)
        x_adv = projection.clip_between(sign_step(x_adv, grad, step_size), low, high)
    return x_adv


# Defaults as tfdisc.certify.search.DEFAULTS (not imported here: certify loads lazily).
@register("quantized_search", params={"restarts": 1, "iterations": 40, "candidates": 16,
                                      "seed": 0},
          describe=lambda p: {**p, "method": "random block coordinate search on the logit "
                                             "margin over reachable quantization levels"},
          uses_gradient=False, graph=False)
def _quantized_search(model, x, y, eps, clip, **params):
    """Gradient-free search over the reachable quantization levels (``tfdisc.certify``)."""
    from tfdisc.certify import quantized_search  # pylint: disable=import-outside-toplevel

    x_adv = quantized_search(model, x.numpy(), y.numpy(), float(eps), clip=clip, **params)
    # The search's candidates are levels it computed; project them like every attack's.
    return project(tf.convert_to_tensor(x_adv, x.dtype), x, eps, clip)


def fgsm(model, x, y, eps, *, clip=(0.0, 1.0)):
    """Fast gradient sign method (Goodfellow et al. 2015), paper eq. 1.

    ``x_adv = clip(x + eps · sign(∇x L(θ, x, y)))``, with L the cross-entropy of
    the model's logits and the gradient taken through the whole model
    (straight-through the input quantizer unless it says otherwise).

    Args:
      model: Keras model returning logits.
      x: float images, within ``clip`` (checked: finite, inside the range).
      y: int labels of shape [N] or [N, 1], or one-hot floats [N, classes]
        (see ``check_labels``).
      eps: L∞ budget, ≥ 0.
      clip: ``(low, high)`` valid range of the result, or None.

    Returns:
      Adversarial images, same shape and dtype as ``x``.

    Raises:
      ValueError: negative eps, bad clip, bad labels, shape mismatches, pixels
        outside ``clip`` or not finite.
      TypeError: non-float images.

    References:
      Paper eq. 1 (white-box FGSM).
    """
    return get("fgsm")(model, x, y, eps, clip=clip)


def rfgsm(model, x, y, eps, *, alpha=None, clip=(0.0, 1.0)):
    """R-FGSM (Tramèr et al. 2018): a random sign step of α, then FGSM with ε − α.

    ``x' = clip(x + α · sign(N(0, I)))``, ``x_adv = clip(x' + (ε − α) · sign(∇x' L))``,
    so ``‖x_adv − x‖∞ ≤ ε``. The gradient goes through the model's input
    quantizer (straight-through unless the layer says ``gradient="none"``).

    Args:
      model: Keras model returning logits.
      x: float images, within ``clip`` (checked: finite, inside the range).
      y: int labels of shape [N] or [N, 1], or one-hot floats [N, classes].
      eps: L∞ budget, ≥ 0.
      alpha: size of the random step, in [0, eps]; default ``eps / 2``.
      clip: ``(low, high)`` valid range, or None.

    Returns:
      Adversarial images, same shape and dtype as ``x``.

    Raises:
      ValueError: negative eps, alpha outside [0, eps], bad clip, bad labels,
        shape mismatches, pixels outside ``clip``.

    References:
      Paper sec. IV (R-FGSM for adversarial training, α = ε/2); Tramèr et al.,
      "Ensemble Adversarial Training", arXiv:1705.07204.

    Example:
      >>> x_adv = rfgsm(model, x, y, 8 / 255)
    """
    check_alpha(alpha, check_eps(eps))
    return get("rfgsm")(model, x, y, eps, clip=clip, alpha=alpha)


def pgd(model, x, y, eps, *, step_size, steps, random_start=True, clip=(0.0, 1.0)):
    """L∞ projected gradient descent (Madry et al. 2018).

    Starts at a uniform random point of the ε-ball (``random_start``), then
    repeats ``x ← Π(x + step_size · sign(∇x L))`` ``steps`` times, where Π projects
    onto the ε-ball around the clean ``x`` and onto ``clip``. The gradient goes
    through the model's input quantizer (straight-through by default).

    Args:
      model: Keras model returning logits.
      x: float images, within ``clip`` (checked: finite, inside the range).
      y: int labels of shape [N] or [N, 1], or one-hot floats [N, classes].
      eps: L∞ budget, ≥ 0.
      step_size: size of each sign step, > 0 (e.g. ``default_step_size(eps, steps)``).
      steps: number of steps, ≥ 1.
      random_start: start from a uniform random point of the ε-ball.
      clip: ``(low, high)`` valid range, or None.

    Returns:
      Adversarial images with ``‖x_adv − x‖∞ ≤ eps`` inside ``clip``, exactly
      (in real arithmetic, not up to float rounding: see ``project``).

    Raises:
      ValueError: negative eps, steps < 1, step_size ≤ 0, bad clip, bad labels,
        shape mismatches, pixels outside ``clip``.

    References:
      Madry et al., "Towards Deep Learning Models Resistant to Adversarial
      Attacks", arXiv:1706.06083.

    Example:
      >>> x_adv = pgd(model, x, y, 0.3, step_size=0.01, steps=40)
    """
    return get("pgd")(model, x, y, eps, clip=clip, step_size=step_size, steps=steps,
                      random_start=random_start)
