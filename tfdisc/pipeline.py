"""One experiment run as a sequence of library calls: build → train → evaluate → record.

``Config`` is a plain, validated description of a run (what the experiment
binaries' flags turn into, and what a keras-tuner ``build(hp)`` or a script can
make directly; defined in ``tfdisc.run_config``, re-exported here). Each step is a public function of its own; ``run`` chains them
and writes ``results.json`` (schema: ``tfdisc.results``) and the model into an
output directory::

    cfg = tfdisc.pipeline.Config(dataset="mnist", model="fcn2", precision="binary",
                                 bits=2, epochs=1, data_dir="../shared/datasets/mnist")
    record = tfdisc.pipeline.run(cfg, "out/fcn2_binary_2b")
"""
import contextlib
import dataclasses
import os
import shutil
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tfdisc import data as data_lib
from tfdisc import distribution, evaluate, models, quantize, results, run_dir, training
from tfdisc import layers as tfdisc_layers
from tfdisc.run_dir import (OUTPUT_FILES, BackupError, OutputDirError, load_model,
                            model_path, prepare_output_dir, save_model)
from tfdisc._version import __version__
from tfdisc.run_config import Config

__all__ = ["BackupError", "Config", "OUTPUT_FILES", "OutputDirError", "build_model",
           "compile_model", "evaluate_attacks", "load_data", "load_model", "masking_check",
           "model_path", "prepare_output_dir", "record", "run", "train", "transfer_check"]

# ----------------------------------------------------------------- steps

def load_data(cfg):
    """``(x_train, y_train, x_test, y_test)`` uint8/int64 arrays, limits applied."""
    x_train, y_train = data_lib.load_arrays(cfg.dataset, "train", data_dir=cfg.data_dir)
    x_test, y_test = data_lib.load_arrays(cfg.dataset, "test", data_dir=cfg.data_dir)
    x_train, y_train = x_train[:cfg.train_limit], y_train[:cfg.train_limit]
    x_test, y_test = x_test[:cfg.test_limit], y_test[:cfg.test_limit]
    for split, y in (("train", y_train), ("test", y_test)):
        if len(y) == 0:
            raise ValueError(f"The {cfg.dataset} {split} split has no examples.")
    return x_train, y_train, x_test, y_test


def build_model(cfg, gradient=None):
    """The zoo model of ``cfg`` (optionally with another quantizer gradient).

    ``cfg.input_edges="data"`` must be resolved first (``resolve_edges``).
    """
    if isinstance(cfg.input_edges, str):
        raise ValueError("input_edges='data' is chosen from the training images: call "
                         "resolve_edges(cfg, x_train) before build_model.")
    shape, classes = data_lib.info(cfg.dataset)
    return models.build(cfg.model, precision=cfg.precision, input_bits=cfg.bits,
                        num_classes=classes, input_shape=shape, width=cfg.width,
                        depth=cfg.depth, gradient=gradient or cfg.gradient,
                        input_edges=cfg.input_edges)


def edges_eps(cfg):
    """The ε at which ``input_edges="data"`` chooses its edges: ``train_eps``, else the largest
    evaluation ε."""
    return cfg.train_eps if cfg.train_eps is not None else max(cfg.epsilons)


def resolve_edges(cfg, x_train):
    """``cfg`` with ``input_edges="data"`` replaced by the edges chosen from ``x_train``
    (``tfdisc.quantize.edges_from_data`` at ``edges_eps(cfg)``); other configs unchanged."""
    if cfg.input_edges != "data":
        return cfg
    edges = quantize.edges_from_data(x_train, cfg.bits, edges_eps(cfg))
    return dataclasses.replace(cfg, input_edges=edges)


def quantizer_record(model, requested):
    """results.json's ``quantizer``: eq. 2 or the custom edges, and where edges came from."""
    layer = next((layer for layer in model.layers
                  if isinstance(layer, tfdisc_layers.BitDepthQuantization)), None)
    if layer is None:
        return None
    rec = layer.describe()
    if rec["name"] == "custom_edges":
        rec["chosen_from"] = requested
    return rec


