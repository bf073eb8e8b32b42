"""Flags of every experiment binary, turned into a ``tfdisc.pipeline.Config`` in one place.

A binary defines nothing but its defaults::

    from absl import app
    from tfdisc.experiments import common

    def main(argv):
        common.run(argv, dataset="mnist")

    if __name__ == "__main__":
        common.set_defaults(model="fcn2", epsilons="0.1,0.2,0.3")
        app.run(main)

``config()`` is the only reader of FLAGS; the run itself is
``tfdisc.pipeline.run`` (build → train → evaluate → record), the schema and
the printed table are ``tfdisc.results``.
"""
import math
import os
import sys

from absl import app, flags, logging

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow loads)

from tfdisc import attacks as attacks_lib
from tfdisc import data as data_lib
from tfdisc import distribution, evaluate, models, pipeline, quantize, results, training
from tfdisc.export import cli as export_cli  # --input_dtype, --float_weights of --export
from tfdisc.export import formats as export_formats

FLAGS = flags.FLAGS

# Re-exported for the binaries and older callers.
parse_epsilon = results.parse_epsilon
epsilon_key = results.epsilon_key
format_table = results.format_table

flags.DEFINE_enum("model", "fcn2", models.available(), "Model of tfdisc.models.")
flags.DEFINE_enum("precision", "full", list(models.PRECISIONS),
                  "Parameter precision: full (float twin), binary (BNN) or xnor.")
flags.DEFINE_bool("binary", False, "Shorthand for --precision=binary.")
flags.DEFINE_integer("bits", 8, "Input bit depth (paper eq. 2), 1..8.")
flags.DEFINE_list("input_edges", None,
                  "Custom bin edges of the input quantizer instead of eq. 2's (a separate "
                  "option; results.json 'quantizer' names it): 2**bits − 1 increasing "
                  "intensities in (0, 255], comma-separated, or 'data' to place them away from "
                  "where the training images' pixels concentrate "
                  "(tfdisc.quantize.edges_from_data at --train_eps, else the largest ε).")
flags.DEFINE_integer("epochs", 10, "Training epochs (0 only with --init_from: re-evaluate).")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 500, "Evaluation batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (cosine-decayed to 0).")
flags.DEFINE_list("epsilons", "0.1,0.2,0.3",
                  "Attack budgets ε in the [0, 1] input scale; fractions like 8/255 accepted.")
flags.DEFINE_list("attack", "fgsm",
                  f"Evaluation attack(s), comma-separated, from {', '.join(attacks_lib.available())}. The first is the "
                  "primary one (results.json keys attack/adversarial_accuracy); every one is "
                  "recorded under results.json 'attacks'.")
flags.DEFINE_integer("pgd_steps", evaluate.DEFAULT_PGD_STEPS, "PGD iterations (≥ 1).")
flags.DEFINE_string("pgd_step_size", None,
                    "PGD step size in the [0, 1] input scale (fractions like 2/255 accepted); "
                    "default 2.5·ε/steps for each ε (Madry et al.).")
flags.DEFINE_integer("pgd_test_limit", None,
                     "Run PGD on the first N test examples only (it costs pgd_steps × FGSM); "
                     "results record the number of examples of every attack.")
flags.DEFINE_integer("search_test_limit", None,
                     "Run the gradient-free quantized_search attack on the first N test examples "
                     "only (it costs restarts × iterations batched forward passes per ε).")
flags.DEFINE_integer("autoattack_test_limit", None,
                     "Run AutoAttack and its components (autoattack, apgd_ce, apgd_t, square) on "
                     "the first N test examples only (the standard ensemble costs about 1000 "
                     "forward passes and 1000 gradients per example).")
flags.DEFINE_integer("certify_test_limit", None,
                     "Certify (--certify) the first N test examples only; the `certified` block "
                     "records its number of examples.")
flags.DEFINE_bool("adv_train", False,
                  "Adversarial training with R-FGSM examples made on the fly (tfdisc.training).")
flags.DEFINE_string("train_eps", None,
                    "R-FGSM ε of adversarial training (fractions like 8/255 accepted); default "
                    "0.3 for MNIST, 8/255 for CIFAR and ImageNet (paper sec. IV).")
