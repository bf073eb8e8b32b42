"""Exact certification (tfdisc.certify, method="exact") of a saved run (BNN or ReLU network) on MNIST
test images.

Wires flags to ``tfdisc.certify.sweep``; for comparison also records what the
interval bounds alone certify (no search, no complete method) on the same
images. Writes one results JSON (paths relative to the repository).

Example:
  python experiments/scripts/certify_exact.py --run_dir=../runs/fcn2_binary_2b \
      --epsilons=0,0.005,0.01,0.02 --limit=1000 \
      --output=experiments/results/certify_exact/fcn2_binary_2b.json
"""
import json
import os
import time

from absl import app, flags

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow)
# pylint: disable=wrong-import-position,wrong-import-order
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdisc import attacks, certify, data, run_dir  # noqa: E402
from tfdisc.benchmarks import cpu  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A run's output directory (its model.keras is certified).")
flags.DEFINE_list("epsilons", ["0", "0.01", "0.02"], "ε values.")
flags.DEFINE_integer("limit", 1000, "First N MNIST test images.")
flags.DEFINE_enum("solver", "milp", ["milp", "sat"], "Exact verifier's solver.")
flags.DEFINE_float("time_limit", 10.0, "Seconds per example and ε.")
flags.DEFINE_string("data_dir", "../shared/datasets/mnist", "MNIST directory.")
flags.DEFINE_string("output", None, "Results JSON path.")
flags.DEFINE_bool("attack_check", False, "Also attack every example (PGD, 20 steps, 3 random "
                  "restarts, straight-through gradient; and the gradient-free quantized search) "
                  "and count certified examples an attack broke (must be 0).")
flags.mark_flags_as_required(["run_dir", "output"])


def main(argv):
    del argv
    model = run_dir.load_model(FLAGS.run_dir)
    x, y = data.load_arrays("mnist", "test", data_dir=FLAGS.data_dir)
    x = data.to_float(x[:FLAGS.limit]).numpy()
    y = np.asarray(y[:FLAGS.limit], np.int64).reshape(-1)
    epsilons = [float(e) for e in FLAGS.epsilons]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(y))
    start = time.time()
    exact = certify.sweep(model, ds, epsilons, method="exact", solver=FLAGS.solver,
                          time_limit=FLAGS.time_limit, return_examples=FLAGS.attack_check)
    certificates = exact.pop("certificates", None)
    exact_seconds = time.time() - start
    ibp = certify.sweep(model, ds, epsilons, method="branch", complete_max_free=0, search=False)
    clean = float(np.mean(model.predict(x, batch_size=500, verbose=0).argmax(1) == y))
    key = lambda e: f"{e:g}"  # noqa: E731
    check = {}
    for e in epsilons if FLAGS.attack_check else []:
        if e == 0:
            continue
        certified = np.concatenate([c.status for c in certificates[e]]) == "certified"
        broken = np.zeros(len(y), bool)
        for restart in range(3):
            tf.random.set_seed(restart)
            x_adv = attacks.pgd(model, x, y, e, step_size=attacks.default_step_size(e, 20),
                                steps=20, random_start=True)
            broken |= model.predict(x_adv, batch_size=500, verbose=0).argmax(1) != y
        x_q = certify.quantized_search(model, x, y, e)
        broken |= model.predict(x_q, batch_size=500, verbose=0).argmax(1) != y
        check[key(e)] = {"broken_by_attacks": int(broken.sum()),
                         "certified_and_broken": int(np.sum(certified & broken))}
    out = {
        "model": os.path.basename(os.path.normpath(FLAGS.run_dir)),
        "data": f"MNIST test set, first {len(y)} images (exact IDX files)",
        "clean_accuracy": clean,
        "exact": {k: ({key(e): val for e, val in v.items()} if isinstance(v, dict) and v
                      and all(isinstance(e, float) for e in v) else v)
                  for k, v in exact.items()},
        "interval_only": {"certified": {key(e): v for e, v in ibp["certified"].items()}},
        "wall_seconds": round(exact_seconds, 1),
        **({"attack_check": {"attacks": "PGD (20 steps, 3 random restarts, straight-through "
                                         "gradient through the quantizer) and quantized_search",
                             "per_eps": check}} if check else {}),
        "cpu": cpu.summary(),
        "command": "python experiments/scripts/certify_exact.py " + " ".join(
            f"--{k}={','.join(v) if isinstance(v, list) else v}" for k, v in
            (("run_dir", os.path.basename(os.path.normpath(FLAGS.run_dir))),
             ("epsilons", FLAGS.epsilons), ("limit", FLAGS.limit), ("solver", FLAGS.solver),
             ("time_limit", FLAGS.time_limit))) + (" --attack_check" if FLAGS.attack_check else ""),
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    app.run(main)