def init_weights(model, cfg):
    """Copies the weights of ``cfg.init_from`` into ``model``.

    The saved model must have the input bits, model and precision of ``cfg``
    (``tfdisc.run_dir.check_saved_model``); only its quantizer's gradient may
    differ (re-evaluating under ``gradient="none"`` is what ``init_from`` is for).

    Raises:
      ValueError: no loadable model, or one that does not match ``cfg``.
    """
    init = load_model(cfg.init_from, "init_from")
    run_dir.check_saved_model(init, f"init_from model {init.name} ({cfg.init_from})",
                              model=cfg.model, precision=cfg.precision, bits=cfg.bits,
                              edges=cfg.input_edges)
    try:
        model.set_weights(init.get_weights())
    except ValueError as e:
        raise ValueError(f"init_from model {init.name} does not match {model.name}: {e}") \
            from None


def compile_model(model, steps, learning_rate):
    """Adam with a cosine-decayed learning rate, sparse cross-entropy on logits."""
    schedule = tf.keras.optimizers.schedules.CosineDecay(learning_rate, max(steps, 1))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def global_batch(batch_size, strategy=None):
    """The global batch: ``batch_size`` per replica times the replicas in sync."""
    return batch_size * (strategy.num_replicas_in_sync if strategy is not None else 1)


def train(model, cfg, x_train, y_train, callbacks=(), strategy=None):
    """Trains ``model`` (adversarially if ``cfg.adv_train``); returns (seconds, adv params).

    Under ``strategy`` (whose scope must hold ``model``), ``cfg.batch_size`` is
    per replica and every step takes a global batch across all replicas;
    Keras shards the data per worker.
    """
    batch = global_batch(cfg.batch_size, strategy)
    if batch > len(y_train):  # from_arrays makes one batch of all (tf.data would reserve 'batch')
        logging.warning("The batch size %d exceeds the %d training examples: every step trains "
                        "on all %d (full-batch training).", batch, len(y_train), len(y_train))
    train_ds = data_lib.from_arrays(x_train, y_train, batch_size=batch, shuffle=True,
                                    seed=cfg.seed)
    trainer, adv_params = model, None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        steps = int(train_ds.cardinality().numpy())
        if cfg.adv_train:
            trainer = training.AdversarialTraining(model, cfg.adversarial_eps,
                                                   adv_ratio=cfg.adv_ratio)
            adv_params = trainer.describe()
        if cfg.certified_train:
            from tfdisc import certify  # pylint: disable=import-outside-toplevel

            trainer = certify.CertifiedTraining.for_epochs(
                model, cfg.adversarial_eps, steps_per_epoch=steps, epochs=max(cfg.epochs, 1),
                bounds=cfg.certified_train_bounds,
                adversary=(training.RfgsmAdversary()
                           if cfg.certified_train_mix == "adversarial" else None))
            adv_params = trainer.describe()
        if trainer is not model:  # wrappers must be built for BackupAndRestore to restore them
            trainer(tf.zeros((1,) + tuple(x_train.shape[1:]), tf.float32), training=False)
        compile_model(trainer, steps * cfg.epochs, cfg.learning_rate)
        # Keras's default ("auto" = "sum") adds up the workers' loss and accuracy in the progress
        # bar and logs (accuracy 1.92 with two workers): each shows its own replica's instead.
        trainer.distribute_reduction_method = "first"
    start = time.time()
    if cfg.epochs:
        verbose = cfg.verbose if cfg.verbose == "auto" else int(cfg.verbose)
        diverged = training.StopOnNonFiniteLoss(  # a NaN run must not be recorded as a result
            hint=f"Lower the learning rate (it is {cfg.learning_rate:g}), and check the data.")
        trainer.fit(train_ds, epochs=cfg.epochs, callbacks=list(callbacks) + [diverged],
                    verbose=verbose)
    return time.time() - start, adv_params


