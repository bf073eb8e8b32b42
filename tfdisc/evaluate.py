"""Accuracy under attack over an ε grid: white-box sweeps and black-box transfer.

Every sweep takes the attack gradient through the model's input quantizer
(straight-through/BPDA by default, see ``tfdisc.layers.BitDepthQuantization``);
``quantizer_gradient(model)`` names the mode so results can record it, and
``attack_record`` describes an attack's parameters for ``results.json``.
"""
import numbers
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tfdisc import attacks as attacks_lib
from tfdisc import checks as checks_lib
from tfdisc import projection

__all__ = ["accuracy", "attack_params", "attack_record", "quantizer_gradient", "robustness",
           "straight_through_twin", "sweep", "transfer"]

DEFAULT_PGD_STEPS = attacks_lib.get("pgd").params["steps"]

# Older keyword names of the sweeps, mapped to the attack's own parameter names.
_LEGACY_PARAMS = {"pgd_steps": ("pgd", "steps"), "pgd_step_size": ("pgd", "step_size"),
                  "random_start": ("pgd", "random_start"), "rfgsm_alpha": ("rfgsm", "alpha")}


def __getattr__(name):
    if name == "ATTACKS":  # the registry is the source of truth; kept for old callers
        return attacks_lib.available()
    raise AttributeError(f"module 'tfdisc.evaluate' has no attribute {name!r}")


def quantizer_gradient(model):
    """The ``gradient`` mode of the model's BitDepthQuantization layer, or None."""
    from tfdisc.layers import BitDepthQuantization  # pylint: disable=import-outside-toplevel

    modes = {layer.gradient for layer in model.layers if isinstance(layer, BitDepthQuantization)}
    if len(modes) > 1:
        return "mixed"
    return modes.pop() if modes else None


def _check_epsilons(epsilons):
    """A sorted list of distinct ε ≥ 0 from a number or an iterable of numbers."""
    if isinstance(epsilons, (str, bytes)):
        raise ValueError(f"`epsilons` must be a number or a list of numbers, got the string "
                         f"{epsilons!r}; parse it first (e.g. [0.1, 8 / 255]).")
    if isinstance(epsilons, numbers.Real) or (
            isinstance(epsilons, np.ndarray) and epsilons.ndim == 0):
        epsilons = [float(epsilons)]
    try:
        values = [checks_lib.check_eps(e, "epsilons") for e in epsilons]
    except TypeError:
        raise ValueError(f"`epsilons` must be a list of non-negative numbers, got {epsilons!r}.") \
            from None
    return sorted(set(values))


def _check_top_k(top_k, num_classes):
    ks = (top_k,) if isinstance(top_k, int) else tuple(top_k)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`top_k` must be positive integers, got {top_k!r}.")
        if num_classes is not None and k > num_classes:
            raise ValueError(f"`top_k` {k} exceeds the model's {num_classes} classes.")
    return ks


def attack_params(attack, params):
    """The parameters of ``attack`` in ``params``, old sweep keyword names translated.

    Old names (``pgd_steps``, ``pgd_step_size``, ``random_start``,
    ``rfgsm_alpha``) that belong to another attack are dropped, so one set of
    keywords can serve a list of attacks; any other unknown name is an error.
    """
    attack = attacks_lib.get(attack)
    out = {}
    for key, value in params.items():
        if key in _LEGACY_PARAMS:
            owner, key = _LEGACY_PARAMS[key]
            if owner != attack.name:
                continue
        out[key] = value
    return attack.check_params(**out)


def attack_record(attack, model, **params):
    """A JSON-able description of an attack as a sweep runs it.

    ``gradient`` is the quantizer gradient mode of ``model`` (the model the
    attack differentiates): ``straight_through`` is the honest white-box
    setting; ``none`` only shows gradient masking. Gradient-free attacks
    record ``gradient: "not used"``. ``loss`` and the other parameters are the
    attack's own ``describe`` (an ensemble names each component's loss).
    """
    attack = attacks_lib.get(attack)
    params = attack_params(attack.name, params)
    record = {"name": attack.name, "norm": "linf",
              "gradient": quantizer_gradient(model) if attack.uses_gradient else "not used"}
    record.update(attack.describe(params))
    record.setdefault("loss", "not stated (the attack's describe gives none)")
    return record


