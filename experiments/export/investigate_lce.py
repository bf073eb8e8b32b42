"""Where does LCE disagree with larq on a random alexnet_cifar BNN-2b?

Issue 9 reports 30/32 argmax agreement for LCE 0.16 on a random (untrained)
alexnet_cifar BNN-2b and 32 random inputs. This script rebuilds that case
(default width 128, random uniform images) and separates the candidate causes:

* ties: in an untrained model every batch norm is the identity up to
  1/sqrt(1 + eps), so a binary layer's input is 0 exactly when the integer
  dot product before it is 0 (even K = 9 * C). larq maps sign(0) to +1; we
  count the exact zeros and compare tfdisc.export.lce (binary dense as 1x1
  binary conv) with larq_compute_engine.convert_keras_model run directly
  (binary dense layers stay float there).
* near-ties of float values: the same model with random "trained-looking"
  BN statistics (no exact zeros), uniform and normal images;
  --near_tie_check reports, for the disagreeing image, the smallest
  |pre-sign value| at every binary layer input.
* padding: every binary conv uses one-padding ("same", pad_values=1); if
  LCE's padding differed, the bit-packed convolutions could not agree on
  every seed.

Usage (from the repository root):
  PYTHONPATH=. python experiments/export/investigate_lce.py \
      --output=experiments/export/results/lce_investigation.json
  PYTHONPATH=. python experiments/export/investigate_lce.py --near_tie_check \
      --output=experiments/export/results/lce_near_tie_check.json
"""
import json
import os
import tempfile

from absl import app, flags

import tfdisc  # noqa: F401
import numpy as np
import tensorflow as tf
import larq as lq

from tfdisc import export

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "JSON file for the findings.")
flags.DEFINE_integer("n", 32, "Random inputs.")
flags.DEFINE_integer("width", 128, "alexnet_cifar width (default 128 as in the reported case).")
flags.DEFINE_integer("seeds", 4, "Random models (weight seeds) of the untrained case.")
flags.DEFINE_bool("near_tie_check", False,
                  "Only the case with a disagreement among random BN statistics: the smallest "
                  "|pre-sign value| per binary layer for the disagreeing image vs the others.")


def randomize_bn(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            ws = []
            for w in layer.weights:
                name = w.name.split("/")[-1].split(":")[0]
                v = rng.standard_normal(w.shape).astype(np.float32)
                ws.append(np.abs(v) + 0.5 if name == "moving_variance" else v)
            layer.set_weights(ws)


def pre_sign_zeros(model, x):
    """Fraction of exact zeros in the inputs of every binary layer."""
    quant = [l for l in model.layers if isinstance(l, (lq.layers.QuantConv2D, lq.layers.QuantDense))]
    probe = tf.keras.Model(model.inputs, [l.input for l in quant])
    outs = probe(x, training=False)
    return {l.name: float(np.mean(o.numpy() == 0)) for l, o in zip(quant, outs)}


def compare(model, x, tmp, raw=False):
    path = os.path.join(tmp, f"{model.name}.tflite")
    if raw:  # larq-compute-engine directly: dense layers stay float
        import larq_compute_engine as lce  # pylint: disable=import-outside-toplevel

        with open(path, "wb") as f:
            f.write(lce.convert_keras_model(model))
    else:
        export.lce(model, path)
    got = export.predictor(path)(x)
    want = model(x, training=False).numpy()
    top2 = np.sort(want, axis=-1)[:, -2:]
    agree = got.argmax(-1) == want.argmax(-1)
    return {
        "agreement": f"{int(agree.sum())}/{len(x)}",
        "max_abs_logit_diff": float(np.abs(got - want).max()),
        "samples_with_logit_diff_over_1e-3": int((np.abs(got - want).max(-1) > 1e-3).sum()),
        "keras_top2_margin_of_disagreeing": [float(m) for m in (top2[:, 1] - top2[:, 0])[~agree]],
        "keras_median_top2_margin": float(np.median(top2[:, 1] - top2[:, 0])),
    }


def near_ties(model, x, disagreeing):
    """Smallest |pre-sign value| per binary layer input: disagreeing samples vs the rest."""
    quant = [l for l in model.layers
             if isinstance(l, (lq.layers.QuantConv2D, lq.layers.QuantDense))]
    probe = tf.keras.Model(model.inputs, [l.input for l in quant])
    outs = probe(x, training=False)
    report = {}
    for layer, out in zip(quant, outs):
        a = np.abs(out.numpy()).reshape(len(x), -1).min(axis=1)
        report[layer.name] = {
            "disagreeing": [float(a[i]) for i in disagreeing],
            "others_median": float(np.median(np.delete(a, disagreeing))),
            "others_min": float(np.delete(a, disagreeing).min()),
        }
    return report


def near_tie_check(inputs):
    """Case random_bn_stats/seed0/normal_inputs: where the disagreeing image is near a tie."""
    tf.keras.utils.set_random_seed(0)
    model = tfdisc.models.build("alexnet_cifar", precision="binary", input_bits=2,
                                width=FLAGS.width)
    randomize_bn(model, seed=3)
    x = inputs["normal"]
    with tempfile.TemporaryDirectory() as tmp:
        got = export.predictor(export.lce(model, os.path.join(tmp, "m.tflite")))(x)
    want = model(x, training=False).numpy()
    bad = np.flatnonzero(np.abs(got - want).max(-1) > 1e-3).tolist()
    return {"case": "random_bn_stats/seed0/normal_inputs",
            "samples_with_logit_diff_over_1e-3": bad,
            "min_abs_pre_sign": near_ties(model, x, bad)}


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    inputs = {"uniform": rng.random((FLAGS.n, 32, 32, 3)).astype(np.float32),
              "normal": rng.standard_normal((FLAGS.n, 32, 32, 3)).astype(np.float32)}
    if FLAGS.near_tie_check:
        findings = near_tie_check(inputs)
        print(json.dumps(findings, indent=1))
        if FLAGS.output:
            with open(FLAGS.output, "w") as f:
                json.dump(findings, f, indent=1)
        return
    findings = {"n_inputs": FLAGS.n, "width": FLAGS.width, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(FLAGS.seeds):
            for case in ("untrained_bn", "random_bn_stats"):
                if case == "random_bn_stats" and seed:
                    continue
                tf.keras.utils.set_random_seed(seed)
                model = tfdisc.models.build("alexnet_cifar", precision="binary", input_bits=2,
                                            width=FLAGS.width)
                if case == "random_bn_stats":
                    randomize_bn(model, seed=3)
                for kind, x in inputs.items():
                    key = f"{case}/seed{seed}/{kind}_inputs"
                    result = compare(model, x, tmp)
                    result["exact_zero_fraction_at_binary_inputs"] = pre_sign_zeros(model, x)
                    if kind == "uniform" and case == "untrained_bn":
                        result["raw_lce_dense_float"] = compare(model, x, tmp, raw=True)
                    findings["cases"][key] = result
                    print(key, json.dumps(result), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(findings, f, indent=1)


if __name__ == "__main__":
    app.run(main)