def evaluate_attacks(model, cfg, x_test, y_test, *, attack_model=None, top_k=None,
                     attacks=None, strategy=None, adversarial=None, prefix=""):
    """Runs every attack of ``cfg`` on the test arrays; returns ``{name: attacks entry}``.

    Under ``strategy`` every batch is split across its replicas and workers. Given a dict
    ``adversarial`` (and no strategy), each attack's adversarial images of the examples
    ``--certify`` checks go into it as ``{prefix + name: {eps: images}}``: the certifier's
    candidate counterexamples.
    """
    top_k = cfg.top_k if top_k is None else top_k
    entries = {}
    keep_total = (0 if adversarial is None or strategy is not None or not cfg.certify
                  else len(y_test) if not cfg.certify_limit else cfg.certify_limit)
    for name in attacks or cfg.attacks:
        limit = cfg.attack_limits.get(name)
        params = cfg.attack_params.get(name, {})
        n = len(y_test) if limit is None else min(limit, len(y_test))
        # Attacks on a prefix of the test set (--pgd_test_limit, --search_test_limit,
        # --certify_test_limit): every attack also records its accuracy on those same
        # prefixes, so that attacks and certification compare like with like.
        cuts = sorted({c for c in _prefix_limits(cfg) if c < n}) + [n]
        start, parts, lo = time.time(), [], 0
        for hi in cuts:
            test = data_lib.from_arrays(x_test[lo:hi], y_test[lo:hi],
                                        batch_size=global_batch(cfg.eval_batch_size, strategy))
            parts.append(evaluate.sweep(model, test, cfg.epsilons, name, top_k=top_k,
                                        attack_model=attack_model, strategy=strategy,
                                        keep_adversarial=max(0, min(keep_total, hi) - lo),
                                        **params))
            lo = hi
        if keep_total:
            kept = [p.pop("adversarial") for p in parts if "adversarial" in p]
            adversarial[prefix + name] = {e: np.concatenate([k[e] for k in kept])
                                          for e in (kept[0] if kept else {})}
        result = _merge_sweeps(parts)
        entries[name] = results.attack_entry(
            evaluate.attack_record(name, attack_model or model, **params), result,
            cfg.epsilons, top_k)
        entries[name]["seconds"] = round(time.time() - start, 2)
        if len(parts) > 1:
            entries[name]["prefixes"] = {
                str(hi): {"examples": hi, "clean_accuracy": r["top1"][0.0],
                          "adversarial_accuracy": results.epsilon_dict(r["top1"], cfg.epsilons)}
                for hi, r in ((hi, _merge_sweeps(parts[:i + 1]))
                              for i, hi in enumerate(cuts[:-1]))}
    return entries


def _prefix_limits(cfg):
    limits = [v for v in cfg.attack_limits.values() if v]
    if cfg.certify and cfg.certify_limit:
        limits.append(cfg.certify_limit)
    return limits


def _merge_sweeps(parts):
    """One ``evaluate.sweep`` result from results on consecutive slices of the test set."""
    total = sum(p["examples"] for p in parts)
    merged = {"examples": total, "zero_gradient_fraction": sum(
        p["zero_gradient_fraction"] * p["examples"] for p in parts) / total}
    for key in parts[0]:
        if key.startswith("top"):
            merged[key] = {e: sum(p[key][e] * p["examples"] for p in parts) / total
                           for e in parts[0][key]}
    if "stages" in parts[0]:  # an ensemble's accuracy after each component
        merged["stages"] = {
            name: {e: sum(p["stages"][name][e] * p["examples"] for p in parts) / total
                   for e in acc} for name, acc in parts[0]["stages"].items()}
    return merged


