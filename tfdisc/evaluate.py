"""Accuracy under attack over an ε grid: white-box sweeps and black-box transfer.

Every sweep takes the attack gradient through the model's input quantizer
(straight-through/BPDA by default, see ``tfdisc.layers.BitDepthQuantization``);
``quantizer_gradient(model)`` names the mode so results can record it, and
``attack_record`` describes an attack's parameters for ``results.json``.
"""
import numpy as np
import tensorflow as tf

from tfdisc import attacks as attacks_lib

__all__ = ["ATTACKS", "accuracy", "attack_record", "quantizer_gradient", "robustness", "sweep",
           "transfer"]

ATTACKS = ("fgsm", "pgd", "rfgsm")
DEFAULT_PGD_STEPS = 20


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


def _check_attack(attack):
    if attack not in ATTACKS:
        raise ValueError(f"Unknown attack {attack!r}; available: {', '.join(ATTACKS)}.")
    return attack


def _check_top_k(top_k, num_classes):
    ks = (top_k,) if isinstance(top_k, int) else tuple(top_k)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`top_k` must be positive integers, got {top_k!r}.")
        if num_classes is not None and k > num_classes:
            raise ValueError(f"`top_k` {k} exceeds the model's {num_classes} classes.")
    return ks


def attack_record(attack, model, *, pgd_steps=DEFAULT_PGD_STEPS, pgd_step_size=None,
                  random_start=True, rfgsm_alpha=None):
    """A JSON-able description of an attack as a sweep runs it.

    ``gradient`` is the quantizer gradient mode of ``model`` (the model the
    attack differentiates): ``straight_through`` is the honest white-box
    setting; ``none`` only shows gradient masking.
    """
    _check_attack(attack)
    record = {"name": attack, "norm": "linf", "gradient": quantizer_gradient(model),
              "loss": "sparse softmax cross-entropy, true labels"}
    if attack == "pgd":
        record.update(steps=pgd_steps, random_start=bool(random_start),
                      step_size=("2.5*eps/steps" if pgd_step_size is None else pgd_step_size))
    if attack == "rfgsm":
        record.update(alpha="eps/2" if rfgsm_alpha is None else rfgsm_alpha)
    return record


def accuracy(model, dataset):
    """Top-1 accuracy of a logits model on a (images, labels) dataset."""
    return robustness(model, dataset, [0.0])[0.0]


def robustness(model, dataset, epsilons, attack="fgsm", *, clip=(0.0, 1.0),
               pgd_steps=DEFAULT_PGD_STEPS, pgd_step_size=None, random_start=True,
               rfgsm_alpha=None):
    """Top-1 accuracy on clean and attacked inputs for every ε.

    FGSM: the gradient is computed once per batch and reused for every ε.
    PGD and R-FGSM run once per ε and batch.

    Args:
      model: Keras model returning logits.
      dataset: iterable of (images, int labels) batches, e.g. ``tfdisc.data.load``.
      epsilons: iterable of ε ≥ 0; 0 (clean) is always included.
      attack: ``"fgsm"``, ``"pgd"`` or ``"rfgsm"``.
      clip: valid input range.
      pgd_steps: PGD iterations (≥ 1).
      pgd_step_size: PGD step; default ``2.5·ε/steps`` for each ε.
      random_start: PGD starts at a random point of the ε-ball.
      rfgsm_alpha: R-FGSM random step; default ``ε/2``.

    Returns:
      ``{eps: accuracy}`` (floats, accuracies in [0, 1]), including ``0.0``.

    Raises:
      ValueError: unknown attack, negative ε, steps < 1, empty dataset.

    Example:
      >>> robustness(model, ds_test, [0.1, 0.3], attack="pgd", pgd_steps=40)
    """
    result = sweep(model, dataset, epsilons, attack, clip=clip, pgd_steps=pgd_steps,
                   pgd_step_size=pgd_step_size, random_start=random_start,
                   rfgsm_alpha=rfgsm_alpha)
    return result["top1"]


def transfer(source_model, target_model, dataset, epsilons, attack="fgsm", **kwargs):
    """Black-box transfer: examples crafted on ``source_model``, accuracy of ``target_model``.

    Args:
      source_model: model whose gradient (through its own quantizer) makes the
        adversarial examples.
      target_model: model whose accuracy is measured.
      dataset, epsilons, attack, kwargs: as ``robustness``.

    Returns:
      ``{eps: target accuracy}``, including ``0.0`` (clean accuracy of the target).

    Raises:
      ValueError: the two models take inputs of different shapes; as ``robustness``.
    """
    src, tgt = tuple(source_model.input_shape), tuple(target_model.input_shape)
    if src[1:] != tgt[1:]:
        raise ValueError(f"Transfer source model takes inputs of shape {src} but the target "
                         f"takes {tgt}; they must match.")
    return sweep(target_model, dataset, epsilons, attack, attack_model=source_model,
                 **kwargs)["top1"]


