"""Flags and the train → evaluate loop shared by every experiment binary.

A binary defines nothing but its defaults::

    from absl import app
    from tfdisc.experiments import common

    def main(argv):
        common.run(argv, dataset="mnist")

    if __name__ == "__main__":
        common.set_defaults(model="fcn2", epsilons="0.1,0.2,0.3")
        app.run(main)
"""
import fractions
import json
import os
import sys
import time

from absl import app, flags, logging

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow loads)
import tensorflow as tf

from tfdisc import data as data_lib
from tfdisc import evaluate, models, quantize, training

FLAGS = flags.FLAGS

flags.DEFINE_enum("model", "fcn2", models.available(), "Model of tfdisc.models.")
flags.DEFINE_enum("precision", "full", list(models.PRECISIONS),
                  "Parameter precision: full (float twin), binary (BNN) or xnor.")
flags.DEFINE_bool("binary", False, "Shorthand for --precision=binary.")
flags.DEFINE_integer("bits", 8, "Input bit depth (paper eq. 2), 1..8.")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 500, "Evaluation batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (cosine-decayed to 0).")
flags.DEFINE_list("epsilons", "0.1,0.2,0.3",
                  "Attack budgets ε in the [0, 1] input scale; fractions like 8/255 accepted.")
flags.DEFINE_list("attack", "fgsm",
                  "Evaluation attack(s), comma-separated, from fgsm, pgd, rfgsm. The first is the "
                  "primary one (results.json keys attack/adversarial_accuracy); every one is "
                  "recorded under results.json 'attacks'.")
flags.DEFINE_integer("pgd_steps", evaluate.DEFAULT_PGD_STEPS, "PGD iterations (≥ 1).")
flags.DEFINE_string("pgd_step_size", None,
                    "PGD step size in the [0, 1] input scale (fractions like 2/255 accepted); "
                    "default 2.5·ε/steps for each ε (Madry et al.).")
flags.DEFINE_integer("pgd_test_limit", None,
                     "Run PGD on the first N test examples only (it costs pgd_steps × FGSM); "
                     "results record the number of examples of every attack.")
flags.DEFINE_bool("adv_train", False,
                  "Adversarial training with R-FGSM examples made on the fly (tfdisc.training).")
flags.DEFINE_string("train_eps", None,
                    "R-FGSM ε of adversarial training (fractions like 8/255 accepted); default "
                    "0.3 for MNIST, 8/255 for CIFAR and ImageNet (paper sec. IV).")
flags.DEFINE_float("adv_ratio", 0.5,
                   "Fraction of each training batch replaced by R-FGSM examples, in [0, 1].")
flags.DEFINE_string("transfer_from", None,
                    "Black-box transfer: a saved source model (a .keras file, or a directory "
                    "holding model.keras) whose adversarial examples are evaluated on the "
                    "trained model too (results.json 'transfer').")
flags.DEFINE_bool("save_model", True, "Save the trained model as OUTPUT_DIR/model.keras.")
flags.DEFINE_list("export", [], "Export the trained model into OUTPUT_DIR/export in these "
                  "formats of tfdisc.export (saved_model, packed_saved_model, tflite, lce).")
flags.register_validator("export", lambda v: not v or all(
    f in ("saved_model", "packed_saved_model", "tflite", "lce") for f in v),
    "--export: formats are saved_model, packed_saved_model, tflite, lce")
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
                    "TensorBoard logs are written.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling).")
flags.DEFINE_integer("width", None, "Model width (see tfdisc.models.build); default per model.")
flags.DEFINE_integer("depth", None, "Model depth (see tfdisc.models.build); default per model.")
flags.DEFINE_integer("train_limit", None, "Train on the first N training examples only "
                     "(reduced schedules, smoke tests).")
flags.DEFINE_integer("test_limit", None, "Evaluate on the first N test examples only.")
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras fit verbosity.")

flags.mark_flag_as_required("output_dir")


def _valid_epsilon(text):
    try:
        parse_epsilon(text)
    except ValueError:
        return False
    return True


flags.register_validator("epsilons", lambda values: all(_valid_epsilon(v) for v in values),
                         message="--epsilons must be non-negative numbers or fractions like 8/255.")
flags.register_validator("attack", lambda values: bool(values) and all(
    v in evaluate.ATTACKS for v in values),
    message=f"--attack must be a comma-separated list from {', '.join(evaluate.ATTACKS)}.")
