r"""Verifies every export format of a trained model on real test images.

For each format of tfdisc.export: argmax agreement with the Keras model, the
largest logit difference, accuracy, file size and batch-1 latency (median)
in the format's own runtime; then "the defence survives export": FGSM and
PGD examples crafted on the Keras model (gradient straight-through the input
quantizer, tfdisc.attacks) evaluated on every format.

Example (the committed results):

  python experiments/export/verify.py --model_dir=/tmp/exp_fcn2 --dataset=mnist \
      --data_dir=../shared/datasets/mnist --eps=0.1 --name=mnist_fcn2_bnn_2b
  python experiments/export/verify.py --model_dir=/tmp/exp_alexnet --dataset=cifar10 \
      --data_dir=../shared/datasets/cifar10 --eps=8/255 --name=cifar10_alexnet_cifar_bnn_2b

Writes experiments/export/results/NAME.json (paths relative to the repo).
"""
import fractions
import json
import os
import platform
import shutil
import tempfile
import time

from absl import app, flags

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from tfdisc import attacks, data, export

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Run directory holding model.keras and flags.json.")
flags.DEFINE_enum("dataset", None, ["mnist", "cifar10"], "Test set.")
flags.DEFINE_string("data_dir", None, "Local data directory.")
flags.DEFINE_string("name", None, "Result name (experiments/export/results/NAME.json).")
flags.DEFINE_integer("n", 1000, "Test images: N drawn without replacement from the test split "
                     "(numpy default_rng(--sample_seed)); the CIFAR10 archive is sorted by class, "
                     "so the first N would be one class.")
flags.DEFINE_integer("sample_seed", 0, "Seed of the test-image sample.")
flags.DEFINE_string("eps", "0.1", "L-inf budget of FGSM and PGD (fractions like 8/255 ok).")
flags.DEFINE_integer("pgd_steps", 20, "PGD steps.")
flags.DEFINE_integer("latency_runs", 200, "Batch-1 runs per format for the median latency.")
flags.DEFINE_list("formats", list(export.FORMATS), "Formats to verify.")
flags.DEFINE_list("int8_formats", ["tflite", "lce"], "Flatbuffer formats also verified with "
                  "float_weights='int8' (rows FORMAT_int8).")