def sweep(model, dataset, epsilons, attack="fgsm", *, top_k=(1,), clip=(0.0, 1.0),
          pgd_steps=DEFAULT_PGD_STEPS, pgd_step_size=None, random_start=True, rfgsm_alpha=None,
          attack_model=None):
    """The general ε sweep behind ``robustness`` and ``transfer``.

    Args:
      top_k: int or tuple of ints; top-k accuracies to measure (e.g. ``(1, 5)``).
      attack_model: model that crafts the examples (default ``model``: white-box).
      Other arguments as ``robustness``.

    Returns:
      dict with ``"top{k}"`` → ``{eps: accuracy}`` for every k, ``"examples"``,
      and ``"zero_gradient_fraction"``: the fraction of examples whose input
      gradient (of ``attack_model``, at the clean input) is exactly zero. Near 1
      it means gradient masking (e.g. ``gradient="none"``): such accuracies are
      not robustness.
    """
    _check_attack(attack)
    eps_list = _check_epsilons(list(epsilons) + [0.0])
    pgd_steps = attacks_lib._check_steps(pgd_steps)  # pylint: disable=protected-access
    if pgd_step_size is not None:
        pgd_step_size = attacks_lib._check_step_size(pgd_step_size)  # pylint: disable=protected-access
    clip = attacks_lib._check_clip(clip)  # pylint: disable=protected-access
    attack_model = model if attack_model is None else attack_model
    num_classes = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    ks = _check_top_k(top_k, num_classes)
    if rfgsm_alpha is not None:  # used as min(alpha, eps) for each eps
        rfgsm_alpha = attacks_lib.check_eps(rfgsm_alpha, "rfgsm_alpha")
    ks_tensor = tf.constant(ks, tf.int32)
    correct = np.zeros((len(eps_list), len(ks)), np.int64)
    zero_grad = 0
    total = 0
    for x, y in dataset:
        x = tf.convert_to_tensor(x, tf.float32)
        x, y = attacks_lib._check_inputs(model, x, y)  # pylint: disable=protected-access
        grad, _ = attacks_lib._loss_gradient_graph(attack_model, x, y)  # pylint: disable=protected-access
        zero_grad += int(tf.reduce_sum(tf.cast(
            tf.reduce_all(tf.equal(tf.reshape(grad, [tf.shape(grad)[0], -1]), 0.0), axis=1),
            tf.int64)))
        if attack == "fgsm":
            correct += _fgsm_correct(model, x, y, tf.sign(grad),
                                     tf.constant(eps_list, tf.float32), ks_tensor, clip).numpy()
        else:
            for i, eps in enumerate(eps_list):
                if eps == 0.0:
                    x_adv = x
                elif attack == "pgd":
                    step = (attacks_lib.default_step_size(eps, pgd_steps)
                            if pgd_step_size is None else pgd_step_size)
                    x_adv = attacks_lib._pgd_graph(  # pylint: disable=protected-access
                        attack_model, x, y, tf.constant(eps, tf.float32),
                        tf.constant(step, tf.float32), tf.constant(pgd_steps), bool(random_start),
                        clip)
                else:
                    alpha = eps / 2.0 if rfgsm_alpha is None else min(rfgsm_alpha, eps)
                    x_adv = attacks_lib._rfgsm_graph(  # pylint: disable=protected-access
                        attack_model, x, y, tf.constant(eps, tf.float32),
                        tf.constant(alpha, tf.float32), clip)
                correct[i] += _correct(model, x_adv, y, ks_tensor).numpy()
        total += int(y.shape[0])
    if total == 0:
        raise ValueError("`dataset` yielded no examples.")
    result = {f"top{k}": {e: float(c) / total for e, c in zip(eps_list, correct[:, j])}
              for j, k in enumerate(ks)}
    result["examples"] = total
    result["zero_gradient_fraction"] = zero_grad / total
    return result


@tf.function(reduce_retracing=True)
def _correct(model, x, y, ks):
    logits = model(x, training=False)
    y = tf.cast(y, tf.int32)
    return tf.map_fn(
        lambda k: tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, k), tf.int64)),
        ks, fn_output_signature=tf.int64)


@tf.function(reduce_retracing=True)
def _fgsm_correct(model, x, y, direction, eps_tensor, ks, clip):
    def correct_at(eps):
        x_adv = x + eps * direction
        if clip is not None:
            x_adv = tf.clip_by_value(x_adv, clip[0], clip[1])
        return _correct(model, x_adv, y, ks)

    return tf.map_fn(correct_at, eps_tensor, fn_output_signature=tf.int64)