def transfer_check(model, source, source_path, cfg, x_test, y_test, output_dir, strategy=None,
                   adversarial=None):
    """Black-box transfer from ``source`` with the primary attack; the ``transfer`` block.
    ``adversarial``: as ``evaluate_attacks`` (under ``transfer:``)."""
    t = evaluate_attacks(model, cfg, x_test, y_test, attack_model=source, top_k=(1,),
                         attacks=cfg.attacks[:1], strategy=strategy, adversarial=adversarial,
                         prefix="transfer:")[cfg.attacks[0]]
    return {
        "source": results.portable_path(source_path, output_dir),
        "source_model": source.name,
        "source_gradient": evaluate.quantizer_gradient(source),
        "attack": cfg.attacks[0],
        "attack_params": {k: v for k, v in t.items() if k not in (
            "adversarial_accuracy", "clean_accuracy", "examples", "zero_gradient_fraction",
            "seconds", "prefixes")},
        "examples": t["examples"],
        "clean_accuracy": t["clean_accuracy"],
        "adversarial_accuracy": t["adversarial_accuracy"],
        **({"prefixes": t["prefixes"]} if "prefixes" in t else {}),
    }


def masking_check(model, cfg, x_test, y_test, strategy=None, adversarial=None):
    """For a ``gradient="none"`` model: the same weights attacked straight-through.

    The zero gradient of floor only masks gradients; this records what a real
    attacker gets. Returns None for straight-through models. ``adversarial``: as
    ``evaluate_attacks`` (under ``straight_through:``; the twin computes what the
    model computes, so its images are the model's candidates too).
    """
    if evaluate.quantizer_gradient(model) != "none":
        return None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        twin = evaluate.straight_through_twin(model)
    return evaluate_attacks(twin, cfg, x_test, y_test, top_k=(1,), strategy=strategy,
                            adversarial=adversarial, prefix="straight_through:")


def certify_test_set(model, cfg, x_test, y_test, candidates=None):
    """The ``certified`` block: certified accuracy per ε (``tfdisc.certify.sweep``), with the
    attacks' adversarial images (``evaluate_attacks``'s ``adversarial``) as candidate
    counterexamples."""
    from tfdisc import certify  # pylint: disable=import-outside-toplevel

    limit = cfg.certify_limit
    test = data_lib.from_arrays(x_test[:limit], y_test[:limit], batch_size=cfg.eval_batch_size)
    start = time.time()
    block = certify.sweep(model, test, cfg.epsilons, method=cfg.certify_method,
                          solver=cfg.certify_solver, time_limit=cfg.certify_time_limit,
                          candidates=candidates or None)
    block["seconds"] = round(time.time() - start, 2)
    return {k: ({results.epsilon_key(e): v for e, v in val.items()} if isinstance(val, dict)
                and all(isinstance(e, float) for e in val) else val)
            for k, val in block.items()}


def _training_method(params):
    if not params:
        return ""
    if params["method"] == "rfgsm":
        return (f", R-FGSM adversarial training eps {params['eps']:.4g} "
                f"alpha {params['alpha']:.4g} mix {params['adv_ratio']:g}")
    return (f", IBP certified training eps {params['eps']:.4g} ramped over "
            f"{params['ramp_steps']} steps from step {params['ramp_start']}")


