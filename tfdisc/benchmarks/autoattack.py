r"""AutoAttack: tfdisc against a reference implementation, side by side (issue 29).

    PYTHONPATH=/tmp/artpkg python -m tfdisc.benchmarks.autoattack \
        --run_dir=runs/mnist/fcn2_binary_2b --limit=1000 --eps=0.1 \
        --output=experiments/results/autoattack/art_fcn2_binary_2b.json

Runs the standard L∞ AutoAttack of ``tfdisc.attacks`` (APGD-CE, APGD-T,
Square; compiled, the first call's tracing included in its time) and then the
reference's components from ART 1.20 (adversarial-robustness-toolbox, a
cross-check only, never a tfdisc dependency: ``pip install --no-deps --target
DIR adversarial-robustness-toolbox==1.20.1`` and ``PYTHONPATH=DIR``) in the
same process, on the same weights and images, with the same budgets: APGD-CE
(100 iterations, 1 restart), APGD-T on the targeted DLR loss (100 iterations
per target; ART: every other class as target in turn, ours: the other classes
by clean logit, the same set with 10 classes), Square (5000 queries, p_init
0.8), each on the examples no earlier component broke. Gradients go straight
through the input quantizer on both sides (ART differentiates the Keras model
as it is, which is the same straight-through estimator).

Printed and written to ``--output``: each side's cumulative robust accuracy
after each component, its wall time, and the ratio reference / tfdisc. The
baseline is the reference in the same run; nothing here asserts a speed.
Without ``--run_dir`` an fcn2 BNN with 2-bit input is first trained for one
epoch on MNIST.
"""
import json
import os
import time

from absl import app, flags

import tfdisc  # noqa: F401  (legacy Keras before TensorFlow)

