"""Argument checks shared by the attacks, the sweeps, training and certification.

A base-level module: it imports nothing from tfdisc, so any module may use it
(beside ``tfdisc.quantize.check_bits``). Every check returns the value in its
canonical form or raises ``ValueError`` (``TypeError`` for non-float images)
with a message naming the argument and what it must be.
"""
import numbers

import tensorflow as tf

__all__ = ["CLIP_TOLERANCE", "check_alpha", "check_clip", "check_eps", "check_images",
           "check_inputs", "check_labels", "check_step_size", "check_steps", "num_classes"]

# Pixels this far (relative to the clip range) outside it are taken as rounding.
CLIP_TOLERANCE = 1e-6


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


def num_classes(model):
    """The number of classes of a model with logits of shape ``[batch, classes]``, else None."""
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
            tol = CLIP_TOLERANCE * (clip[1] - clip[0])
            if low < clip[0] - tol or high > clip[1] + tol:
                raise ValueError(
                    f"`x` has pixels in [{low:g}, {high:g}], outside the clip range "
                    f"[{clip[0]:g}, {clip[1]:g}]: scale the images to the clip range (e.g. "
                    "uint8 / 255 for a model on [0, 1]) or pass the matching `clip`.")
    return x


def check_inputs(model, x, y, clip=None):
    """``(x, y)`` checked against ``model``: ``check_images`` and ``check_labels`` together."""
    x = check_images(x, clip, model.input_shape)
    y = check_labels(y, num_classes(model), x.shape[0])
    return x, y


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
