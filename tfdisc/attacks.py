"""White-box attacks (FGSM, R-FGSM, L∞ PGD), as pure functions on a model that returns logits.

The gradient is taken through the whole model, including its
``BitDepthQuantization`` layer: straight-through (BPDA) by default, or the true
zero gradient of ``floor`` if the layer was built with ``gradient="none"``
(which shows gradient masking, not robustness).
"""
import numbers

import tensorflow as tf

__all__ = ["check_alpha", "check_eps", "default_step_size", "fgsm", "loss_gradient", "perturb", "pgd",
           "random_sign", "rfgsm"]


def check_eps(eps, name="eps"):
    """Returns ``eps`` as a float, or raises ``ValueError`` if not a number ≥ 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise ValueError(f"`{name}` must be a non-negative number, got {eps!r}.")
    eps = float(eps)
    if not eps >= 0.0 or eps == float("inf"):
        raise ValueError(f"`{name}` must be a finite non-negative number, got {eps!r}.")
    return eps


def _check_clip(clip):
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise ValueError(f"`clip` must be None or a pair (low, high), got {clip!r}.") from None
    if not low < high:
        raise ValueError(f"`clip` must have low < high, got {clip!r}.")
    return low, high


def _check_inputs(model, x, y):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"`x` must be a float tensor of images in the clip range, got {x.dtype.name}.")
    expected = model.input_shape
    if isinstance(expected, tuple) and len(expected) != x.shape.rank:
        raise ValueError(
            f"`x` has rank {x.shape.rank} (shape {x.shape}) but the model expects inputs of "
            f"shape {expected}."
        )
    if isinstance(expected, tuple) and tuple(x.shape[1:]) != tuple(expected[1:]):
        raise ValueError(f"`x` has shape {x.shape} but the model expects {expected}.")
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2:  # one-hot
        y = tf.argmax(y, axis=-1)
    if y.shape.rank != 1 or not y.dtype.is_integer:
        raise ValueError(f"`y` must be integer labels of shape [batch] (or one-hot), got "
                         f"{y.dtype.name} of shape {y.shape}.")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`x` has {x.shape[0]} examples but `y` has {y.shape[0]} labels.")
    return x, y


def loss_gradient(model, x, y):
    """∇x of the mean cross-entropy of ``model``'s logits, and the per-example loss.

    Unconnected gradients (e.g. through a quantizer with ``gradient="none"``)
    are zeros, as the true derivative of ``floor`` is.
    """
    x, y = _check_inputs(model, x, y)
    return _loss_gradient(model, x, y)


@tf.function(reduce_retracing=True)
def _loss_gradient_graph(model, x, y):
    return _loss_gradient(model, x, y)


def _loss_gradient(model, x, y):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    grad = tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return grad, loss


def fgsm(model, x, y, eps, *, clip=(0.0, 1.0)):
    """Fast gradient sign method (Goodfellow et al. 2015), paper eq. 1.

    ``x_adv = clip(x + eps · sign(∇x L(θ, x, y)))``, with L the cross-entropy of
    the model's logits and the gradient taken through the whole model
    (straight-through the input quantizer unless it says otherwise).

    Args:
      model: Keras model returning logits.
      x: float images, within ``clip``.
      y: int labels of shape [batch] (one-hot accepted).
      eps: L∞ budget, ≥ 0.
      clip: ``(low, high)`` valid range of the result, or None.

    Returns:
      Adversarial images, same shape and dtype as ``x``.

    Raises:
      ValueError: negative eps, bad clip, shape mismatches.
      TypeError: non-float images.

    References:
      Paper eq. 1 (white-box FGSM).
    """
    eps = check_eps(eps)
    clip = _check_clip(clip)
    x, y = _check_inputs(model, x, y)
    grad, _ = _loss_gradient(model, x, y)
    return perturb(x, grad, eps, clip)


def perturb(x, grad, eps, clip=(0.0, 1.0)):
    """``clip(x + eps · sign(grad))``: the FGSM step given a gradient."""
    x_adv = x + tf.cast(eps, x.dtype) * tf.sign(grad)
    if clip is not None:
        x_adv = tf.clip_by_value(x_adv, clip[0], clip[1])
    return x_adv


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"`steps` must be an integer ≥ 1, got {steps!r}.")
    return int(steps)


def _check_step_size(step_size):
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not (
            0.0 < float(step_size) < float("inf")):
        raise ValueError(f"`step_size` must be a finite number > 0, got {step_size!r}.")
    return float(step_size)


def check_alpha(alpha, eps):
    """R-FGSM's random-step size: ``eps / 2`` if None, else a number in [0, eps]."""
    if alpha is None:
        return eps / 2.0
    alpha = check_eps(alpha, "alpha")
    if alpha > eps:
        raise ValueError(f"`alpha` must be in [0, eps] = [0, {eps}], got {alpha}.")
    return alpha


def _clip(x, clip):
    if clip is None:
        return x
    return tf.clip_by_value(x, tf.cast(clip[0], x.dtype), tf.cast(clip[1], x.dtype))


