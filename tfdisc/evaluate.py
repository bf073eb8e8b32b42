"""Accuracy under attack over an ε grid."""
import numpy as np
import tensorflow as tf

from tfdisc import attacks as attacks_lib

__all__ = ["ATTACKS", "accuracy", "robustness", "quantizer_gradient"]

ATTACKS = ("fgsm",)


def quantizer_gradient(model):
    """The ``gradient`` mode of the model's BitDepthQuantization layer, or None."""
    from tfdisc.layers import BitDepthQuantization  # pylint: disable=import-outside-toplevel

    modes = {layer.gradient for layer in model.layers if isinstance(layer, BitDepthQuantization)}
    if len(modes) > 1:
        return "mixed"
    return modes.pop() if modes else None


def _check_epsilons(epsilons):
    try:
        values = [attacks_lib.check_eps(e, "epsilons") for e in epsilons]
    except TypeError:
        raise ValueError(f"`epsilons` must be a list of non-negative numbers, got {epsilons!r}.") \
            from None
    return sorted(set(values))


def accuracy(model, dataset):
    """Top-1 accuracy of a logits model on a (images, labels) dataset."""
    return robustness(model, dataset, [0.0])[0.0]


def robustness(model, dataset, epsilons, attack="fgsm", *, clip=(0.0, 1.0)):
    """Accuracy on clean and FGSM-perturbed inputs for every ε.

    The FGSM gradient is computed once per batch and reused for every ε.

    Args:
      model: Keras model returning logits.
      dataset: iterable of (images, int labels) batches, e.g. ``tfdisc.data.load``.
      epsilons: iterable of ε ≥ 0; 0 (clean) is always included.
      attack: ``"fgsm"``.
      clip: valid input range.

    Returns:
      ``{eps: accuracy}`` (floats, accuracies in [0, 1]), including ``0.0``.

    Raises:
      ValueError: unknown attack, negative ε, empty dataset.
    """
    if attack not in ATTACKS:
        raise ValueError(f"Unknown attack {attack!r}; available: {', '.join(ATTACKS)}.")
    eps_list = _check_epsilons(list(epsilons) + [0.0])
    correct = np.zeros(len(eps_list), np.int64)
    total = 0
    eps_tensor = tf.constant([e for e in eps_list], tf.float32)
    for x, y in dataset:
        x = tf.convert_to_tensor(x, tf.float32)
        x, y = attacks_lib._check_inputs(model, x, y)  # pylint: disable=protected-access
        correct += _batch_correct(model, x, y, eps_tensor, clip).numpy()
        total += int(y.shape[0])
    if total == 0:
        raise ValueError("`dataset` yielded no examples.")
    return {e: float(c) / total for e, c in zip(eps_list, correct)}


@tf.function(reduce_retracing=True)
def _batch_correct(model, x, y, eps_tensor, clip):
    grad, _ = attacks_lib._loss_gradient(model, x, y)  # pylint: disable=protected-access
    direction = tf.sign(grad)

    def correct_at(eps):
        x_adv = x + eps * direction
        if clip is not None:
            x_adv = tf.clip_by_value(x_adv, clip[0], clip[1])
        pred = tf.argmax(model(x_adv, training=False), axis=-1)
        return tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(y, pred.dtype)), tf.int64))

    return tf.map_fn(correct_at, eps_tensor, fn_output_signature=tf.int64)