flags.DEFINE_bool("certified_train", False,
                  "Certified training: interval-bound (IBP) loss mixed with cross-entropy, ε ramp "
                  "(Gowal et al. 2018) to --train_eps (tfdisc.certify.CertifiedTraining).")
flags.DEFINE_enum("certified_train_bounds", "ibp", ["ibp", "crown_ibp"],
                  "Bounds of --certified_train: ibp (interval bounds) or crown_ibp (CROWN-IBP, "
                  "Zhang et al. 2020; full-precision Dense/Conv2D/BatchNorm/ReLU chains).")
flags.DEFINE_enum("certified_train_mix", "clean", list(training.CERTIFIED_TRAIN_MIXES),
                  "What κ weighs in --certified_train's loss κ·CE + (1 − κ)·CE(bound): the clean "
                  "images (Gowal et al. 2018) or R-FGSM images at the scheduled ε (MTL-IBP, De "
                  "Palma et al. 2024), for models certified by the complete verifier.")
flags.DEFINE_bool("certify", False, "Certify the test set at every --epsilons "
                  "(tfdisc.certify): results.json gets a `certified` block.")
flags.DEFINE_enum("certify_method", "auto", ["auto", "exact", "branch"],
                  "--certify's complete method: auto = the exact verifier where it applies (dense "
                  "BNNs; full-precision chains of Dense/Conv2D/BatchNorm/ReLU layers, milp only; "
                  "with `pip install tfdisc[verify]`), else branch and bound; exact requires it; "
                  "branch is branch and bound only (tfdisc.certify.certify).")
flags.DEFINE_enum("certify_solver", "milp", ["milp", "sat"],
                  "The exact verifier's solver: milp (HiGHS) or sat (python-sat Minicard; BNNs "
                  "only).")
flags.DEFINE_float("certify_time_limit", 10.0,
                   "Seconds per example and ε for the exact verifier (then `unknown`).")
flags.DEFINE_float("adv_ratio", 0.5,
                   "Fraction of each training batch replaced by R-FGSM examples, in [0, 1].")
flags.DEFINE_string("transfer_from", None,
                    "Black-box transfer: a saved source model (a .keras file, or a directory "
                    "holding model.keras) whose adversarial examples are evaluated on the "
                    "trained model too (results.json 'transfer').")
flags.DEFINE_bool("save_model", True, "Save the trained model as OUTPUT_DIR/model.keras.")
flags.DEFINE_list("export", [], "Export the trained model into OUTPUT_DIR/export in these "
                  "formats of tfdisc.export.formats "
                  f"({', '.join(export_formats.names())}).")
flags.register_validator("export", lambda v: export_cli.check_formats(v, allow_empty=True),
                         "--export: unknown export format")
flags.DEFINE_string("init_from", None,
                    "Start from the weights of a saved model of the same architecture (a .keras "
                    "file or a directory holding model.keras); with --epochs=0 this re-evaluates "
                    "a trained model, e.g. under another --gradient or --attack.")
flags.DEFINE_enum("gradient", "straight_through", list(quantize.GRADIENTS),
                  "Gradient of the input quantizer seen by the attacker: straight_through "
                  "(BPDA, the honest white-box setting) or none (true zero gradient of floor: "
                  "shows gradient masking only).")
flags.DEFINE_string("data_dir", None, "Local data directory (default: $TFDISC_DATA_DIR, then "
                    "tensorflow-datasets).")
flags.DEFINE_string("output_dir", None, "Where results.json, flags.json, the model and "
                    "TensorBoard logs are written; default runs/<dataset>_<model>_<precision>_"
                    "<bits>b (with _1, _2, ... if taken). An existing run there is refused "
                    "unless --overwrite.")
flags.DEFINE_bool("overwrite", False, "Replace the results of an earlier run in --output_dir.")
flags.DEFINE_enum("distribute", "none", list(distribution.KINDS),
                  "tf.distribute strategy: none, mirrored (local devices) or multi_worker "
                  "(MultiWorkerMirroredStrategy, cluster from TF_CONFIG, ring collectives). "
                  "--batch_size is per replica; results.json records the global batch.")
