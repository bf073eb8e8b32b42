"""CROWN-IBP margin bounds for certified training (Zhang et al., ICLR 2020).

Interval bounds (IBP) give every ReLU's pre-activation bounds ``[l, u]`` in a
forward pass; then the margins ``z_y − z_j`` are bounded below by one linear
back-substitution from the logits to the quantized input box (CROWN, with
CROWN's adaptive lower slope and the triangle upper line on unstable units),
minimized over the box in closed form. Everything is plain float32 TensorFlow
and differentiable in the weights: for training, like the interval bounds with
``exact=False``. Certificates never come from here (``tfdisc.certify.certify``
is sound in float32; ``tfdisc.certify.linear`` is its float64 back-substitution).

Each layer's step comes from its bound rule's ``linear`` in training mode
(``Context(exact=False, training)``): Dense, Conv2D, BatchNormalization (the
clean point's batch statistics in training), ReLU, Flatten/Reshape, the input
quantizer, identity layers. A model with another layer (sign activations of
BNNs, pooling, ``Add``) raises ``NotImplementedError`` naming it: train it with
interval bounds.

References:
  Zhang et al., "Towards stable and efficient training of verifiably robust
  neural networks", ICLR 2020 (CROWN-IBP); Zhang et al. 2018 (CROWN).
"""
import tensorflow as tf

from tfdisc.certify import bounds as bounds_lib
from tfdisc.certify import rules

__all__ = ["margin_upper", "supports"]


def _steps(model, lower, upper, point, training):
    """[(step, input Interval)] of the whole model, IBP intervals between steps."""
    layers, output_name = bounds_lib.chain(model, "CROWN-IBP bounds")
    ctx = rules.Context(exact=False, training=training)
    iv = rules.Interval(ctx.cast(lower), ctx.cast(upper),
                        None if point is None else ctx.cast(point))
    chain, prev = [], None
    for layer, rule, follows_input in layers:
        ctx.follows_input = follows_input
        for step in rule.linear(layer, [iv], ctx):
            chain.append((step, iv))
            iv = step.interval if step.kind == "affine" else iv.map(tf.nn.relu)
        prev = layer.name
    if prev != output_name or iv.lower.shape.rank != 2:
        raise NotImplementedError(f"CROWN-IBP needs flat logits at the end of the chain "
                                  f"(model {model.name!r}). Train with interval bounds.")
    return chain


def supports(model):
    """True if ``margin_upper`` can bound ``model`` (a chain of layers with linear rules)."""
    shape = [1] + [int(d) for d in model.input_shape[1:]]
    zeros = tf.zeros(shape, tf.float32)
    try:
        _steps(model, zeros, zeros, zeros, training=False)
    except NotImplementedError:
        return False
    return True


def margin_upper(model, lower, upper, y, *, training=False, point=None):
    """Upper bounds ``[batch, classes]`` on ``z_j − z_y`` over the box (0 at j = y).

    Args:
      model: a chain of Dense/Conv2D/BatchNormalization/ReLU/Flatten layers after the input
        quantizer, linear logits last.
      lower, upper: the box on the quantizer's output (``tfdisc.certify.box``).
      y: int labels ``[batch]``.
      training: batch norm uses the batch statistics of ``point`` (a training step).
      point: the clean quantized batch.

    Raises:
      NotImplementedError: a layer without a linear rule (train with interval bounds).
    """
    chain = _steps(model, lower, upper, point, training)
    logits = chain[-1][0].interval.lower
    classes = int(logits.shape[-1])
    y = tf.cast(y, tf.int32)
    onehot = tf.one_hot(y, classes, dtype=tf.float32)
    # Rows j: z_y − z_j, i.e. coefficients e_y − e_j on the logits: [batch, classes, classes].
    a = onehot[:, None, :] - tf.eye(classes, dtype=tf.float32)[None]
    const = tf.zeros(tf.shape(a)[:2], tf.float32)
    for step, iv_in in reversed(chain):
        if step.kind == "affine":
            if step.bias is not None:
                const += _sum(a * step.bias)
            a = step.back(a)
            continue
        low, up = iv_in.lower[:, None], iv_in.upper[:, None]
        active = low >= 0.0
        unstable = (low < 0.0) & (up > 0.0)
        lam = tf.where(active | (unstable & (up > -low)), 1.0, 0.0)  # CROWN's adaptive slope
        slope = tf.where(unstable, up / tf.where(unstable, up - low, 1.0), 0.0)
        pos = a >= 0.0
        const += _sum(tf.where(pos, 0.0, a) * tf.where(unstable, -slope * low, 0.0))
        a = tf.where(pos, a * lam, a * tf.where(active, 1.0, slope))
    box_lo, box_up = tf.cast(lower, tf.float32)[:, None], tf.cast(upper, tf.float32)[:, None]
    lowest = const + _sum(tf.where(a >= 0.0, a * box_lo, a * box_up))
    return -lowest * (1.0 - onehot)


def _sum(t):
    """Sum over every axis after the first two: ``[batch, rows]``."""
    return tf.reduce_sum(tf.reshape(t, tf.concat([tf.shape(t)[:2], [-1]], 0)), axis=2)
