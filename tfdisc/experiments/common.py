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
from tfdisc import evaluate, models, quantize

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
flags.DEFINE_enum("attack", "fgsm", list(evaluate.ATTACKS), "Evaluation attack.")
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


def build_model(dataset, precision):
    shape, classes = data_lib.info(dataset)
    return models.build(FLAGS.model, precision=precision, input_bits=FLAGS.bits,
                        num_classes=classes, input_shape=shape, width=FLAGS.width,
                        depth=FLAGS.depth, gradient=FLAGS.gradient)


def compile_model(model, steps):
    schedule = tf.keras.optimizers.schedules.CosineDecay(FLAGS.learning_rate, max(steps, 1))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(schedule),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def format_table(record):
    """A human-readable table of one results record."""
    lines = [
        f"{record['dataset']} {record['model']} precision={record['precision']} "
        f"bits={record['bits']} attack={record['attack']} gradient={record['gradient']} "
        f"adv_train={record['adv_train']} test examples={record['data']['test_examples']}",
        f"{'eps':>12} | accuracy",
        f"{'0 (clean)':>12} | {record['clean_accuracy']:.4f}",
    ]
    for key, acc in record["adversarial_accuracy"].items():
        lines.append(f"{key:>12} | {acc:.4f}")
    return "\n".join(lines)


def command_line():
    """The command that ran this binary, as ``python -m module --flags``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec and spec.name else f"python {sys.argv[0]}"
    return " ".join([program] + sys.argv[1:])


def run(argv, *, dataset):
    """Trains ``--model`` on ``dataset``, evaluates the ε sweep, writes results."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    epsilons = _check_flags()
    precision = resolve_precision()
    out = FLAGS.output_dir
    os.makedirs(out, exist_ok=True)
    tf.keras.utils.set_random_seed(FLAGS.seed)
    with open(os.path.join(out, "flags.json"), "w") as f:
        json.dump({fl.name: fl.value for fl in FLAGS.get_flags_for_module(__name__)}, f, indent=1)

    x_train, y_train = data_lib.load_arrays(dataset, "train", data_dir=FLAGS.data_dir)
    x_test, y_test = data_lib.load_arrays(dataset, "test", data_dir=FLAGS.data_dir)
    x_train, y_train = x_train[:FLAGS.train_limit], y_train[:FLAGS.train_limit]
    x_test, y_test = x_test[:FLAGS.test_limit], y_test[:FLAGS.test_limit]
    train = data_lib.from_arrays(x_train, y_train, batch_size=FLAGS.batch_size, shuffle=True,
                                 seed=FLAGS.seed)
    test = data_lib.from_arrays(x_test, y_test, batch_size=FLAGS.eval_batch_size)
    model = build_model(dataset, precision)
    steps_per_epoch = int(train.cardinality().numpy())
    compile_model(model, steps_per_epoch * FLAGS.epochs)

    callbacks = [tf.keras.callbacks.TensorBoard(log_dir=os.path.join(out, "logs"))]
    verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    start = time.time()
    if FLAGS.epochs:
        model.fit(train, epochs=FLAGS.epochs, callbacks=callbacks, verbose=verbose)
    train_seconds = time.time() - start

    accuracies = evaluate.robustness(model, test, epsilons, attack=FLAGS.attack)
    record = {
        "dataset": dataset,
        "model": FLAGS.model,
        "precision": precision,
        "bits": FLAGS.bits,
        "epochs": FLAGS.epochs,
        "seed": FLAGS.seed,
        "attack": FLAGS.attack,
        "gradient": evaluate.quantizer_gradient(model),
        "adv_train": False,
        "clean_accuracy": accuracies[0.0],
        "adversarial_accuracy": {epsilon_key(e): accuracies[e] for e in sorted(set(epsilons))
                                 if e != 0.0},
        "train_seconds": round(train_seconds, 2),
        "batch_size": FLAGS.batch_size,
        "learning_rate": FLAGS.learning_rate,
        "width": FLAGS.width or models.spec(FLAGS.model)["width"],
        "depth": FLAGS.depth or models.spec(FLAGS.model)["depth"],
        "data": {
            "source": FLAGS.data_dir or os.environ.get("TFDISC_DATA_DIR") or "tensorflow-datasets",
            "train_examples": int(len(y_train)),
            "test_examples": int(len(y_test)),
        },
        "command": command_line(),
        "tfdisc_version": tfdisc.__version__,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(record, f, indent=1)
    model.save(os.path.join(out, "model.keras"))
    table = format_table(record)
    print(table)
    logging.info("Wrote %s", os.path.join(out, "results.json"))
    return record