flags.DEFINE_float("connect_timeout", 120.0, "Seconds a multi-worker run waits for its peers "
                   "(and for each collective) before failing with an error.")
flags.DEFINE_bool("backup", True, "Keep the training state (Keras BackupAndRestore) so that the "
                  "same command after a kill resumes from the last finished epoch.")
flags.DEFINE_string("backup_dir", None, "Where the training state is kept; default "
                    "OUTPUT_DIR/backup (deleted once training finishes).")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling).")
flags.DEFINE_integer("width", None, "Model width (see tfdisc.models.build); default per model.")
flags.DEFINE_integer("depth", None, "Model depth (see tfdisc.models.build); default per model.")
flags.DEFINE_integer("train_limit", None, "Train on the first N training examples only "
                     "(reduced schedules, smoke tests).")
flags.DEFINE_integer("test_limit", None, "Evaluate on the first N test examples only.")
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras fit verbosity.")



def _valid_epsilon(text):
    try:
        parse_epsilon(text)
    except ValueError:
        return False
    return True


flags.register_validator(
    "epsilons", lambda values: all(_valid_epsilon(v) for v in values),
    message="--epsilons must be finite non-negative numbers or fractions like 8/255.")
flags.register_validator("attack", lambda values: bool(values) and all(
    v in attacks_lib.available() for v in values),
    message=f"--attack must be a comma-separated list from {', '.join(attacks_lib.available())}.")
flags.register_validator("pgd_steps", lambda v: v is not None and v >= 1,
                         message="--pgd_steps must be ≥ 1.")
flags.register_validator("pgd_step_size", lambda v: v is None or (
    _valid_epsilon(v) and parse_epsilon(v) > 0), message="--pgd_step_size must be a number > 0.")
flags.register_validator(
    "train_eps", lambda v: v is None or _valid_epsilon(v),
    message="--train_eps must be a finite non-negative number or fraction like 8/255.")
flags.register_validator("adv_ratio", lambda v: 0.0 <= v <= 1.0,
                         message="--adv_ratio must be in [0, 1].")


for _name in ("train_limit", "test_limit", "pgd_test_limit", "search_test_limit",
              "autoattack_test_limit", "certify_test_limit"):
    flags.register_validator(_name, lambda v: v is None or v >= 1,
                             message=f"--{_name} must be a positive number of examples.")
for _name in ("batch_size", "eval_batch_size"):
    flags.register_validator(_name, lambda v: v >= 1, message=f"--{_name} must be ≥ 1.")
flags.register_validator("epochs", lambda v: v >= 0, message="--epochs must be ≥ 0.")
flags.register_validator("bits", lambda v: 1 <= v <= 8, message="--bits must be in 1..8.")
flags.register_validator("learning_rate", lambda v: math.isfinite(v) and v > 0,
                         message="--learning_rate must be a finite number > 0.")
flags.register_validator("connect_timeout", lambda v: math.isfinite(v) and v > 0,
                         message="--connect_timeout must be a finite number of seconds > 0.")
flags.register_validator("seed", lambda v: 0 <= v < 2 ** 32,
                         message="--seed must be in 0..2**32-1 (numpy's seed range).")
flags.register_validator("width", lambda v: v is None or v >= 1, message="--width must be ≥ 1.")
flags.register_validator("depth", lambda v: v is None or v >= 1, message="--depth must be ≥ 1.")


def _plain_errors():
    from tfdisc import certify  # pylint: disable=import-outside-toplevel

    return ((flags.Error, "Flags parsing error"), (data_lib.DataError, "Data error"),
            (distribution.DistributionError, "Distribution error"),
            (training.NonFiniteLossError, "Training diverged"),
            (certify.UnsupportedLayerError, "Cannot certify this model"))