def record(cfg, model, entries, *, output_dir, train_seconds, eval_seconds, adv_params,
           transfer, masked, command, train_examples, test_examples, strategy=None,
           resumed_from_epoch=None):
    """The results.json record of a finished run (see ``tfdisc.results``)."""
    primary = entries[cfg.attacks[0]]
    width, depth = cfg.model_width, cfg.model_depth
    init_from = results.portable_path(cfg.init_from, output_dir)
    data_source = cfg.data_dir or os.environ.get("TFDISC_DATA_DIR")
    rec = {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "precision": cfg.precision,
        "bits": cfg.bits,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "attack": cfg.attacks[0],
        "attack_params": {k: v for k, v in primary.items() if k not in (
            "adversarial_accuracy", "clean_accuracy", "top5", "seconds", "prefixes")},
        "gradient": evaluate.quantizer_gradient(model),
        "adv_train": bool(cfg.adv_train),
        "adv_train_params": adv_params,
        "clean_accuracy": primary["clean_accuracy"],
        "adversarial_accuracy": primary["adversarial_accuracy"],
        "attacks": entries,
        "transfer": transfer,
        "straight_through_check": masked,
        "init_from": init_from,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "width": width,
        "depth": depth,
        "schedule": (f"weights from {init_from}, then " if cfg.init_from else "") + (
            f"{cfg.epochs} epochs, Adam lr {cfg.learning_rate:g} cosine-decayed, "
            f"batch {cfg.batch_size}, width {width}, depth {depth}, "
            f"{train_examples} training examples"
            + _training_method(adv_params)),
        "data": {
            "source": results.portable_path(data_source, output_dir) or "tensorflow-datasets",
            "train_examples": int(train_examples),
            "test_examples": int(test_examples),
        },
        "distribution": {
            "strategy": cfg.distribute,
            "workers": distribution.num_workers() if cfg.distribute == "multi_worker" else 1,
            "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
            "batch_size_per_replica": cfg.batch_size,
            "global_batch_size": global_batch(cfg.batch_size, strategy),
        },
        "resumed": ({"from_epoch": resumed_from_epoch,
                     "note": (f"resumed from the backup after epoch {resumed_from_epoch}"
                              + (": training had finished, only the evaluation was redone"
                                 if resumed_from_epoch == cfg.epochs else ""))}
                    if resumed_from_epoch else None),
        "command": command,
        "tfdisc_version": __version__,
    }
    if 5 in cfg.top_k:
        rec["top5"] = primary["top5"]
    return rec