def random_sign(shape, dtype=tf.float32):
    """``sign(N(0, I))``: independent ±1 entries (R-FGSM's random direction)."""
    noise = tf.random.normal(shape, dtype=dtype)
    return tf.where(noise >= 0, tf.ones_like(noise), -tf.ones_like(noise))


def _rfgsm(model, x, y, eps, alpha, clip):
    """R-FGSM on checked inputs; usable inside ``tf.function`` (adversarial training)."""
    x_start = _clip(x + tf.cast(alpha, x.dtype) * random_sign(tf.shape(x), x.dtype), clip)
    grad, _ = _loss_gradient(model, x_start, y)
    return _clip(x_start + tf.cast(eps - alpha, x.dtype) * tf.sign(grad), clip)


@tf.function(reduce_retracing=True)
def _rfgsm_graph(model, x, y, eps, alpha, clip):
    return _rfgsm(model, x, y, eps, alpha, clip)


def rfgsm(model, x, y, eps, *, alpha=None, clip=(0.0, 1.0)):
    """R-FGSM (Tramèr et al. 2018): a random sign step of α, then FGSM with ε − α.

    ``x' = clip(x + α · sign(N(0, I)))``, ``x_adv = clip(x' + (ε − α) · sign(∇x' L))``,
    so ``‖x_adv − x‖∞ ≤ ε``. The gradient goes through the model's input
    quantizer (straight-through unless the layer says ``gradient="none"``).

    Args:
      model: Keras model returning logits.
      x: float images, within ``clip``.
      y: int labels of shape [batch] (one-hot accepted).
      eps: L∞ budget, ≥ 0.
      alpha: size of the random step, in [0, eps]; default ``eps / 2``.
      clip: ``(low, high)`` valid range, or None.

    Returns:
      Adversarial images, same shape and dtype as ``x``.

    Raises:
      ValueError: negative eps, alpha outside [0, eps], bad clip, shape mismatches.

    References:
      Paper sec. IV (R-FGSM for adversarial training, α = ε/2); Tramèr et al.,
      "Ensemble Adversarial Training", arXiv:1705.07204.

    Example:
      >>> x_adv = rfgsm(model, x, y, 8 / 255)
    """
    eps = check_eps(eps)
    alpha = check_alpha(alpha, eps)
    clip = _check_clip(clip)
    x, y = _check_inputs(model, x, y)
    return _rfgsm_graph(model, x, y, tf.constant(eps, x.dtype), tf.constant(alpha, x.dtype), clip)


def default_step_size(eps, steps):
    """PGD step size when none is given: 2.5 · ε / steps (Madry et al. 2018)."""
    return 2.5 * eps / steps


def _pgd(model, x, y, eps, step_size, steps, random_start, clip):
    low, high = x - eps, x + eps
    if random_start:
        x_adv = _clip(x + tf.random.uniform(tf.shape(x), -eps, eps, dtype=x.dtype), clip)
    else:
        x_adv = x
    for _ in tf.range(steps):
        grad, _ = _loss_gradient(model, x_adv, y)
        x_adv = x_adv + step_size * tf.sign(grad)
        x_adv = _clip(tf.clip_by_value(x_adv, low, high), clip)
    return x_adv


@tf.function(reduce_retracing=True)
def _pgd_graph(model, x, y, eps, step_size, steps, random_start, clip):
    return _pgd(model, x, y, eps, step_size, steps, random_start, clip)


def pgd(model, x, y, eps, *, step_size, steps, random_start=True, clip=(0.0, 1.0)):
    """L∞ projected gradient descent (Madry et al. 2018).

    Starts at a uniform random point of the ε-ball (``random_start``), then
    repeats ``x ← Π(x + step_size · sign(∇x L))`` ``steps`` times, where Π projects
    onto the ε-ball around the clean ``x`` and onto ``clip``. The gradient goes
    through the model's input quantizer (straight-through by default).

    Args:
      model: Keras model returning logits.
      x: float images, within ``clip``.
      y: int labels of shape [batch] (one-hot accepted).
      eps: L∞ budget, ≥ 0.
      step_size: size of each sign step, > 0 (e.g. ``default_step_size(eps, steps)``).
      steps: number of steps, ≥ 1.
      random_start: start from a uniform random point of the ε-ball.
      clip: ``(low, high)`` valid range, or None.

    Returns:
      Adversarial images with ``‖x_adv − x‖∞ ≤ eps`` inside ``clip``.

    Raises:
      ValueError: negative eps, steps < 1, step_size ≤ 0, bad clip, shape mismatches.

    References:
      Madry et al., "Towards Deep Learning Models Resistant to Adversarial
      Attacks", arXiv:1706.06083.

    Example:
      >>> x_adv = pgd(model, x, y, 0.3, step_size=0.01, steps=40)
    """
    eps = check_eps(eps)
    step_size = _check_step_size(step_size)
    steps = _check_steps(steps)
    clip = _check_clip(clip)
    x, y = _check_inputs(model, x, y)
    return _pgd_graph(model, x, y, tf.constant(eps, x.dtype), tf.constant(step_size, x.dtype),
                      tf.constant(steps), bool(random_start), clip)
