"""White-box attacks, as pure functions on a model that returns logits.

The gradient is taken through the whole model, including its
``BitDepthQuantization`` layer: straight-through (BPDA) by default, or the true
zero gradient of ``floor`` if the layer was built with ``gradient="none"``
(which shows gradient masking, not robustness).
"""
import numbers

import tensorflow as tf

__all__ = ["fgsm", "loss_gradient", "check_eps"]


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
