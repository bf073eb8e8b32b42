"""The Square attack (Andriushchenko et al., "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020), L∞, adapted to quantized inputs.

Score-based: only the model's logits are queried, never a gradient, so it
cannot be masked by a quantizer's or a sign's gradient. From vertical stripes
at the ε-ball's corners, each iteration sets one random square window (the
same place for the batch, as the reference) to new values per example and
channel, and keeps them where the margin ``z_y − max_{j≠y} z_j`` drops. The
window holds a fraction ``p`` of the pixels, ``p`` following the reference's
schedule from ``p_init`` (halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000,
8000 of 10 000 queries, rescaled to ``n_queries``). It stops for an example once
it is misclassified (the model is queried only on the examples still unbroken,
gathered in the graph), and for the batch when all are. Behind an input
quantizer through which alone the input reaches the model
(``sole_input_quantizer``), a proposal that quantizes as the current point
does is not queried either: its logits, so its margin, are the same.

Discretized inputs: where the model's first layer is a ``BitDepthQuantization``
(``tfdisc.certify.box.input_quantizer``), half of the window proposals are not
the ε-ball's corners but a random level of the quantizer
(``tfdisc.certify.box.levels``) moved to its nearest point of the ball: the
reachable level nearest to it, so levels strictly between the lowest and the
highest reachable one are proposed too (the corners reach only those two).
Without a quantizer (or with one elsewhere in the model) the proposals are
the corners, as in the reference. Every candidate lies in the exact ball
(``tfdisc.projection``).

Inputs of rank 4 are ``[N, H, W, C]``, rank 3 ``[N, H, W]``; rank 2 ``[N, D]``
is a single row (windows are runs of ``p·D`` features).
"""
import numpy as np
import tensorflow as tf

from tfdisc import projection
from tfdisc.attacks import losses
from tfdisc.attacks.registry import check_count, check_fraction, check_seed, register
from tfdisc.certify import box as box_lib

__all__ = ["DEFAULTS", "p_selection", "quantizer_levels", "sole_input_quantizer",
           "square_graph"]

DEFAULTS = dict(n_queries=5000, p_init=0.8, seed=0)
# The reference's schedule on 10 000 queries: (from this query on, divide p_init by).
_SCHEDULE = ((10, 2), (50, 4), (200, 8), (500, 16), (1000, 32), (2000, 64), (4000, 128),
             (6000, 256), (8000, 512))


def p_selection(p_init, it, n_queries):
    """Fraction of pixels changed at iteration ``it`` (graph-safe; ``it`` a tensor or int)."""
    it = tf.cast(tf.cast(it, tf.float64) / float(n_queries) * 10000.0, tf.int32)
    divisor = tf.constant(1.0, tf.float64)
    for start, factor in _SCHEDULE:
        divisor = tf.where(it > start, tf.constant(float(factor), tf.float64), divisor)
    return tf.cast(p_init, tf.float64) / divisor


def quantizer_levels(model):
    """The levels of ``model``'s input quantizer as a float32 numpy array, or None.

    None without a ``BitDepthQuantization`` first layer (a quantizer elsewhere is
    not the input's: Square then proposes the ε-ball's corners only).
    """
    try:
        layer = box_lib.input_quantizer(model)
    except ValueError:
        return None
    if layer is None:
        return None
    with tf.init_scope():  # numpy levels, also while an attack graph is traced
        return np.asarray(box_lib.levels(layer), np.float32)


def sole_input_quantizer(model):
    """The model's input ``BitDepthQuantization`` layer if the input reaches the rest of the
    model only through it (so equal quantized inputs give equal logits), else None."""
    try:
        layer = box_lib.input_quantizer(model)
    except ValueError:
        return None
    if layer is None or isinstance(model, tf.keras.Sequential):
        return layer
    try:
        config = model.get_config()
        inputs = {entry[0] for entry in config["input_layers"]}
        readers = {spec["name"] for spec in config["layers"]
                   for node in spec.get("inbound_nodes") or [] for inbound in node
                   if isinstance(inbound, (list, tuple)) and inbound[0] in inputs}
    except (NotImplementedError, KeyError, TypeError, IndexError):  # a subclassed model
        return None
    return layer if readers == {layer.name} else None


def _as_images(x):
    shape = x.shape
    if any(d is None for d in shape[1:]):
        raise ValueError(f"Square needs inputs of static shape, got {shape}.")
    if shape.rank == 4:
        return x, shape[1:]
    if shape.rank == 3:
        return x[..., None], (shape[1], shape[2], 1)
    if shape.rank == 2:
        return x[:, None, :, None], (1, shape[1], 1)
    raise ValueError(f"Square takes inputs of rank 2, 3 or 4, got shape {shape}.")


def _robust_margin(model, x, y, shape):
    logits = model(tf.reshape(x, shape), training=False)
    return -losses.margin(logits, y)  # z_y − max_{j≠y} z_j: ≤ 0 once misclassified