def show_errors_plainly():
    """Makes this program print an error of the user's input as its message alone (exit 1).

    absl prints a flag that fails its validator as ``FATAL Flags parsing error: …``
    and a usage hint; errors found once the run starts (flags that contradict each
    other, the data directory, TF_CONFIG, a diverging run) are shown the same way
    instead of after a traceback. Other exceptions keep their traceback, and so does
    every exception with ``TFDISC_VERBOSE=1``.
    """
    previous = sys.excepthook
    if getattr(previous, "tfdisc_plain", False):
        return

    def hook(kind, error, trace):
        heading = next((h for cls, h in _plain_errors() if isinstance(error, cls)), None)
        if heading is None or os.environ.get("TFDISC_VERBOSE", "").strip() not in ("", "0"):
            previous(kind, error, trace)
            return
        sys.stderr.write(f"FATAL {heading}: {error}\n")
        if isinstance(error, flags.Error):
            sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")

    hook.tfdisc_plain = True
    sys.excepthook = hook


def set_defaults(**defaults):
    """Per-binary flag defaults, e.g. ``set_defaults(model="alexnet_cifar")``."""
    for name, value in defaults.items():
        FLAGS.set_default(name, value)


def resolve_precision():
    if FLAGS.binary:
        if FLAGS["precision"].present and FLAGS.precision != "binary":
            raise flags.ValidationError(
                f"--binary conflicts with --precision={FLAGS.precision}; pass only one.")
        return "binary"
    return FLAGS.precision


def input_edges():
    """--input_edges as Config takes it: None, "data" or a tuple of numbers."""
    values = FLAGS.input_edges
    if not values:
        return None
    if values == ["data"]:
        return "data"
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise flags.ValidationError(f"--input_edges must be 'data' or comma-separated numbers, "
                                    f"got {','.join(values)!r}.") from None


def train_eps(dataset):
    """--train_eps, or the paper's default for ``dataset``."""
    value = None if FLAGS.train_eps is None else parse_epsilon(FLAGS.train_eps)
    return training.adversarial_eps(dataset, value)


# The flags behind the attacks' parameters and test-set limits (``attack_settings``).
ATTACK_FLAGS = ("pgd_steps", "pgd_step_size", "pgd_test_limit", "search_test_limit",
                "autoattack_test_limit")


def attack_settings(values):
    """``(attack_params, attack_limits)`` of a ``Config`` from the values of ``ATTACK_FLAGS``
    (a dict, e.g. a run's ``flags.json``)."""
    step = values["pgd_step_size"]
    params = {"pgd": {"steps": values["pgd_steps"],
                      "step_size": None if step is None else parse_epsilon(step)}}
    limits = {"pgd": values["pgd_test_limit"], "quantized_search": values["search_test_limit"],
              **{name: values["autoattack_test_limit"]
                 for name in attacks_lib.autoattack.FAMILY}}
    return params, limits


def config(dataset, *, top_k=(1,)):
    """The run described by the flags, as a ``tfdisc.pipeline.Config``.

    Raises:
      flags.ValidationError: flag values that contradict each other or that the
        Config rejects (e.g. --epochs=0 without --init_from).
    """
    attack_params, attack_limits = attack_settings(
        {name: FLAGS[name].value for name in ATTACK_FLAGS})
    kwargs = dict(
        dataset=dataset, model=FLAGS.model, precision=resolve_precision(), bits=FLAGS.bits,
        width=FLAGS.width, depth=FLAGS.depth, gradient=FLAGS.gradient, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, seed=FLAGS.seed,
        train_limit=FLAGS.train_limit, test_limit=FLAGS.test_limit, data_dir=FLAGS.data_dir,
        epsilons=tuple(parse_epsilon(e) for e in FLAGS.epsilons), attacks=tuple(FLAGS.attack),
        attack_params=attack_params, attack_limits=attack_limits,
        eval_batch_size=FLAGS.eval_batch_size, top_k=tuple(top_k), adv_train=FLAGS.adv_train,
        train_eps=None if FLAGS.train_eps is None else parse_epsilon(FLAGS.train_eps),
        adv_ratio=FLAGS.adv_ratio, init_from=FLAGS.init_from,
        transfer_from=FLAGS.transfer_from, save_model=FLAGS.save_model, verbose=FLAGS.verbose,
        distribute=FLAGS.distribute, connect_timeout=FLAGS.connect_timeout, backup=FLAGS.backup,
        backup_dir=FLAGS.backup_dir, export=tuple(FLAGS.export), certify=FLAGS.certify,
        export_input_dtype=export_cli.options()["input_dtype"],
        export_float_weights=export_cli.options()["float_weights"],
        certify_limit=FLAGS.certify_test_limit, certify_method=FLAGS.certify_method,
        certify_solver=FLAGS.certify_solver, certify_time_limit=FLAGS.certify_time_limit,
        certified_train=FLAGS.certified_train, input_edges=input_edges(),
        certified_train_bounds=FLAGS.certified_train_bounds,
        certified_train_mix=FLAGS.certified_train_mix)
    try:
        return pipeline.Config(**kwargs)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None


