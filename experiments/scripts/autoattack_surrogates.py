"""AutoAttack on a BNN with each sign-gradient surrogate, beside the quantized search (issue 29).

larq's ``ste_sign`` passes no gradient where its input leaves [−1, 1], so APGD on a BNN may
stall for reasons unrelated to robustness. This runs the standard AutoAttack with
``sign_gradient`` = ste (larq's own), identity, tanh and hardtanh:K on the same weights and the
first ``--limit`` test images, and the quantized search (``quantized_search``, no gradient) as
the pipeline runs it, and writes per ε: each run's cumulative accuracy after every component,
and the accuracy under the per-example worst case of all of them.

  python experiments/scripts/autoattack_surrogates.py --run_dir=../runs/mnist/fcn2_binary_2b \
      --eps=0.1,0.2 --output=experiments/results/autoattack/surrogates_fcn2_binary_2b.json
"""
import json
import os
import time

from absl import app, flags

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow)
# pylint: disable=wrong-import-position,wrong-import-order
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdisc import data, results, run_dir  # noqa: E402
from tfdisc.attacks import registry  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A run's output directory (its model.keras is attacked).")
flags.DEFINE_integer("limit", 1000, "First N MNIST test images.")
flags.DEFINE_list("eps", ["0.1", "0.2"], "L∞ radii.")
flags.DEFINE_list("modes", ["ste", "identity", "tanh", "hardtanh:3"], "sign_gradient modes.")
flags.DEFINE_string("data_dir", "../shared/datasets/mnist", "MNIST directory.")
flags.DEFINE_string("output", None, "Results JSON path.")
flags.mark_flags_as_required(["run_dir", "output"])


def main(argv):
    del argv
    model = run_dir.load_model(FLAGS.run_dir)
    x, y = data.load_arrays("mnist", "test", data_dir=FLAGS.data_dir)
    x = data.to_float(x[:FLAGS.limit])
    y = tf.constant(np.asarray(y[:FLAGS.limit], np.int64).reshape(-1))
    out = {"model": os.path.basename(os.path.normpath(FLAGS.run_dir)), "images": int(len(y)),
           "data": f"MNIST test set, first {len(y)} images (exact IDX files)",
           "attack": "AutoAttack standard L-inf (APGD-CE, APGD-T, Square 5000 queries) per "
                     "sign_gradient; quantized_search with its pipeline defaults",
           "quantizer_gradient": "straight_through", "eps": {}}
    for e in FLAGS.eps:
        eps = results.parse_epsilon(e)
        row, robust_all = {}, None
        for mode in FLAGS.modes:
            start = time.time()
            _, robust = registry.get("autoattack").graph_stages(model, x, y, eps, (0.0, 1.0),
                                                                 sign_gradient=mode)
            masks = {k: v.numpy() for k, v in robust.items()}
            row[mode] = {"accuracy": {k: float(np.mean(v)) for k, v in masks.items()},
                         "seconds": round(time.time() - start, 1)}
            final = masks["square"]
            robust_all = final if robust_all is None else robust_all & final
            print(e, mode, row[mode], flush=True)
        start = time.time()
        adv = registry.get("quantized_search")(model, x, y, eps)
        qs = np.argmax(model(adv, training=False).numpy(), 1) == y.numpy()
        row["quantized_search"] = {"accuracy": float(np.mean(qs)),
                                   "seconds": round(time.time() - start, 1)}
        row["worst_case_autoattack_modes"] = float(np.mean(robust_all))
        row["worst_case_all"] = float(np.mean(robust_all & qs))
        print(e, row["quantized_search"], row["worst_case_all"], flush=True)
        out["eps"][e] = row
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    app.run(main)
