r"""Benchmark of ``tfdisc.certify`` on the 10 000 MNIST test images (issue 11 target: ≤ 30 s).

    python -m tfdisc.benchmarks.certify --data_dir=../shared/datasets/mnist
    python -m tfdisc.benchmarks.certify --weights=/tmp/fcn2_full_2b.h5 --rounds=3

Certifies fcn2 (2-bit input unless ``--input_bits``) at three ε with
interval bounds only (``search=False, complete_max_free=0``; float32 with
float32 rounding widening) and, separately, with the whole pipeline (search
and branch and bound). Baseline measured in the same process: a plain float32
forward pass of the model over the same images, once per ε. Medians over
``--rounds`` rounds, and their ratio, are printed. Without ``--weights`` the
model is first trained normally for one epoch (so the bounds see realistic
weights); nothing here asserts a speed.
"""
import os
import platform
import time

from absl import app, flags

import tfdisc  # noqa: F401  (legacy Keras before TensorFlow)

# pylint: disable=wrong-import-position,wrong-import-order
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdisc import certify, data, models  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/datasets/mnist", "MNIST directory.")
flags.DEFINE_string("precision", "full", "fcn2 precision.")
flags.DEFINE_integer("input_bits", 2, "Input bits.")
flags.DEFINE_string("weights", None, "Weights (.h5) of the model; default: one clean epoch.")
flags.DEFINE_list("eps", ["0.05", "0.1", "0.2"], "Three ε values.")
flags.DEFINE_integer("rounds", 3, "Timed rounds; medians reported.")
flags.DEFINE_integer("batch_size", 2000, "Examples per bound batch.")
flags.DEFINE_bool("pipeline", True, "Also time the full pipeline (search + branch and bound).")

TARGET_SECONDS = 30.0


def _cpu():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags_line = next(line for line in lines if line.startswith("flags"))
        extra = " AVX-512 VPOPCNTDQ" if "avx512_vpopcntdq" in flags_line else ""
        return f"{name}{extra}, {len([1 for line in lines if line.startswith('processor')])} CPUs"
    except (OSError, StopIteration):
        return platform.processor()


def main(argv):
    del argv
    x_test, y_test = data.load_arrays("mnist", "test", data_dir=FLAGS.data_dir)
    x_test = x_test.astype(np.float32) / 255.0
    model = models.build("fcn2", precision=FLAGS.precision, input_bits=FLAGS.input_bits)
    if FLAGS.weights:
        model.load_weights(FLAGS.weights)
        origin = os.path.basename(FLAGS.weights)
    else:
        x_train, y_train = data.load_arrays("mnist", "train", data_dir=FLAGS.data_dir)
        model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x_train.astype(np.float32) / 255.0, y_train, batch_size=100, epochs=1,
                  verbose=0)
        origin = "one clean epoch (Adam 1e-3, batch 100)"
    eps_list = [float(e) for e in FLAGS.eps]
    forward = tf.function(lambda t: model(t, training=False))

    def baseline():
        for _ in eps_list:
            for s in range(0, len(y_test), FLAGS.batch_size):
                forward(tf.constant(x_test[s:s + FLAGS.batch_size])).numpy()

    results = {}

    def bounds_only():
        for e in eps_list:
            cert = certify.certify(model, x_test, y_test, e, search=False, complete_max_free=0,
                                   batch_size=FLAGS.batch_size)
            results[e] = cert.fraction("certified")

    candidates = [("forward (baseline)", baseline), ("certify, bounds only", bounds_only)]
    if FLAGS.pipeline:
        pipeline_results = {}

        def pipeline():
            for e in eps_list:
                cert = certify.certify(model, x_test, y_test, e, batch_size=FLAGS.batch_size)
                pipeline_results[e] = cert.counts()

        candidates.append(("certify, search + branch and bound", pipeline))
    baseline()
    bounds_only()  # warm-up (tracing, weights)
    times = {name: [] for name, _ in candidates}
    for _ in range(FLAGS.rounds):
        for name, fn in candidates:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = float(np.median(times["forward (baseline)"]))
    print(f"CPU: {_cpu()}; kernel: TensorFlow {tf.__version__} CPU ops (oneDNN matmul, float32 "
          f"bounds); model {model.name} ({origin}); {len(y_test)} MNIST test images x "
          f"{len(eps_list)} eps {eps_list}; medians of {FLAGS.rounds} rounds")
    for name, _ in candidates:
        med = float(np.median(times[name]))
        target = f"  (target <= {TARGET_SECONDS:.0f} s)" if name.startswith("certify, bounds") \
            else ""
        print(f"  {name:38s} {med:8.2f} s   x{med / base:7.1f} of baseline{target}")
    print("  certified (bounds only):", {e: round(v, 4) for e, v in results.items()})
    if FLAGS.pipeline:
        print("  pipeline status counts:", pipeline_results)


if __name__ == "__main__":
    app.run(main)