flags.DEFINE_string("work_dir", None, "Where the artifacts go (default: a temp dir, removed).")
flags.mark_flags_as_required(["model_dir", "dataset", "name"])

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def batch1_latency_ms(fmt, path, model, image, runs):
    """Median batch-1 latency (ms) in the format's own runtime."""
    if fmt == "keras":
        fn = tf.function(lambda x: model(x, training=False))
        run = lambda: fn(image).numpy()  # noqa: E731
    elif fmt in ("saved_model", "packed_saved_model"):
        serve = export.load(path).signatures["serving_default"]
        tensor = tf.constant(image)
        run = lambda: serve(image=tensor)["logits"].numpy()  # noqa: E731
    else:
        interpreter = export.load(path)
        if isinstance(interpreter, tf.lite.Interpreter):
            inp = interpreter.get_input_details()[0]["index"]
            out = interpreter.get_output_details()[0]["index"]

            def run():
                interpreter.set_tensor(inp, image)
                interpreter.invoke()
                return interpreter.get_tensor(out)
        else:  # LCE testing.Interpreter: its C++ interpreter, one image per call
            inner = interpreter.interpreter
            run = lambda: inner.predict([image])  # noqa: E731
    for _ in range(10):
        run()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv):
    del argv
    eps = float(fractions.Fraction(FLAGS.eps))
    model = export.load(os.path.join(FLAGS.model_dir, "model.keras"))
    with open(os.path.join(FLAGS.model_dir, "flags.json")) as f:
        run_flags = json.load(f)
    x_u8, y = data.load_arrays(FLAGS.dataset, "test", data_dir=FLAGS.data_dir)
    index = np.sort(np.random.default_rng(FLAGS.sample_seed).choice(len(y), FLAGS.n,
                                                                     replace=False))
    x = x_u8[index].astype(np.float32) / 255.0
    y = y[index].astype(np.int64)

    want = model.predict(x, batch_size=250, verbose=0)
    adv = {
        "fgsm": np.concatenate([attacks.fgsm(model, x[i:i + 250], y[i:i + 250], eps)
                                for i in range(0, len(x), 250)]),
        "pgd": np.concatenate([attacks.pgd(
            model, x[i:i + 250], y[i:i + 250], eps, steps=FLAGS.pgd_steps,
            step_size=attacks.default_step_size(eps, FLAGS.pgd_steps))
            for i in range(0, len(x), 250)]),
    }
    adv_want = {k: model.predict(v, batch_size=250, verbose=0) for k, v in adv.items()}

    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="tfdisc_export_")
    try:
        paths = export.export(model, work, FLAGS.formats)
        for fmt in FLAGS.int8_formats:
            # One directory per format: export() refuses a directory holding another export.
            paths[f"{fmt}_int8"] = export.export(model, os.path.join(work, "int8", fmt), [fmt],
                                                 float_weights="int8")[fmt]
        keras_path = os.path.join(FLAGS.model_dir, "model.keras")
        rows = {"keras": {
            "file_bytes": os.path.getsize(keras_path),
            "accuracy": float(np.mean(want.argmax(-1) == y)),
            "argmax_agreement": 1.0, "max_abs_logit_diff": 0.0,
            "adversarial_accuracy": {k: float(np.mean(v.argmax(-1) == y))
                                     for k, v in adv_want.items()},
            "latency_ms_batch1": batch1_latency_ms("keras", None, model, x[:1],
                                                   FLAGS.latency_runs),
            "runtime": f"TensorFlow {tf.__version__} (tf.function, default threads)",
        }}
        for fmt, path in paths.items():
            predict = export.predictor(path)
            got = predict(x)
            agree = got.argmax(-1) == want.argmax(-1)
            top2 = np.sort(want, axis=-1)[:, -2:]
            row = {
                "file_bytes": export.artifact_bytes(path),
                "accuracy": float(np.mean(got.argmax(-1) == y)),
                "argmax_agreement": float(agree.mean()),
                "max_abs_logit_diff": float(np.abs(got - want).max()),
                "disagreeing_keras_top2_margins": [float(m) for m in
                                                   (top2[:, 1] - top2[:, 0])[~agree]],
                "adversarial_accuracy": {}, "adversarial_argmax_agreement": {},
                "latency_ms_batch1": batch1_latency_ms(fmt, path, model, x[:1],
                                                       FLAGS.latency_runs),
                "runtime": {"saved_model": f"TensorFlow {tf.__version__} SavedModel signature",
                            "packed_saved_model": "TensorFlow SavedModel signature on "
                                                  "tfdisc C++ ops (kernel auto)",
                            "tflite": "tf.lite.Interpreter, 1 thread (XNNPACK delegate)",
                            "lce": "larq_compute_engine.testing.Interpreter 0.16, 1 thread",
                            "tflite_int8": "tf.lite.Interpreter, 1 thread (XNNPACK delegate), "
                                           "dynamic-range int8 weights",
                            "lce_int8": "larq_compute_engine.testing.Interpreter 0.16, 1 "
                                        "thread, int8 full-precision kernels (hybrid)"}[fmt],
            }
            if fmt.startswith("lce"):
                row["lite_ops"] = export.lite_ops(path)
            for name, xa in adv.items():
                ga = predict(xa)
                row["adversarial_accuracy"][name] = float(np.mean(ga.argmax(-1) == y))
                row["adversarial_argmax_agreement"][name] = float(
                    np.mean(ga.argmax(-1) == adv_want[name].argmax(-1)))
            rows[fmt] = row
            print(fmt, json.dumps({k: v for k, v in row.items()
                                   if k != "disagreeing_keras_top2_margins"}), flush=True)
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    record = {
        "name": FLAGS.name,
        "model": model.name,
        "run_flags": {k: run_flags.get(k) for k in ("model", "precision", "binary", "bits",
                                                     "epochs", "width", "depth", "seed")},
        "data": {"dataset": FLAGS.dataset, "split": "test", "examples": int(len(y)),
                 "which": f"{len(y)} drawn without replacement, numpy default_rng("
                          f"{FLAGS.sample_seed}).choice",
                 "labels_per_class": np.bincount(y).tolist()},
        "attack": {"fgsm": {"eps": FLAGS.eps},
                   "pgd": {"eps": FLAGS.eps, "steps": FLAGS.pgd_steps,
                           "step_size": attacks.default_step_size(eps, FLAGS.pgd_steps),
                           "random_start": True},
                   "crafted_on": "the Keras model",
                   "gradient": "straight-through the input quantizer (BPDA), larq STE "
                               "through the sign"},
        "cpu": cpu_name(),
        "load_average": os.getloadavg(),
        "versions": {"tensorflow": tf.__version__, "tfdisc": tfdisc.__version__},
        "formats": rows,
        "command": "python experiments/export/verify.py " + " ".join(
            f"--{k}={FLAGS[k].value}" for k in ("model_dir", "dataset", "n", "sample_seed", "eps",
                                             "name")) + " --int8_formats=" + ",".join(
                                                 FLAGS.int8_formats),
    }
    record["command"] = record["command"].replace(FLAGS.model_dir, "RUN_DIR")
    out = os.path.join(REPO, "experiments", "export", "results", f"{FLAGS.name}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=1)
    print("wrote", os.path.relpath(out, REPO))


if __name__ == "__main__":
    app.run(main)
