"""Certified (IBP) training on real MNIST, then certified accuracy and attacks at several ε.

Wires flags to ``tfdisc.certify`` (training, certification, quantized-space
search) and ``tfdisc.attacks.pgd``; writes one results JSON.

Example:
  python experiments/scripts/certify_mnist.py --precision=full --eps_train=0.1 \
      --epochs=20 --output=experiments/results/certify/fcn2_full_2b_ibp0.1.json
"""
import json
import os
import time

from absl import app, flags

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow)
# pylint: disable=wrong-import-position,wrong-import-order
import larq as lq  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdisc import attacks, certify, data, models  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "fcn2", "Zoo model.")
flags.DEFINE_enum("precision", "full", ["full", "binary", "xnor"], "Precision.")
flags.DEFINE_integer("input_bits", 2, "Input quantization bits.")
flags.DEFINE_integer("width", None, "Hidden width (zoo default if unset).")
flags.DEFINE_integer("depth", None, "Hidden depth (zoo default if unset).")
flags.DEFINE_float("eps_train", 0.1, "Final training ε.")
flags.DEFINE_integer("epochs", 20, "Training epochs.")
flags.DEFINE_integer("batch_size", 100, "Training batch size.")
flags.DEFINE_float("lr", 1e-3, "Adam learning rate (decayed ×0.1 over the last 25% of epochs).")
flags.DEFINE_float("ramp_start_epochs", 1.0, "Clean epochs before the ε ramp.")
flags.DEFINE_float("ramp_epochs", 8.0, "Epochs of the linear ε/κ ramp.")
flags.DEFINE_float("kappa_end", 0.5, "Final weight of the clean loss.")
flags.DEFINE_list("eval_eps", ["0.1"], "ε values to certify and attack.")
flags.DEFINE_integer("eval_limit", 10000, "Test examples to evaluate.")
flags.DEFINE_integer("attack_limit", 1000, "Test examples attacked by PGD and the search.")
flags.DEFINE_integer("pgd_restarts", 3, "PGD random restarts.")
flags.DEFINE_integer("pgd_steps", 40, "PGD steps.")
flags.DEFINE_integer("complete_max_free", 12, "Branch and bound up to this many free pixels.")
flags.DEFINE_string("data_dir", "../shared/datasets/mnist", "MNIST directory.")
flags.DEFINE_string("output", None, "Results JSON path.")
flags.DEFINE_string("save_weights", None, "Optional path for the trained weights (.h5).")
flags.DEFINE_string("weights", None, "Evaluate these weights (.h5) of a run of this script "
                    "instead of training (the training flags must match that run).")
flags.DEFINE_string("train_log", None, "With --weights: that run's log, for its final epoch.")
flags.DEFINE_integer("search_iterations", 30, "Iterations of the quantized-space search attack.")
flags.DEFINE_integer("max_nodes", 512, "Branch-and-bound nodes per example.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_float("ste_clip", None, "BNN only: larq SteSign(clip_value=...) for the binary layers' "
                   "input quantizer (larq's default 1.0 passes no gradient where |x| > 1, which "
                   "includes the ends of most interval bounds).")


CERTIFY_SEARCH = dict(restarts=0, iterations=10, candidates=8)