def accuracy(model, dataset):
    """Top-1 accuracy of a logits model on a (images, labels) dataset."""
    return robustness(model, dataset, [0.0])[0.0]


def robustness(model, dataset, epsilons, attack="fgsm", *, clip=(0.0, 1.0), **params):
    """Top-1 accuracy on clean and attacked inputs for every ε.

    FGSM: the gradient is computed once per batch and reused for every ε.
    Other attacks run once per ε and batch.

    Args:
      model: Keras model returning logits.
      dataset: iterable of (images, labels) batches, e.g. ``tfdisc.data.load``;
        labels as ``tfdisc.checks.check_labels`` accepts them.
      epsilons: ε ≥ 0, a number or a list; 0 (clean) is always included.
      attack: a name of ``tfdisc.attacks.available()`` (``"fgsm"``, ``"pgd"``,
        ``"rfgsm"``, ...).
      clip: valid input range (images outside it are rejected).
      **params: the attack's parameters (``tfdisc.attacks.get(name).params``,
        e.g. ``steps``, ``step_size``, ``random_start`` for PGD, ``alpha`` for
        R-FGSM); the older names ``pgd_steps``, ``pgd_step_size`` and
        ``rfgsm_alpha`` are accepted.

    Returns:
      ``{eps: accuracy}`` (floats, accuracies in [0, 1]), including ``0.0``.

    Raises:
      ValueError: unknown attack or parameter, negative ε, bad labels, images
        outside ``clip``, empty dataset.

    Example:
      >>> robustness(model, ds_test, [0.1, 0.3], attack="pgd", steps=40)
    """
    return sweep(model, dataset, epsilons, attack, clip=clip, **params)["top1"]


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
          attack_model=None, strategy=None, keep_adversarial=0, **params):
    """The general ε sweep behind ``robustness`` and ``transfer``.

    Args:
      top_k: int or tuple of ints; top-k accuracies to measure (e.g. ``(1, 5)``).
      attack_model: model that crafts the examples (default ``model``: white-box).
      strategy: a ``tf.distribute`` strategy whose scope holds the models: every
        batch is split across its replicas (and workers), each attacks and
        counts its share, and the counts are summed across all of them. Give
        every worker the same (unsharded) dataset of global batches.
      keep_adversarial: keep the adversarial images of the first this many
        examples (e.g. candidate counterexamples for ``tfdisc.certify.sweep``);
        not under a ``strategy``.
      Other arguments as ``robustness``.

    Returns:
      dict with ``"top{k}"`` → ``{eps: accuracy}`` for every k, ``"examples"``,
      and ``"zero_gradient_fraction"``: the fraction of examples whose input
      gradient (of ``attack_model``, at the clean input) is exactly zero. Near 1
      it means gradient masking (e.g. ``gradient="none"``): such accuracies are
      not robustness. An ensemble (``autoattack``) run white-box also gives
      ``"stages"``: component → ``{eps: accuracy}``, the top-1 accuracy after
      each component in the order run (cumulative, on the same images; the
      last is the ensemble's, up to argmax ties). With ``keep_adversarial``:
      ``"adversarial"``: ``{eps: float32 images}`` of those examples, ε > 0.

    Progress: the batches are logged (absl INFO: the first, then at most every
    10 s, and the total at the end) with the examples done and the time taken.
    """
    attack = attacks_lib.get(attack)
    params = attack_params(attack.name, params)
    eps_list = _check_epsilons(list(_check_epsilons(epsilons)) + [0.0])
    clip = checks_lib.check_clip(clip)
    attack_model = model if attack_model is None else attack_model
    num_classes = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    ks = _check_top_k(top_k, num_classes)
    # Components are recorded white-box only: in transfer their masks are the source's.
    stages = attack.stage_names(attack_model) if attack_model is model else ()
    progress = _Progress(attack.name, dataset)
    if (isinstance(keep_adversarial, bool) or not isinstance(keep_adversarial, numbers.Integral)
            or keep_adversarial < 0):
        raise ValueError(f"`keep_adversarial` must be an int >= 0, got {keep_adversarial!r}.")
    if keep_adversarial and strategy is not None:
        raise ValueError("`keep_adversarial` is not supported under a `strategy`.")
    kept = {e: [] for e in eps_list if e != 0.0}
    if strategy is not None and attack.graph_safe:  # eager attacks run whole on every worker
        return _distributed_sweep(strategy, model, attack_model, dataset, eps_list, attack,
                                  params, clip, ks, num_classes, stages, progress)
    ks_tensor = tf.constant(ks, tf.int32)
    correct = np.zeros((len(eps_list), len(ks)), np.int64)
    stage_counts = np.zeros((len(eps_list), 1 + len(stages)), np.int64)
    zero_grad = 0
    total = 0
    for x, y in dataset:
        x = checks_lib.check_images(tf.convert_to_tensor(x, tf.float32), clip,
                                     model.input_shape)
        y = checks_lib.check_labels(y, num_classes, x.shape[0])
        grad, _ = _input_gradient(attack_model, x, y)  # x and y are checked above
        zero_grad += int(tf.reduce_sum(tf.cast(
            tf.reduce_all(tf.equal(tf.reshape(grad, [tf.shape(grad)[0], -1]), 0.0), axis=1),
            tf.int64)))
        keep = max(0, min(int(y.shape[0]), keep_adversarial - total))
        if attack.reuses_gradient:
            correct += _fgsm_correct(model, x, y, tf.sign(grad),
                                     tf.constant(eps_list, tf.float32), ks_tensor, clip).numpy()
            for e in kept if keep else ():
                kept[e].append(attacks_lib.perturb(x[:keep], tf.sign(grad[:keep]), e,
                                                   clip).numpy())
        else:
            for i, eps in enumerate(eps_list):
                if eps == 0.0:
                    x_adv = x
                elif stages:
                    x_adv, robust = attack.graph_stages(attack_model, x, y, eps, clip, **params)
                    stage_counts[i] += _stage_counts(robust, stages).numpy()
                else:
                    x_adv = attack.graph(attack_model, x, y, eps, clip, **params)
                correct[i] += _correct(model, x_adv, y, ks_tensor).numpy()
                if keep and eps != 0.0:
                    kept[eps].append(np.asarray(x_adv[:keep], np.float32))
        total += int(y.shape[0])
        progress.batch(total)
    progress.done(total)
    result = _result(correct, zero_grad, total, eps_list, ks, stages, stage_counts)
    if keep_adversarial:
        result["adversarial"] = {e: np.concatenate(v) if v else np.zeros((0,) + tuple(
            model.input_shape[1:]), np.float32) for e, v in kept.items()}
    return result