def command_line():
    """The command that ran this binary, as ``python -m module --flags`` (paths made relative)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec and spec.name else f"python {sys.argv[0]}"
    return results.portable_command(sys.argv[1:], program)


def output_dir(cfg):
    """--output_dir (refused if it holds a run, unless --overwrite), or a fresh default.

    An unfinished run of the same configuration is reused, so the same command resumes it.
    Workers other than the chief only need the directory to exist.
    """
    identity = cfg.identity()
    try:
        if cfg.distribute == "multi_worker":
            if not FLAGS.output_dir:
                raise pipeline.OutputDirError("--distribute=multi_worker needs --output_dir "
                                              "(the same directory for every worker).")
            if not distribution.is_chief():
                os.makedirs(FLAGS.output_dir, exist_ok=True)
                return FLAGS.output_dir
        if FLAGS.output_dir:
            return pipeline.prepare_output_dir(FLAGS.output_dir, overwrite=FLAGS.overwrite,
                                               config=identity)
        return pipeline.prepare_output_dir(cfg.default_output_dir(), unique=True,
                                           config=identity)
    except pipeline.OutputDirError as e:
        raise flags.ValidationError(str(e)) from None


def run(argv, *, dataset, top_k=(1,)):
    """Trains ``--model`` on ``dataset``, evaluates the ε sweeps, writes results.

    Args:
      argv: from ``app.run``.
      dataset: a ``tfdisc.data`` name.
      top_k: accuracies to measure, e.g. ``(1, 5)`` for ImageNet.

    Returns:
      The results record written to ``results.json``.
    """
    show_errors_plainly()
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cfg = config(dataset, top_k=top_k)
    for path, flag in ((cfg.transfer_from, "transfer_from"), (cfg.init_from, "init_from")):
        if path:
            try:
                pipeline.model_path(path, f"--{flag}")  # checked before any output is written
            except ValueError as e:
                raise flags.ValidationError(str(e)) from None
    out = output_dir(cfg)
    if distribution.is_chief(cfg.distribute):
        results.write_json(os.path.join(out, "flags.json"),
                           {fl.name: fl.value for fl in FLAGS.get_flags_for_module(__name__)
                            + FLAGS.get_flags_for_module(export_cli)})
    try:
        record = pipeline.run(cfg, out, command=command_line())
    except ValueError as e:
        if isinstance(e, pipeline.BackupError):  # names the backup and how to discard it
            raise flags.ValidationError(str(e)) from None
        if "transfer_from" in str(e) or "init_from" in str(e):
            raise flags.ValidationError(f"--{e}") from None
        raise
    if record["straight_through_check"]:
        logging.warning("--gradient=none masks the gradient: accuracies under attack are NOT "
                        "robustness; straight-through attack on the same weights: %s",
                        {k: v["adversarial_accuracy"]
                         for k, v in record["straight_through_check"].items()})
    out = distribution.worker_dir(out, cfg.distribute)  # where pipeline.run wrote
    print(results.format_table(record))
    if record.get("resumed"):
        print(f"Resumed after epoch {record['resumed']['from_epoch']} from the backup.")
    print(f"Wrote {os.path.join(out, 'results.json')}"
          + (f" and {os.path.join(out, 'model.keras')}" if cfg.save_model else ""))
    for fmt, path in (record.get("export") or {}).items():
        print(f"Exported {fmt}: {os.path.join(out, path)}")
    return record