def _final_epoch(path):
    """Metrics of the last Keras epoch line of a training log."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if " - loss: " in line]
    parts = lines[-1].strip().split(" - ")
    return {k: float(v) for k, v in (p.split(": ") for p in parts if ": " in p)}


def _pgd_broken(model, x, y, eps, restarts, steps, batch=500):
    broken = np.zeros(len(y), bool)
    for r in range(restarts):
        tf.random.set_seed(FLAGS.seed + r)
        for s in range(0, len(y), batch):
            x_adv = attacks.pgd(model, x[s:s + batch], y[s:s + batch], eps,
                                step_size=attacks.default_step_size(eps, steps), steps=steps,
                                random_start=True)
            pred = model(x_adv, training=False).numpy().argmax(1)
            broken[s:s + batch] |= pred != y[s:s + batch]
    return broken


def main(argv):
    del argv
    tf.random.set_seed(FLAGS.seed)
    np.random.seed(FLAGS.seed)
    x_train, y_train = data.load_arrays("mnist", "train", data_dir=FLAGS.data_dir)
    x_test, y_test = data.load_arrays("mnist", "test", data_dir=FLAGS.data_dir)
    x_train = x_train.astype(np.float32) / 255.0
    x_test = (x_test.astype(np.float32) / 255.0)[:FLAGS.eval_limit]
    y_test = y_test[:FLAGS.eval_limit]
    model = models.build(FLAGS.model, precision=FLAGS.precision, input_bits=FLAGS.input_bits,
                         width=FLAGS.width, depth=FLAGS.depth)
    if FLAGS.ste_clip is not None:
        for layer in model.layers:
            if type(getattr(layer, "input_quantizer", None)).__name__ == "SteSign":
                layer.input_quantizer = lq.quantizers.SteSign(clip_value=FLAGS.ste_clip)
    steps_per_epoch = len(y_train) // FLAGS.batch_size
    trainer = certify.CertifiedTraining(
        model, FLAGS.eps_train, ramp_start=int(FLAGS.ramp_start_epochs * steps_per_epoch),
        ramp_steps=int(FLAGS.ramp_epochs * steps_per_epoch), kappa_end=FLAGS.kappa_end)
    decay_at = int(0.75 * FLAGS.epochs) * steps_per_epoch
    lr = tf.keras.optimizers.schedules.PiecewiseConstantDecay([decay_at], [FLAGS.lr, FLAGS.lr / 10])
    trainer.compile(tf.keras.optimizers.Adam(lr))
    start = time.time()
    if FLAGS.weights:
        model.load_weights(FLAGS.weights)
        final = _final_epoch(FLAGS.train_log) if FLAGS.train_log else None
        train_seconds = None
    else:
        history = trainer.fit(x_train, y_train, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
                              shuffle=True, verbose=2)
        final = {k: float(v[-1]) for k, v in history.history.items()}
        train_seconds = round(time.time() - start, 1)
    if FLAGS.save_weights:
        model.save_weights(FLAGS.save_weights)
    clean = float(np.mean(model.predict(x_test, batch_size=1000, verbose=0).argmax(1) == y_test))
    results = {
        "data": f"MNIST test, first {len(y_test)} examples (attacks: first "
                f"{min(FLAGS.attack_limit, len(y_test))})",
        "model": model.name, "width": FLAGS.width, "depth": FLAGS.depth,
        "ste_clip": FLAGS.ste_clip,
        "training": dict(trainer.describe(), epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                         optimizer=f"adam lr {FLAGS.lr}, x0.1 from epoch {int(0.75 * FLAGS.epochs)}",
                         seconds=train_seconds, final_epoch=final,
                         ramp=f"clean for {FLAGS.ramp_start_epochs} epoch(s), then eps 0 -> "
                              f"{FLAGS.eps_train} and kappa 1 -> {FLAGS.kappa_end} linearly over "
                              f"{FLAGS.ramp_epochs} epochs, then constant"),
        "clean": clean, "eval": {},
    }
    n_att = min(FLAGS.attack_limit, len(y_test))
    for eps in (float(e) for e in FLAGS.eval_eps):
        t0 = time.time()
        cert = certify.certify(model, x_test, y_test, eps,
                               complete_max_free=FLAGS.complete_max_free,
                               max_nodes=FLAGS.max_nodes, search_params=CERTIFY_SEARCH)
        cert_seconds = time.time() - t0
        print(f"eps {eps}: certify {cert_seconds:.0f} s {cert.counts()}", flush=True)
        certified = cert.status == "certified"
        t0 = time.time()
        pgd_broken = _pgd_broken(model, x_test[:n_att], y_test[:n_att], eps, FLAGS.pgd_restarts,
                                 FLAGS.pgd_steps)
        x_q = certify.quantized_search(model, x_test[:n_att], y_test[:n_att], eps, restarts=1,
                                       iterations=FLAGS.search_iterations)
        q_broken = model.predict(x_q, batch_size=1000, verbose=0).argmax(1) != y_test[:n_att]
        attack_seconds = time.time() - t0
        results["eval"][str(eps)] = {
            "certified": cert.fraction("certified"),
            "counterexample": cert.fraction("counterexample"),
            "unknown": cert.fraction("unknown"),
            "decided_by": {k: int(v) for k, v in zip(*np.unique(cert.decided_by,
                                                                return_counts=True))},
            "mean_free_pixels": float(cert.num_free.mean()),
            "certify_seconds": round(cert_seconds, 1),
            "attack_seconds": round(attack_seconds, 1),
            "pgd": {"accuracy": float(1 - pgd_broken.mean()), "restarts": FLAGS.pgd_restarts,
                    "steps": FLAGS.pgd_steps, "step_size": "2.5*eps/steps", "random_start": True,
                    "gradient": "straight_through (BPDA through the quantizer)"},
            "certify_settings": dict(complete_max_free=FLAGS.complete_max_free,
                                     max_nodes=FLAGS.max_nodes,
                                     search=certify.search.describe(**CERTIFY_SEARCH)),
            "quantized_search": dict(certify.search.describe(
                restarts=1, iterations=FLAGS.search_iterations),
                                     accuracy=float(1 - q_broken.mean())),
            "certified_on_attack_subset": float(certified[:n_att].mean()),
            "soundness_violations": int(np.sum(certified[:n_att] & (pgd_broken | q_broken))),
        }
        print(json.dumps({eps: results["eval"][str(eps)]}, indent=1), flush=True)
        if FLAGS.output:  # after every ε, so a long run leaves its finished part
            os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
            with open(FLAGS.output, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    app.run(main)