flags.register_validator("pgd_steps", lambda v: v is not None and v >= 1,
                         message="--pgd_steps must be ≥ 1.")
flags.register_validator("pgd_step_size", lambda v: v is None or (
    _valid_epsilon(v) and parse_epsilon(v) > 0), message="--pgd_step_size must be a number > 0.")
flags.register_validator("train_eps", lambda v: v is None or _valid_epsilon(v),
                         message="--train_eps must be a non-negative number or fraction like 8/255.")
flags.register_validator("adv_ratio", lambda v: 0.0 <= v <= 1.0,
                         message="--adv_ratio must be in [0, 1].")


def set_defaults(**defaults):
    """Per-binary flag defaults, e.g. ``set_defaults(model="alexnet_cifar")``."""
    for name, value in defaults.items():
        FLAGS.set_default(name, value)


def parse_epsilon(text):
    """'0.1' → 0.1, '8/255' → 0.0313…; raises ValueError for bad or negative values."""
    text = str(text).strip()
    try:
        value = float(fractions.Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"Bad epsilon {text!r}: expected a number like 0.1 or a fraction like "
                         "8/255.") from None
    if value < 0:
        raise ValueError(f"Epsilon must be ≥ 0, got {text!r}.")
    return value


def epsilon_key(value):
    """Stable string key of ε for results.json (e.g. '0.1', '0.0313725')."""
    return f"{value:.7g}"


def resolve_precision():
    if FLAGS.binary:
        if FLAGS["precision"].present and FLAGS.precision != "binary":
            raise flags.ValidationError(
                f"--binary conflicts with --precision={FLAGS.precision}; pass only one.")
        return "binary"
    return FLAGS.precision


def _check_flags():
    quantize.check_bits(FLAGS.bits)
    for name in ("epochs",):
        if FLAGS[name].value < 0:
            raise flags.ValidationError(f"--{name} must be ≥ 0, got {FLAGS[name].value}.")
    for name in ("batch_size", "eval_batch_size"):
        if FLAGS[name].value < 1:
            raise flags.ValidationError(f"--{name} must be ≥ 1, got {FLAGS[name].value}.")
    if not FLAGS.learning_rate > 0:
        raise flags.ValidationError(f"--learning_rate must be > 0, got {FLAGS.learning_rate}.")
    return [parse_epsilon(e) for e in FLAGS.epsilons]


def build_model(dataset, precision, gradient=None):
    shape, classes = data_lib.info(dataset)
    return models.build(FLAGS.model, precision=precision, input_bits=FLAGS.bits,
                        num_classes=classes, input_shape=shape, width=FLAGS.width,
                        depth=FLAGS.depth, gradient=gradient or FLAGS.gradient)


def compile_model(model, steps):
    schedule = tf.keras.optimizers.schedules.CosineDecay(FLAGS.learning_rate, max(steps, 1))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def format_table(record):
    """A human-readable table of one results record (every attack as a column)."""
    attacks = record.get("attacks") or {record["attack"]: {
        "adversarial_accuracy": record["adversarial_accuracy"]}}
    names = list(attacks)
    adv = record.get("adv_train_params")
    lines = [
        f"{record['dataset']} {record['model']} precision={record['precision']} "
        f"bits={record['bits']} gradient={record['gradient']} "
        f"adv_train={'rfgsm eps=%.4g' % adv['eps'] if adv else False} "
        f"test examples={record['data']['test_examples']}",
        f"{'eps':>12} | " + " | ".join(f"{n:>8}" for n in names),
        f"{'0 (clean)':>12} | " + " | ".join(f"{record['clean_accuracy']:8.4f}" for _ in names),
    ]
    keys = list(record["adversarial_accuracy"])
    for key in keys:
        cells = [attacks[n]["adversarial_accuracy"].get(key) for n in names]
        lines.append(f"{key:>12} | " + " | ".join(
            f"{c:8.4f}" if c is not None else f"{'-':>8}" for c in cells))
    if record.get("transfer"):
        t = record["transfer"]
        lines.append(f"transfer from {t['source_model']} ({t['attack']}): " + ", ".join(
            f"{k}: {v:.4f}" for k, v in t["adversarial_accuracy"].items()))
    if record.get("top5"):
        lines.append("top-5: clean %.4f, " % record["top5"]["clean_accuracy"] + ", ".join(
            f"{k}: {v:.4f}" for k, v in record["top5"]["adversarial_accuracy"].items()))
    return "\n".join(lines)


