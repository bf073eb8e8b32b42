"""Gradient attacks: FGSM, R-FGSM, L∞ PGD, and the steps they share.

The gradient is taken through the whole model, including its
``BitDepthQuantization`` layer: straight-through (BPDA) by default, or the true
zero gradient of ``floor`` if the layer was built with ``gradient="none"``
(which shows gradient masking, not robustness).
"""
import tensorflow as tf

from tfdisc import checks as checks_lib
from tfdisc import projection
from tfdisc.attacks import losses
from tfdisc.attacks.registry import get, optional, register

__all__ = ["default_step_size", "fgsm", "input_gradient", "loss_gradient", "perturb", "pgd",
           "project", "random_sign", "rfgsm", "sign_step"]


def loss_gradient(model, x, y):
    """∇x of the mean cross-entropy of ``model``'s logits, and the per-example loss.

    Unconnected gradients (e.g. through a quantizer with ``gradient="none"``)
    are zeros, as the true derivative of ``floor`` is. Inputs are not checked
    against a clip range here; pass checked inputs (``tfdisc.checks.check_images``).
    """
    x, y = checks_lib.check_inputs(model, x, y)
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


@register("fgsm", reuses_gradient=True, describe=lambda p: {"loss": losses.CE_LOSS, **p})
def _fgsm(model, x, y, eps, clip):
    """FGSM: one signed gradient step of ε."""
    grad, _ = _loss_gradient(model, x, y)
    return perturb(x, grad, eps, clip)


def _rfgsm_resolve(eps, params):
    alpha = params["alpha"]
    return {"alpha": eps / 2.0 if alpha is None else min(alpha, eps)}


@register("rfgsm", params={"alpha": None}, checks={"alpha": checks_lib.check_alpha},
          resolve=_rfgsm_resolve,
          describe=lambda p: {"loss": losses.CE_LOSS,
                              "alpha": "eps/2" if p["alpha"] is None else p["alpha"]})
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
          checks={"steps": checks_lib.check_steps,
                  "step_size": optional(checks_lib.check_step_size),
                  "random_start": bool},
          resolve=_pgd_resolve,
          describe=lambda p: {"loss": losses.CE_LOSS, "steps": p["steps"],
                              "random_start": p["random_start"],
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


def fgsm(model, x, y, eps, *, clip=(0.0, 1.0)):
    """Fast gradient sign method (Goodfellow et al. 2015), paper eq. 1.

    ``x_adv = clip(x + eps · sign(∇x L(θ, x, y)))``, with L the cross-entropy of
    the model's logits and the gradient taken through the whole model
    (straight-through the input quantizer unless it says otherwise).

    Args:
      model: Keras model returning logits.
      x: float images, within ``clip`` (checked: finite, inside the range).
      y: int labels of shape [N] or [N, 1], or one-hot floats [N, classes]
        (see ``tfdisc.checks.check_labels``).
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
    checks_lib.check_alpha(alpha, checks_lib.check_eps(eps))
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
