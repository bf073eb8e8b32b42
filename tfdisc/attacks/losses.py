"""Per-example attack losses on logits (CE, DLR, targeted DLR, margin) and the logits check.

DLR (Croce & Hein 2020, eq. 5) is shift- and scale-invariant in the logits:
``DLR = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)`` with ``z_π`` sorted decreasing,
so it needs ≥ 3 classes. The targeted version (their eq. 6, as the reference
code computes it) ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2)`` needs ≥ 4
classes. Every loss here is one the attacks *maximize*.
"""
import tensorflow as tf

__all__ = ["CE_LOSS", "DLR_CLASSES", "DLR_TARGETED_CLASSES", "DLR_TARGETED_LOSS",
           "MARGIN_SCORE", "check_classes", "check_logits", "cross_entropy", "dlr",
           "dlr_targeted", "margin", "target_classes"]

DLR_CLASSES = 3
DLR_TARGETED_CLASSES = 4
# The losses in words, as an attack's ``describe`` states in results.json the one it optimizes.
CE_LOSS = "sparse softmax cross-entropy, true labels"
DLR_TARGETED_LOSS = ("targeted DLR −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2), the top "
                     "n_target_classes other classes t in turn")
MARGIN_SCORE = "margin z_y − max_{j≠y} z_j of the logits, as a score (no gradient)"
_TINY = 1e-12  # the reference's guard against a zero denominator


def check_logits(model):
    """Raises ValueError if ``model`` ends in a softmax/sigmoid (probabilities, not logits).

    The attacks need logits: the cross-entropy is taken ``from_logits`` and the
    DLR and margin losses are differences of logits. Detected: a final
    ``Softmax`` layer, or a final layer whose ``activation`` is softmax or
    sigmoid (``Dense(..., activation="softmax")``, ``Activation("softmax")``).
    """
    layers = getattr(model, "layers", None)
    if not layers:
        return model
    last = layers[-1]
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", "")
    if isinstance(last, tf.keras.layers.Softmax) or name in ("softmax", "sigmoid", "log_softmax"):
        raise ValueError(
            f"Model {model.name!r} ends in {type(last).__name__} {last.name!r} with a "
            f"{name or 'softmax'} output: the attacks need logits. Build the model without the "
            "final softmax (e.g. tf.keras.Model(model.input, model.layers[-1].input) for a "
            "Softmax layer) and attack that.")
    return model


def check_classes(num_classes, need, attack):
    """ValueError if a model with ``num_classes`` classes has fewer than ``need``."""
    if num_classes is not None and num_classes < need:
        raise ValueError(
            f"Attack {attack!r} needs a model with at least {need} classes (its DLR loss divides "
            f"by a difference of the 1st and {need - 1 if need == 3 else '3rd/4th'} largest "
            f"logits), got {num_classes}. Use 'apgd_ce' (cross-entropy), which works for any "
            "number of classes.")


def cross_entropy(logits, y):
    """Per-example softmax cross-entropy of the logits at the int labels ``y``."""
    return tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)


def margin(logits, y):
    """``max_{j≠y} z_j − z_y``: > 0 exactly where the example is misclassified."""
    true = tf.one_hot(y, tf.shape(logits)[-1], on_value=True, off_value=False)
    z_y = tf.reduce_max(tf.where(true, logits, -tf.float32.max), axis=-1)
    z_other = tf.reduce_max(tf.where(true, -tf.float32.max, logits), axis=-1)
    return z_other - z_y


def dlr(logits, y):
    """Untargeted DLR loss (≥ 3 classes)."""
    top = tf.math.top_k(logits, k=3).values
    return margin(logits, y) / (top[:, 0] - top[:, 2] + _TINY)


def dlr_targeted(logits, y, target):
    """Targeted DLR loss towards ``target`` (≥ 4 classes)."""
    top = tf.math.top_k(logits, k=4).values
    z_y = tf.gather(logits, y, batch_dims=1)
    z_t = tf.gather(logits, target, batch_dims=1)
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


def target_classes(logits, y, rank):
    """The class with the ``rank``-th largest logit other than ``y`` (rank 1 = runner-up)."""
    true = tf.one_hot(y, tf.shape(logits)[-1], on_value=True, off_value=False)
    order = tf.argsort(tf.where(true, -tf.float32.max, logits), axis=-1, direction="DESCENDING")
    return tf.cast(order[:, rank - 1], y.dtype)