def command_line():
    """The command that ran this binary, as ``python -m module --flags``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec and spec.name else f"python {sys.argv[0]}"
    return " ".join([program] + sys.argv[1:])


def train_eps(dataset):
    """--train_eps, or the paper's default for ``dataset``."""
    if FLAGS.train_eps is not None:
        return parse_epsilon(FLAGS.train_eps)
    return training.DEFAULT_TRAIN_EPS.get(dataset, 8 / 255)


def load_source_model(path, flag="transfer_from"):
    """Loads a saved model (``.keras`` file or a directory holding model.keras)."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise flags.ValidationError(f"--{flag}: no saved model at {path!r}.")
    return tf.keras.models.load_model(path, compile=False)


def attack_kwargs():
    step = FLAGS.pgd_step_size
    return dict(pgd_steps=FLAGS.pgd_steps,
                pgd_step_size=None if step is None else parse_epsilon(step))


def _by_key(accuracies, epsilons):
    return {epsilon_key(e): accuracies[e] for e in sorted(set(epsilons)) if e != 0.0}


def evaluate_attacks(model, x_test, y_test, epsilons, *, top_k=(1,), attack_model=None):
    """Runs every --attack on the test arrays; returns {name: record}."""
    records = {}
    for name in FLAGS.attack:
        limit = FLAGS.pgd_test_limit if name == "pgd" else None
        x, y = x_test[:limit], y_test[:limit]
        test = data_lib.from_arrays(x, y, batch_size=FLAGS.eval_batch_size)
        result = evaluate.sweep(model, test, epsilons, name, top_k=top_k,
                                attack_model=attack_model, **attack_kwargs())
        record = evaluate.attack_record(name, attack_model or model, **attack_kwargs())
        record.update(
            examples=result["examples"],
            clean_accuracy=result["top1"][0.0],
            adversarial_accuracy=_by_key(result["top1"], epsilons),
            zero_gradient_fraction=result["zero_gradient_fraction"],
        )
        if 5 in top_k:
            record["top5"] = {"clean_accuracy": result["top5"][0.0],
                              "adversarial_accuracy": _by_key(result["top5"], epsilons)}
        records[name] = record
        logging.info("%s: %s", name, record["adversarial_accuracy"])
    return records


def run(argv, *, dataset, top_k=(1,)):
    """Trains ``--model`` on ``dataset``, evaluates the ε sweeps, writes results.

    Args:
      argv: from ``app.run``.
      dataset: a ``tfdisc.data`` name.
      top_k: accuracies to measure, e.g. ``(1, 5)`` for ImageNet.

    Returns:
      The results record written to ``results.json``.
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    epsilons = _check_flags()
    precision = resolve_precision()
    out = FLAGS.output_dir
    os.makedirs(out, exist_ok=True)
    tf.keras.utils.set_random_seed(FLAGS.seed)
    with open(os.path.join(out, "flags.json"), "w") as f:
        json.dump({fl.name: fl.value for fl in FLAGS.get_flags_for_module(__name__)}, f, indent=1)

    source = load_source_model(FLAGS.transfer_from) if FLAGS.transfer_from else None
    x_train, y_train = data_lib.load_arrays(dataset, "train", data_dir=FLAGS.data_dir)
    x_test, y_test = data_lib.load_arrays(dataset, "test", data_dir=FLAGS.data_dir)
    x_train, y_train = x_train[:FLAGS.train_limit], y_train[:FLAGS.train_limit]
    x_test, y_test = x_test[:FLAGS.test_limit], y_test[:FLAGS.test_limit]
    train = data_lib.from_arrays(x_train, y_train, batch_size=FLAGS.batch_size, shuffle=True,
                                 seed=FLAGS.seed)
    model = build_model(dataset, precision)
    if source is not None and tuple(source.input_shape[1:]) != tuple(model.input_shape[1:]):
        raise flags.ValidationError(
            f"--transfer_from model takes inputs of shape {source.input_shape[1:]} but "
            f"{FLAGS.model} on {dataset} takes {model.input_shape[1:]}.")
    if FLAGS.init_from:
        init = load_source_model(FLAGS.init_from, "init_from")
        try:
            model.set_weights(init.get_weights())
        except ValueError as e:
            raise flags.ValidationError(
                f"--init_from model {init.name} does not match {model.name}: {e}") from None
    trainer = model
    adv_params = None
    if FLAGS.adv_train:
        trainer = training.AdversarialTraining(model, train_eps(dataset),
                                               adv_ratio=FLAGS.adv_ratio)
        adv_params = trainer.describe()
    steps_per_epoch = int(train.cardinality().numpy())
    compile_model(trainer, steps_per_epoch * FLAGS.epochs)

    callbacks = [tf.keras.callbacks.TensorBoard(log_dir=os.path.join(out, "logs"))]
    verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    start = time.time()
    if FLAGS.epochs:
        trainer.fit(train, epochs=FLAGS.epochs, callbacks=callbacks, verbose=verbose)
    train_seconds = time.time() - start

    start = time.time()
    attacks = evaluate_attacks(model, x_test, y_test, epsilons, top_k=top_k)
    primary = attacks[FLAGS.attack[0]]
    transfer = None
    if source is not None:
        t = evaluate_attacks(model, x_test, y_test, epsilons, top_k=(1,),
                             attack_model=source)[FLAGS.attack[0]]
        transfer = {
            "source": FLAGS.transfer_from,
            "source_model": source.name,
            "source_gradient": evaluate.quantizer_gradient(source),
            "attack": FLAGS.attack[0],
            "attack_params": {k: v for k, v in t.items() if k not in (
                "adversarial_accuracy", "clean_accuracy", "examples", "zero_gradient_fraction")},
            "examples": t["examples"],
            "clean_accuracy": t["clean_accuracy"],
            "adversarial_accuracy": t["adversarial_accuracy"],
        }
    masked_check = None
    if evaluate.quantizer_gradient(model) == "none":
        # The zero gradient of floor only masks gradients: attack the same weights
        # through a straight-through twin and record what a real attacker gets.
        twin = build_model(dataset, precision, gradient="straight_through")
        twin.set_weights(model.get_weights())
        masked_check = evaluate_attacks(twin, x_test, y_test, epsilons, top_k=(1,))
        logging.warning("--gradient=none masks the gradient: accuracies under attack are NOT "
                        "robustness; straight-through attack on the same weights: %s",
                        {k: v["adversarial_accuracy"] for k, v in masked_check.items()})
    eval_seconds = time.time() - start
    width = FLAGS.width or models.spec(FLAGS.model)["width"]
    depth = FLAGS.depth or models.spec(FLAGS.model)["depth"]
    record = {
        "dataset": dataset,
        "model": FLAGS.model,
        "precision": precision,
        "bits": FLAGS.bits,
        "epochs": FLAGS.epochs,
        "seed": FLAGS.seed,
        "attack": FLAGS.attack[0],
        "attack_params": {k: v for k, v in primary.items() if k not in (
            "adversarial_accuracy", "clean_accuracy", "top5")},
        "gradient": evaluate.quantizer_gradient(model),
        "adv_train": bool(FLAGS.adv_train),
        "adv_train_params": adv_params,
        "clean_accuracy": primary["clean_accuracy"],
        "adversarial_accuracy": primary["adversarial_accuracy"],
        "attacks": attacks,
        "transfer": transfer,
        "straight_through_check": masked_check,
        "init_from": FLAGS.init_from,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "batch_size": FLAGS.batch_size,
        "learning_rate": FLAGS.learning_rate,
        "width": width,
        "depth": depth,
        "schedule": (f"weights from {FLAGS.init_from}, then " if FLAGS.init_from else "") + (
                     f"{FLAGS.epochs} epochs, Adam lr {FLAGS.learning_rate:g} cosine-decayed, "
                     f"batch {FLAGS.batch_size}, width {width}, depth {depth}, "
                     f"{len(y_train)} training examples"
                     + (f", R-FGSM adversarial training eps {adv_params['eps']:.4g} "
                        f"alpha {adv_params['alpha']:.4g} mix {adv_params['adv_ratio']:g}"
                        if adv_params else "")),
        "data": {
            "source": FLAGS.data_dir or os.environ.get("TFDISC_DATA_DIR") or "tensorflow-datasets",
            "train_examples": int(len(y_train)),
            "test_examples": int(len(y_test)),
        },
        "command": command_line(),
        "tfdisc_version": tfdisc.__version__,
    }
    if 5 in top_k:
        record["top5"] = primary["top5"]
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(record, f, indent=1)
    if FLAGS.save_model:
        model.save(os.path.join(out, "model.keras"))
    table = format_table(record)
    print(table)
    logging.info("Wrote %s", os.path.join(out, "results.json"))
    if FLAGS.export:  # tfdisc.export: one artifact per format under OUTPUT_DIR/export
        tfdisc.export.export(model, os.path.join(out, "export"), FLAGS.export)
    return record