class _Progress:
    """Per-batch progress of a sweep in the log (absl INFO): the first batch, then at most
    every ``every`` seconds, and the total at the end."""

    def __init__(self, name, dataset, every=10.0):
        self.name, self.start, self.batches, self.every = name, time.time(), 0, every
        self.logged = None
        try:
            size = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else len(dataset)
        except TypeError:  # an iterable without a length
            size = -1
        self.of = f"/{size}" if size >= 0 else ""

    def batch(self, examples):
        self.batches += 1
        now = time.time()
        if self.logged is None or now - self.logged >= self.every:
            self.logged = now
            logging.info("sweep %s: batch %d%s, %d examples, %.0f s", self.name, self.batches,
                         self.of, examples, now - self.start)

    def done(self, examples):
        logging.info("sweep %s: %d examples in %d batch(es), %.1f s", self.name, examples,
                     self.batches, time.time() - self.start)


def _stage_counts(robust, stages):
    """Correct examples before the ensemble and after each component (int64 [1 + stages])."""
    return tf.stack([tf.reduce_sum(tf.cast(robust[k], tf.int64)) for k in ("clean",) + stages])


def _result(correct, zero_grad, total, eps_list, ks, stages=(), stage_counts=None):
    if total == 0:
        raise ValueError("`dataset` yielded no examples.")
    result = {f"top{k}": {e: float(c) / total for e, c in zip(eps_list, correct[:, j])}
              for j, k in enumerate(ks)}
    result["examples"] = int(total)
    result["zero_gradient_fraction"] = float(zero_grad) / total
    attacked = [i for i, e in enumerate(eps_list) if e != 0.0]
    if stages and attacked:
        # At ε = 0 every component leaves the clean model's correct examples (its first column).
        clean = stage_counts[attacked[0], 0]
        result["stages"] = {
            name: {e: float(clean if e == 0.0 else stage_counts[i, j + 1]) / total
                   for i, e in enumerate(eps_list)} for j, name in enumerate(stages)}
    return result