def run(cfg, output_dir, *, command=None, callbacks=None, strategy=None):
    """Builds, trains, evaluates and records one run; returns the results record.

    ``output_dir`` must exist (see ``prepare_output_dir``). Writes, each
    atomically, ``model.keras`` (if ``cfg.save_model``) as soon as training
    ends, then the ``cfg.export`` formats, then ``results.json`` last: a
    directory with ``results.json`` holds a finished run with all its files.
    With ``cfg.backup``, Keras ``BackupAndRestore`` keeps the training state in
    ``cfg.backup_dir`` (default ``output_dir/backup``), which records the
    configuration it belongs to (another configuration's backup is refused,
    see ``tfdisc.run_dir.prepare_backup``) and is deleted only after
    ``results.json`` is written. So the same call after a kill resumes from
    the last finished epoch, or, if training had finished, skips training and
    redoes only the evaluation. ``callbacks`` default
    to a TensorBoard log under ``output_dir/logs``. Under a multi-worker
    ``strategy`` (default: ``make_strategy(cfg.distribute)``) only the chief
    writes into ``output_dir``; the other workers write to scratch directories
    under it and return their (identical) record. ``cfg.export`` formats are
    exported into ``output_dir/export`` (see ``tfdisc.export``).
    """
    if strategy is None:  # "none" gives None (and warns of an unused TF_CONFIG)
        strategy = distribution.make_strategy(cfg.distribute,
                                              connect_timeout=cfg.connect_timeout)
    write_dir = distribution.worker_dir(output_dir, cfg.distribute)
    os.makedirs(write_dir, exist_ok=True)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    tf.keras.utils.set_random_seed(cfg.seed)
    source = load_model(cfg.transfer_from, "transfer_from") if cfg.transfer_from else None
    x_train, y_train, x_test, y_test = load_data(cfg)
    requested_edges = cfg.input_edges
    cfg = resolve_edges(cfg, x_train)
    with scope:
        model = build_model(cfg)
        if cfg.init_from:
            init_weights(model, cfg)
    if source is not None and tuple(source.input_shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(
            f"transfer_from model takes inputs of shape {source.input_shape[1:]} but "
            f"{cfg.model} on {cfg.dataset} takes {model.input_shape[1:]}.")
    if cfg.certify:  # a model the certifier cannot bound is refused before training, not after
        from tfdisc import certify  # pylint: disable=import-outside-toplevel

        certify.check_model(model)
        if cfg.certify_method == "exact":  # the exact verifier's model form and solver, too
            certify.check_exact(model, cfg.certify_solver)
    if callbacks is None:
        callbacks = [tf.keras.callbacks.TensorBoard(log_dir=os.path.join(write_dir, "logs"))]
    backup_dir = cfg.backup_dir or os.path.join(output_dir, "backup")
    use_backup = bool(cfg.backup and cfg.epochs)
    resume_log, trained_before = None, None
    if use_backup:
        if run_dir.prepare_backup(backup_dir, cfg.identity(),
                                  write=distribution.is_chief(cfg.distribute),
                                  recorded_elsewhere=not cfg.backup_dir):
            trained_before = run_dir.read_backup_json(backup_dir, _TRAINED)
        # Kept until results.json is written: a kill during evaluation resumes at evaluation.
        backup = distribution.backup_callbacks(backup_dir, delete_checkpoint=False)
        resume_log = backup[-1]
        callbacks = list(callbacks) + backup
    if trained_before is not None:  # killed after training: the backup holds the final epoch
        print(f"Training had finished before the run stopped: evaluating the model saved in "
              f"the backup ({backup_dir}).", flush=True)
    train_seconds, adv_params = train(model, cfg, x_train, y_train, callbacks, strategy)
    resumed_from_epoch = resume_log.resumed_from_epoch if resume_log else None
    if trained_before is not None:
        train_seconds = trained_before.get("train_seconds", train_seconds)
        resumed_from_epoch = cfg.epochs
    elif use_backup and distribution.is_chief(cfg.distribute):
        run_dir.write_backup_json(backup_dir, _TRAINED, {"train_seconds": train_seconds})
    if cfg.save_model:  # before evaluation, so that a long evaluation cannot lose it
        save_model(model, write_dir)

    start = time.time()
    adversarial = {}  # the attacks' images of the examples --certify checks
    entries = evaluate_attacks(model, cfg, x_test, y_test, strategy=strategy,
                               adversarial=adversarial)
    transfer = (transfer_check(model, source, cfg.transfer_from, cfg, x_test, y_test,
                               output_dir, strategy, adversarial) if source is not None else None)
    masked = masking_check(model, cfg, x_test, y_test, strategy, adversarial)
    certified = (certify_test_set(model, cfg, x_test, y_test, adversarial) if cfg.certify
                 else None)
    del adversarial
    eval_seconds = time.time() - start

    rec = record(cfg, model, entries, output_dir=output_dir, train_seconds=train_seconds,
                 eval_seconds=eval_seconds, adv_params=adv_params, transfer=transfer,
                 masked=masked, command=command, train_examples=len(y_train),
                 test_examples=len(y_test), strategy=strategy,
                 resumed_from_epoch=resumed_from_epoch)
    rec["quantizer"] = quantizer_record(model, (
        f"training images (tfdisc.quantize.edges_from_data, eps {edges_eps(cfg):.6g})"
        if requested_edges == "data" else "given"))
    if certified is not None:
        rec["certified"] = certified
    if cfg.export and distribution.is_chief(cfg.distribute):
        # An unfinished run's export dir is this run's own partial export: redo it whole.
        shutil.rmtree(os.path.join(write_dir, "export"), ignore_errors=True)
        rec["export"] = export(model, write_dir, cfg.export, input_dtype=cfg.export_input_dtype,
                               float_weights=cfg.export_float_weights)
    # Written last (atomically): results.json marks a finished run with everything in place.
    results.write_json(os.path.join(write_dir, "results.json"), rec)
    if use_backup and distribution.is_chief(cfg.distribute):
        run_dir.discard_backup(backup_dir)
    return rec


# Kept in the backup once training has ended: a rerun after a kill skips to evaluation.
_TRAINED = "trained.json"


def export(model, output_dir, formats, *, input_dtype="float32", float_weights="float32"):
    """Exports ``model`` into ``output_dir/export`` (``tfdisc.export``); ``{format: path}``.

    Paths are relative to ``output_dir``.
    """
    from tfdisc import export as export_lib  # pylint: disable=import-outside-toplevel

    paths = export_lib.export(model, os.path.join(output_dir, "export"), formats,
                              input_dtype=input_dtype, float_weights=float_weights)
    return {fmt: results.portable_path(path, output_dir) for fmt, path in paths.items()}