def _margin_of_unbroken(model, x, y, shape, margin, ask):
    """The margins of ``x``, queried only where ``ask`` (elsewhere ``margin``)."""
    index = tf.where(ask)

    def query():
        sub_shape = tf.concat([tf.shape(index)[:1], shape[1:]], 0)
        sub = _robust_margin(model, tf.gather_nd(x, index), tf.gather_nd(y, index), sub_shape)
        return tf.tensor_scatter_nd_update(margin, index, sub)
    # No query on an empty batch: some Keras layers (a Conv2D's output check) reject one.
    return tf.cond(tf.size(index) > 0, query, lambda: margin)


def square_graph(model, x, y, eps, clip, n_queries, p_init, seed):
    """Square on checked inputs; returns ``(x_adv, fooled)`` (graph-safe, no gradient)."""
    shape = tf.shape(x)
    images, (h, w, c) = _as_images(x)
    levels = quantizer_levels(model)
    quantizer = sole_input_quantizer(model)
    low, high = projection.ball(images, eps, clip)
    n = tf.shape(images)[0]
    seed = tf.cast(seed, tf.int32)

    def rand(kind, it, dims, maxval=None):
        s = tf.stack([seed, it * 8 + kind])
        if maxval is None:
            return tf.random.stateless_uniform(dims, s, dtype=images.dtype)
        return tf.random.stateless_uniform(dims, s, 0, maxval, dtype=tf.int32)

    stripes = rand(0, -1, tf.stack([n, 1, w, c])) < 0.5
    x_best = tf.where(stripes, low, high)
    margin = _robust_margin(model, x_best, y, shape)

    def body(it, x_best, margin):
        p = p_selection(p_init, it, n_queries)
        if h > 1:
            side = tf.cast(tf.round(tf.sqrt(p * float(h * w))), tf.int32)
            sh = sw = tf.clip_by_value(side, 1, max(min(h, w) - 1, 1))
        else:
            sh, sw = 1, tf.clip_by_value(tf.cast(tf.round(p * float(w)), tf.int32), 1,
                                         max(w - 1, 1))
        vh = rand(1, it, [], h - sh + 1)
        vw = rand(2, it, [], w - sw + 1)
        rows, cols = tf.range(h), tf.range(w)
        window = (((rows >= vh) & (rows < vh + sh))[:, None]
                  & ((cols >= vw) & (cols < vw + sw))[None, :])[None, :, :, None]
        corner = tf.where(rand(3, it, tf.stack([n, 1, 1, c])) < 0.5, low, high)
        if levels is not None:
            table = tf.constant(levels, images.dtype)
            pick = rand(4, it, tf.stack([n, 1, 1, c]), len(levels))
            level = projection.clip_between(
                tf.broadcast_to(tf.gather(table, pick), tf.shape(images)), low, high)
            corner = tf.where(rand(5, it, tf.stack([n, 1, 1, c])) < 0.5, corner, level)
        x_new = tf.where(window, corner, x_best)
        # The model sees only the still-unbroken examples (the broken ones stopped) whose
        # proposal it can tell apart: behind its input quantizer, one that quantizes as the
        # current point does has the same logits, so the same margin (no improvement).
        ask = margin > 0
        if quantizer is not None:
            moved = tf.not_equal(quantizer(tf.reshape(x_new, shape), training=False),
                                 quantizer(tf.reshape(x_best, shape), training=False))
            ask &= tf.reduce_any(tf.reshape(moved, [n, -1]), axis=1)
        margin_new = _margin_of_unbroken(model, x_new, y, shape, margin, ask)
        improved = (margin_new < margin) & (margin > 0)
        x_best = tf.where(improved[:, None, None, None], x_new, x_best)
        return it + 1, x_best, tf.where(improved, margin_new, margin)

    _, x_best, margin = tf.while_loop(
        lambda it, _, m: (it < n_queries - 1) & tf.reduce_any(m > 0), body,
        (tf.constant(0, tf.int32), x_best, margin))
    x_adv = tf.reshape(x_best, shape)
    logits = model(x_adv, training=False)
    return x_adv, tf.not_equal(tf.argmax(logits, axis=-1, output_type=y.dtype), y)


CHECKS = {"n_queries": check_count("n_queries"), "p_init": check_fraction("p_init"),
          "seed": check_seed}


@register("square", params=DEFAULTS, checks=CHECKS, uses_gradient=False,
          describe=lambda p: {**p, "loss": losses.MARGIN_SCORE, "norm": "linf",
                              "proposals": "eps-ball corners, and reachable quantization "
                                           "levels where the model has an input quantizer"})
def _square(model, x, y, eps, clip, n_queries, p_init, seed):
    """Square (Andriushchenko et al. 2020): score-based random search, no gradient."""
    return square_graph(model, x, y, eps, clip, n_queries, p_init, seed)[0]