def _distributed_sweep(strategy, model, attack_model, dataset, eps_list, attack, params, clip,
                       ks, num_classes, stages, progress):
    # Check every batch eagerly first (cheap: no model), then attack in the replicas.
    for x, y in dataset:
        x = checks_lib.check_images(tf.convert_to_tensor(x, tf.float32), clip,
                                     model.input_shape)
        checks_lib.check_labels(y, num_classes, x.shape[0])
    kwargs = [attack.resolve(eps, params) for eps in eps_list]
    # Labels in every accepted form become int64 [N] inside the pipeline (the checks ran above).
    dataset = dataset.map(lambda x, y: (x, checks_lib.check_labels(y, num_classes)))

    def replica_counts(x, y):
        x = tf.cast(x, tf.float32)
        grad, _ = attacks_lib.input_gradient(attack_model, x, y)
        flat = tf.reshape(grad, [tf.shape(grad)[0], -1])
        zero = tf.reduce_sum(tf.cast(tf.reduce_all(tf.equal(flat, 0.0), axis=1), tf.int64))
        counts, stage_rows = [], []
        for eps, kw in zip(eps_list, kwargs):
            # The largest float32 <= eps, as Attack.graph passes it: the nearest one can
            # exceed eps by half a float32 step, and the ball would hold for that.
            eps_tensor = tf.constant(projection.round_down(eps, tf.float32), tf.float32)
            stage_row = tf.zeros([1 + len(stages)], tf.int64)
            if eps == 0.0:
                x_adv = x
            elif attack.reuses_gradient:
                x_adv = attacks_lib.perturb(x, grad, eps, clip)
            elif stages:
                x_adv, robust = attack.stages_fn(attack_model, x, y, eps_tensor, clip, **kw)
                stage_row = _stage_counts(robust, stages)
            else:
                x_adv = attack.fn(attack_model, x, y, eps_tensor, clip, **kw)
            counts.append(_correct.python_function(model, x_adv, y, tf.constant(ks, tf.int32)))
            stage_rows.append(stage_row)
        return (tf.stack(counts), zero, tf.cast(tf.shape(y)[0], tf.int64),
                tf.stack(stage_rows))

    @tf.function
    def step(x, y):
        per_replica = strategy.run(replica_counts, args=(x, y))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    correct = np.zeros((len(eps_list), len(ks)), np.int64)
    stage_counts = np.zeros((len(eps_list), 1 + len(stages)), np.int64)
    zero_grad = total = 0
    for x, y in strategy.experimental_distribute_dataset(dataset):
        c, z, n, s = step(x, y)
        correct += c.numpy()
        stage_counts += s.numpy()
        zero_grad += int(z)
        total += int(n)
        progress.batch(total)
    progress.done(total)
    return _result(correct, zero_grad, total, eps_list, ks, stages, stage_counts)


# The attack gradient on inputs the sweep has already checked.
_input_gradient = tf.function(attacks_lib.input_gradient, reduce_retracing=True)


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
        return _correct(model, attacks_lib.perturb(x, direction, eps, clip), y, ks)

    return tf.map_fn(correct_at, eps_tensor, fn_output_signature=tf.int64)


def straight_through_twin(model):
    """A copy of ``model`` sharing its weights whose input quantizer is straight-through.

    For a model built with ``gradient="none"`` (true zero gradient of floor,
    which only masks gradients) this is what an honest white-box attacker
    differentiates: ``sweep(model, ..., attack_model=straight_through_twin(model))``
    measures the real robustness of the same weights.
    """
    from tfdisc.layers import BitDepthQuantization  # pylint: disable=import-outside-toplevel

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, BitDepthQuantization):
            config["gradient"] = "straight_through"
        return layer.__class__.from_config(config)

    twin = tf.keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin
