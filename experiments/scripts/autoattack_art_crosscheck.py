"""Cross-check of tfdisc's AutoAttack against ART 1.20's, on the same weights and images.

A cross-check only: ART (adversarial-robustness-toolbox 1.20) is not a tfdisc dependency;
install it beside tfdisc (e.g. ``pip install --no-deps --target DIR
adversarial-robustness-toolbox==1.20.1`` and ``PYTHONPATH=DIR``).

Both run the standard sequence on the examples still unbroken: APGD-CE (100
iterations, 1 restart), APGD-T (targeted DLR; ART: every other class as target,
100 iterations each), Square (5000 queries, p_init 0.8), L∞ at ``--eps``, on the
first ``--limit`` MNIST test images, gradients straight through the input
quantizer (ART differentiates the Keras model as it is, which is the same
straight-through estimator). Writes one JSON with each side's cumulative
robust accuracy after each component and its wall time.

Example:
  PYTHONPATH=/tmp/artpkg python experiments/scripts/autoattack_art_crosscheck.py \
      --run_dir=../runs/fcn2_binary_2b --limit=500 --eps=0.1 \
      --output=experiments/results/autoattack/art_crosscheck_fcn2_binary_2b.json
"""
import json
import os
import time

from absl import app, flags

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow)
# pylint: disable=wrong-import-position,wrong-import-order
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdisc import data  # noqa: E402
from tfdisc.attacks import autoattack  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A run's output directory (its model.keras is attacked).")
flags.DEFINE_integer("limit", 500, "First N MNIST test images.")
flags.DEFINE_float("eps", 0.1, "L∞ radius.")
flags.DEFINE_string("data_dir", "../shared/datasets/mnist", "MNIST directory.")
flags.DEFINE_integer("batch_size", 500, "Batch size of both sides.")
flags.DEFINE_string("output", None, "Results JSON path.")
flags.mark_flags_as_required(["run_dir", "output"])


def _ours(model, x, y, eps):
    start = time.time()
    _, robust = autoattack.stages(model, tf.constant(x), tf.constant(y), eps, (0.0, 1.0),
                                  **{k: v for k, v in autoattack.DEFAULTS.items()})
    seconds = time.time() - start
    return {k: float(np.mean(v.numpy())) for k, v in robust.items()}, seconds


def _art(model, x, y, eps, batch_size):
    # pylint: disable=import-outside-toplevel
    import art
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=x.shape[1:], clip_values=(0.0, 1.0),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    robust = {"clean": np.argmax(classifier.predict(x, batch_size=batch_size), 1) == y}
    alive = robust["clean"].copy()

    def hit(x_adv, idx):
        return np.argmax(classifier.predict(x_adv, batch_size=batch_size), 1) != y[idx]

    ce = AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
                                      max_iter=100, targeted=False, nb_random_init=1,
                                      batch_size=batch_size, loss_type="cross_entropy",
                                      verbose=False)
    idx = np.nonzero(alive)[0]
    if len(idx):
        alive[idx[hit(ce.generate(x[idx], y[idx]), idx)]] = False
    robust["apgd_ce"] = alive.copy()
    dlr = AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
                                       max_iter=100, targeted=True, nb_random_init=1,
                                       batch_size=batch_size,
                                       loss_type="difference_logits_ratio", verbose=False)
    for shift in range(1, 10):
        idx = np.nonzero(alive)[0]
        if not len(idx):
            break
        target = (y[idx] + shift) % 10
        alive[idx[hit(dlr.generate(x[idx], np.eye(10)[target]), idx)]] = False
    robust["apgd_t"] = alive.copy()
    sq = SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=5000, p_init=0.8,
                      nb_restarts=1, batch_size=batch_size, verbose=False)
    idx = np.nonzero(alive)[0]
    if len(idx):
        alive[idx[hit(sq.generate(x[idx], y[idx]), idx)]] = False
    robust["square"] = alive.copy()
    seconds = time.time() - start
    return {k: float(np.mean(v)) for k, v in robust.items()}, seconds, art.__version__


def main(argv):
    del argv
    model = tf.keras.models.load_model(os.path.join(FLAGS.run_dir, "model.keras"), compile=False)
    x, y = data.load_arrays("mnist", "test", data_dir=FLAGS.data_dir)
    x = data.to_float(x[:FLAGS.limit]).numpy()
    y = np.asarray(y[:FLAGS.limit], np.int64).reshape(-1)
    ours, ours_s = _ours(model, x, y, FLAGS.eps)
    theirs, theirs_s, version = _art(model, x, y, FLAGS.eps, FLAGS.batch_size)
    out = {"model": os.path.basename(os.path.normpath(FLAGS.run_dir)), "images": len(y),
           "data": "MNIST test set, first images, exact IDX files", "eps": FLAGS.eps,
           "gradient": "straight_through (both)", "tfdisc": {"robust_accuracy": ours,
                                                            "seconds": round(ours_s, 1)},
           "art": {"version": version, "robust_accuracy": theirs, "seconds": round(theirs_s, 1),
                   "apgd_t_targets": "every other class (9)"},
           "difference_points": {k: round(100 * (ours[k] - theirs[k]), 2) for k in ours},
           "cpu": _cpu()}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ×{len(names)}" if names else "unknown"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    app.run(main)