# pylint: disable=wrong-import-position,wrong-import-order
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdisc import data, models, results, run_dir  # noqa: E402
from tfdisc.attacks import autoattack, registry  # noqa: E402
from tfdisc.benchmarks import cpu  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the binary's flags (only when run as one: the tests import this module beside
    the experiment binaries, whose flags share names)."""
    flags.DEFINE_string("run_dir", None, "A run's output directory: its model.keras is attacked. "
                        "Default: an fcn2 BNN (2-bit input) trained for one epoch.")
    flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10"], "Test set of the first images.")
    flags.DEFINE_string("data_dir", None,
                        "Dataset directory (default ../shared/datasets/DATASET).")
    flags.DEFINE_integer("limit", 1000, "First N test images.")
    flags.DEFINE_string("eps", "0.1",
                        "L∞ radius in the [0, 1] scale; fractions like 8/255 accepted.")
    flags.DEFINE_integer("batch_size", 500, "The reference's batch size (tfdisc runs all at once).")
    flags.DEFINE_bool("reference", True, "Also run the reference (ART); off: tfdisc only.")
    flags.DEFINE_string("output", None, "Results JSON path (optional).")


def run_tfdisc(model, x, y, eps, **params):
    """tfdisc's compiled AutoAttack (``params`` override its budgets; default the standard
    ones); ``({stage: robust accuracy}, seconds)``."""
    start = time.perf_counter()
    _, robust = registry.get("autoattack").graph_stages(model, tf.constant(x), tf.constant(y),
                                                         eps, (0.0, 1.0), **params)
    robust = {k: float(np.mean(v.numpy())) for k, v in robust.items()}
    return robust, time.perf_counter() - start


def run_art(model, x, y, eps, batch_size):
    """ART's APGD-CE, APGD-T (each other class) and Square in sequence.

    Returns ``({stage: robust accuracy}, seconds, ART version)``.

    Raises:
      ImportError: ART is not installed (with how to install it beside tfdisc).
    """
    # pylint: disable=import-outside-toplevel
    try:
        import art
        from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
        from art.estimators.classification import TensorFlowV2Classifier
    except ImportError as e:
        raise ImportError(
            "The reference side needs ART (a cross-check, not a tfdisc dependency): pip install "
            "--no-deps --target DIR adversarial-robustness-toolbox==1.20.1, then PYTHONPATH=DIR; "
            "or pass --noreference.") from e
    classes = int(model.output_shape[-1])
    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=classes, input_shape=x.shape[1:], clip_values=(0.0, 1.0),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    alive = np.argmax(classifier.predict(x, batch_size=batch_size), 1) == y
    robust = {"clean": alive.copy()}

    def attack(method, labels=None):
        idx = np.nonzero(alive)[0]
        if len(idx):
            target = y[idx] if labels is None else labels(idx)
            adv = method.generate(x[idx], target)
            alive[idx[np.argmax(classifier.predict(adv, batch_size=batch_size), 1)
                      != y[idx]]] = False

    common = dict(norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1,
                  batch_size=batch_size, verbose=False)
    attack(AutoProjectedGradientDescent(classifier, targeted=False, loss_type="cross_entropy",
                                        **common))
    robust["apgd_ce"] = alive.copy()
    dlr = AutoProjectedGradientDescent(classifier, targeted=True,
                                       loss_type="difference_logits_ratio", **common)
    for shift in range(1, classes):
        attack(dlr, lambda idx, shift=shift: np.eye(classes)[(y[idx] + shift) % classes])
    robust["apgd_t"] = alive.copy()
    attack(SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=5000, p_init=0.8,
                        nb_restarts=1, batch_size=batch_size, verbose=False))
    robust["square"] = alive.copy()
    seconds = time.perf_counter() - start
    return {k: float(np.mean(v)) for k, v in robust.items()}, seconds, art.__version__


def _model(data_dir):
    if FLAGS.run_dir:
        return (run_dir.load_model(FLAGS.run_dir),
                os.path.basename(os.path.normpath(FLAGS.run_dir)))
    if FLAGS.dataset != "mnist":
        raise app.UsageError("Without --run_dir only --dataset=mnist trains its own model.")
    model = models.build("fcn2", precision="binary", input_bits=2)
    x_train, y_train = data.load_arrays("mnist", "train", data_dir=data_dir)
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.to_float(x_train), y_train, batch_size=128, epochs=1, verbose=0)
    return model, "fcn2 BNN, 2-bit input, one epoch (Adam 1e-3, batch 128)"


def main(argv):
    del argv
    data_dir = FLAGS.data_dir or os.path.join("..", "shared", "datasets", FLAGS.dataset)
    eps = results.parse_epsilon(FLAGS.eps)
    model, origin = _model(data_dir)
    x, y = data.load_arrays(FLAGS.dataset, "test", data_dir=data_dir)
    x = data.to_float(x[:FLAGS.limit]).numpy()
    y = np.asarray(y[:FLAGS.limit], np.int64).reshape(-1)
    name, ident, cpu_flags = cpu.describe()
    out = {"model": origin, "images": int(len(y)), "dataset": FLAGS.dataset,
           "data": f"{FLAGS.dataset} test set, first {len(y)} images", "eps": FLAGS.eps,
           "attack": "AutoAttack standard L-inf: APGD-CE, APGD-T, Square (5000 queries)",
           "gradient": "straight_through (both sides)",
           "cpu": f"{name} ({ident}; {' '.join(cpu_flags)}), {os.cpu_count()} CPUs",
           "tensorflow": tf.__version__, "params": dict(autoattack.DEFAULTS)}
    ours, ours_s = run_tfdisc(model, x, y, eps)
    out["tfdisc"] = {"robust_accuracy": ours, "seconds": round(ours_s, 1)}
    print(f"tfdisc: {ours_s:8.1f} s  {ours}", flush=True)
    if FLAGS.reference:
        theirs, theirs_s, version = run_art(model, x, y, eps, FLAGS.batch_size)
        out["art"] = {"version": version, "robust_accuracy": theirs,
                      "seconds": round(theirs_s, 1), "apgd_t_targets": "every other class"}
        out["difference_points"] = {k: round(100 * (ours[k] - theirs[k]), 2) for k in ours}
        out["speedup"] = round(theirs_s / ours_s, 2)
        print(f"ART {version}: {theirs_s:8.1f} s  {theirs}")
        print(f"speed-up (ART / tfdisc): {theirs_s / ours_s:.2f}x; differences (points): "
              f"{out['difference_points']}")
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
