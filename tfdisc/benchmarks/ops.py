r"""Benchmarks of the packed binary ops against TensorFlow float32 and LCE.

    python -m tfdisc.benchmarks.ops                 # full run (a few minutes)
    python -m tfdisc.benchmarks.ops --quick         # small shapes, smoke run
    python -m tfdisc.benchmarks.ops --output=experiments/benchmarks/ops.txt

Every comparison is measured side by side in one process: the two (or three)
candidates are timed in interleaved rounds (A, B, A, B, ...), each round long
enough (``--min_round_ms``) to amortize timer and dispatch overhead, and the
medians over rounds are reported together with their ratio. Nothing here is a
test and nothing asserts a speed; the targets of issue 4 are printed next to
the measured ratios so a miss is visible.

Sections:
  roofline  XOR+popcount micro-kernel on L1-resident rows (1 and all threads):
            the binary-MAC ceiling of this CPU with the selected kernel.
  dense     binary_dense vs tf.matmul float32 (M x K x N).
  conv      binary_conv2d vs tf.nn.conv2d float32 on CIFAR BNN layer shapes.
  e2e       tfdisc.convert.to_packed(model) vs the larq model (both in a
            tf.function) for fcn1, fcn2, alexnet_cifar; vs the
            larq-compute-engine interpreter when it is installed.
"""

import os
import platform
import sys
import time

from absl import app, flags

import tfdisc  # noqa: F401  (legacy Keras before TensorFlow)

# pylint: disable=wrong-import-position,wrong-import-order
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small shapes and few rounds (smoke test of the script).")
flags.DEFINE_list("sections", ["roofline", "dense", "conv", "e2e"],
                  "Sections to run: roofline, dense, conv, e2e.")
flags.DEFINE_integer("rounds", 9, "Timed rounds per candidate; the median is reported.")
flags.DEFINE_float("min_round_ms", 40.0, "Minimum duration of one timed round.")
flags.DEFINE_string("output", None, "Also write the report to this file.")
flags.DEFINE_bool("lce", True, "Include larq-compute-engine if it is installed.")
flags.register_validator("rounds", lambda v: v >= 1, message="--rounds must be >= 1.")

TARGETS = {
    ("dense", 256, 4096, 4096): 10.0,
    ("dense", 1, 4096, 4096): 30.0,
    ("e2e", "fcn1", 256): 8.0,
    ("e2e-conv",): 8.0,
    ("e2e-lce",): 20.0,
}


class Report:
    """Prints lines and keeps them for --output."""

    def __init__(self):
        self.lines = []

    def __call__(self, text=""):
        print(text, flush=True)
        self.lines.append(text)


def _calls_per_round(fn, min_round_s):
    fn()
    start = time.perf_counter()
    fn()
    one = max(time.perf_counter() - start, 1e-7)
    return max(1, int(min_round_s / one))


def compare(candidates, rounds, min_round_s):
    """Median seconds per call for each candidate, timed in interleaved rounds."""
    for fn in candidates.values():
        fn()  # warm up (tracing, allocation, library load)
    calls = {name: _calls_per_round(fn, min_round_s) for name, fn in candidates.items()}
    samples = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            n = calls[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: float(np.median(s)) for name, s in samples.items()}


def _sync(value):
    """Forces a result to exist (eager ops are synchronous on CPU, but be
    explicit for tf.function outputs)."""
    if isinstance(value, (list, tuple)):
        value = value[0]
    return value.numpy() if hasattr(value, "numpy") else value


def _fmt_ms(seconds):
    return f"{seconds * 1e3:9.3f} ms"


def environment(report):
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    report(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    report(f"cpu: {cpu}; logical cores: {os.cpu_count()}; "
           f"load average before run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    supported = [k for k in ops.KERNELS[1:] if ops.kernel_supported(k)]
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    report(f"python {platform.python_version()}, tensorflow {tf.__version__}; "
           f"tfdisc kernel: {ops.current_kernel()} (supported: {', '.join(supported)}); "
           f"intra-op threads: {threads}")
    report(f"command: python -m tfdisc.benchmarks.ops {' '.join(sys.argv[1:])}")


def roofline(report, quick):
    """Binary MAC/s of the XOR+popcount loop, per thread count."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel
    from tfdisc.ops import _loader  # pylint: disable=import-outside-toplevel

    lib = _loader.load()
    words = 256  # 8 KiB of rows: L1-resident
    results = {}
    report("== roofline: XOR+popcount micro-kernel (rows in L1) ==")
    for threads in sorted({1, os.cpu_count() or 1}):
        iters = 10_000 if quick else 100_000

        def run(threads=threads, iters=iters):
            return lib.tfdisc_xor_popcount_roofline(words=words, iters=iters, threads=threads)

        macs = int(run().numpy())
        t = compare({"roofline": run}, 3 if quick else 7, 0.0)["roofline"]
        rate = macs / t
        results[threads] = rate
        report(f"  {threads} thread(s), kernel {ops.current_kernel()}: "
               f"{rate / 1e9:8.1f} G binary MAC/s")
    cores = os.cpu_count() or 1
    ceiling = max(results[1] * cores, max(results.values()))
    report(f"  ceiling used below: {ceiling / 1e9:.1f} G binary MAC/s (the larger of "
           f"{cores} x the 1-thread rate and the all-thread rate; other jobs on the "
           "machine lower the measured rates, not this ceiling)")
    report()
    return ceiling


def dense(report, quick, rounds, min_round_s, ceiling):
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    shapes = [(256, 4096, 4096), (1, 4096, 4096), (64, 6144, 6144)]
    if quick:
        shapes = [(32, 512, 512), (1, 512, 512)]
    report("== dense: binary_dense vs tf.matmul float32 (M x K x N) ==")
    report("  'packed' takes bit-packed input (the case inside a converted network);")
    report("  '+bitpack' starts from float input and includes bitpack().")
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        x = tf.constant(rng.standard_normal((m, k)).astype(np.float32))
        w = tf.constant(rng.standard_normal((k, n)).astype(np.float32))
        px = ops.bitpack(x)
        pw = tf.constant(ops.pack_dense_weights(w.numpy()))
        times = compare({
            "matmul": lambda: _sync(tf.linalg.matmul(x, w)),
            "packed": lambda: _sync(ops.binary_dense(px, pw, k)),
            "+bitpack": lambda: _sync(ops.binary_dense(ops.bitpack(x), pw, k)),
        }, rounds, min_round_s)
        macs = m * k * n
        binary_rate = macs / times["packed"]
        target = TARGETS.get(("dense", m, k, n))
        ratio = times["matmul"] / times["packed"]
        report(f"  {m}x{k}x{n}: matmul {_fmt_ms(times['matmul'])} "
               f"({macs / times['matmul'] / 1e9:6.1f} G MAC/s) | packed "
               f"{_fmt_ms(times['packed'])} ({binary_rate / 1e9:7.1f} G binary MAC/s, "
               f"{100 * binary_rate / ceiling:5.1f}% of roofline) | +bitpack "
               f"{_fmt_ms(times['+bitpack'])}")
        line = f"    speed-up vs matmul: {ratio:6.1f}x packed, " \
               f"{times['matmul'] / times['+bitpack']:6.1f}x with bitpack"
        if target:
            line += f"   [target >= {target:.0f}x: {'met' if ratio >= target else 'MISSED'}]"
        report(line)
    # Each forced kernel on the first shape: what users without AVX-512
    # VPOPCNTDQ (or without AVX2) get.
    m, k, n = shapes[0]
    x = tf.constant(rng.standard_normal((m, k)).astype(np.float32))
    w = tf.constant(rng.standard_normal((k, n)).astype(np.float32))
    px = ops.bitpack(x)
    pw = tf.constant(ops.pack_dense_weights(w.numpy()))
    candidates = {"matmul": lambda: _sync(tf.linalg.matmul(x, w))}
    for name in ("avx512", "avx512bw", "avx2", "portable"):
        if ops.kernel_supported(name):
            def run(name=name):
                with ops.use_kernel(name):
                    return _sync(ops.binary_dense(px, pw, k))
            candidates[name] = run
    times = compare(candidates, max(3, rounds // 3), min_round_s)
    report(f"  per kernel at {m}x{k}x{n}: " + " | ".join(
        f"{name} {_fmt_ms(t).strip()} ({times['matmul'] / t:.1f}x matmul)"
        for name, t in times.items() if name != "matmul"))
    report()


CIFAR_CONV = [  # (H, W, C_in, C_out): BinaryNet CIFAR-10 (alexnet_cifar, width 128)
    (32, 32, 128, 128), (16, 16, 128, 256), (16, 16, 256, 256),
    (8, 8, 256, 512), (8, 8, 512, 512),
]


def conv(report, quick, rounds, min_round_s, ceiling):
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    shapes = CIFAR_CONV if not quick else [(8, 8, 64, 64)]
    batches = (1, 16) if not quick else (2,)
    report("== conv: binary_conv2d vs tf.nn.conv2d float32, 3x3 SAME stride 1 ==")
    report("  packed input, float output; 'bits out' emits packed signs (fused BN+sign).")
    rng = np.random.default_rng(1)
    for batch in batches:
        for h, w_, c, o in shapes:
            x = tf.constant(np.where(rng.standard_normal((batch, h, w_, c)) < 0, -1.0, 1.0)
                            .astype(np.float32))
            f = tf.constant(rng.standard_normal((3, 3, c, o)).astype(np.float32))
            px = ops.bitpack(x)
            pf = tf.constant(ops.pack_conv_filter(f.numpy()))
            mult = tf.constant(rng.random(o).astype(np.float32))
            bias = tf.constant(rng.standard_normal(o).astype(np.float32))
            times = compare({
                "conv2d": lambda: _sync(tf.nn.conv2d(x, f, 1, "SAME")),
                "packed": lambda: _sync(ops.binary_conv2d(px, pf, c, padding="SAME",
                                                          pad_value=1)),
                "bits": lambda: _sync(ops.binary_conv2d(px, pf, c, padding="SAME",
                                                        pad_value=1, multiplier=mult,
                                                        bias=bias, output="bitpacked")),
            }, rounds, min_round_s)
            macs = batch * h * w_ * c * o * 9
            rate = macs / times["packed"]
            speedup = times["conv2d"] / times["packed"]
            report(f"  N={batch:2d} {h}x{w_}x{c}->{o}: conv2d {_fmt_ms(times['conv2d'])} "
                   f"| packed {_fmt_ms(times['packed'])} ({speedup:5.1f}x,"
                   f" {100 * rate / ceiling:5.1f}% of roofline) | bits out "
                   f"{_fmt_ms(times['bits'])} ({times['conv2d'] / times['bits']:5.1f}x)")
    report()


def _lce_predictor(model, report):
    """A batch-1 predict function on larq-compute-engine, or None."""
    try:
        # pylint: disable=import-outside-toplevel
        import larq_compute_engine as lce
        from larq_compute_engine.tflite.python.interpreter import Interpreter
    except ImportError:
        report("    (larq-compute-engine not installed: pip install tfdisc[lce])")
        return None
    try:
        flatbuffer = lce.convert_keras_model(model)
        interpreter = Interpreter(flatbuffer, num_threads=os.cpu_count() or 1)
    except Exception as e:  # pylint: disable=broad-except
        report(f"    (larq-compute-engine {getattr(lce, '__version__', '')} could not "
               f"convert {model.name}: {type(e).__name__}: {e})")
        return None
    return interpreter.predict


def e2e(report, quick, rounds, min_round_s, use_lce):
    from tfdisc import convert  # pylint: disable=import-outside-toplevel

    # (name, build kwargs, batches, run LCE). LCE 0.16's converter fails on
    # fcn1 (450 MiB of float weights: "cannot create std::vector larger than
    # max_size()" or a segfault), so it is not attempted there.
    cases = [("fcn1", {}, (256, 1), False), ("fcn2", {}, (256, 1), True),
             ("alexnet_cifar", {}, (1, 32), True)]
    if quick:
        cases = [("fcn2", dict(width=64, depth=2), (8, 1), True),
                 ("alexnet_cifar", dict(width=16, depth=1, input_shape=(16, 16, 3)), (1,),
                  True)]
    report("== e2e: to_packed(model) vs the larq model, both inside tf.function ==")
    rng = np.random.default_rng(2)
    for name, kwargs, batches, try_lce in cases:
        model = tfdisc.models.build(name, precision="binary", **kwargs)
        packed = convert.to_packed(model)
        r = packed.packing_report
        report(f"  {name}: {len(r.packed_layers)} packed layers, {len(r.bitpacked_outputs)} "
               f"with bit outputs; weights {r.float_bytes / 2**20:.2f} MiB float -> "
               f"{r.packed_bytes / 2**20:.2f} MiB ({r.compression:.1f}x; binary layers "
               f"{r.binary_float_bytes / max(r.binary_packed_bytes, 1):.1f}x)")
        larq_fn = tf.function(lambda v, m=model: m(v, training=False))
        packed_fn = tf.function(lambda v, m=packed: m(v, training=False))
        lce_predict = _lce_predictor(model, report) if use_lce and try_lce else None
        if use_lce and not try_lce:
            report("    (larq-compute-engine not run: its converter fails on this model)")
        for batch in batches:
            x = tf.constant(rng.random((batch, *model.input_shape[1:])).astype(np.float32))
            agree = float(np.mean(np.argmax(larq_fn(x).numpy(), -1)
                                  == np.argmax(packed_fn(x).numpy(), -1)))
            candidates = {"larq": lambda: _sync(larq_fn(x)),
                          "packed": lambda: _sync(packed_fn(x))}
            if lce_predict is not None and batch == 1:
                xn = x.numpy()
                candidates["lce"] = lambda: lce_predict(xn)
            times = compare(candidates, rounds, min_round_s)
            ratio = times["larq"] / times["packed"]
            line = (f"    batch {batch:3d}: larq {_fmt_ms(times['larq'])} | packed "
                    f"{_fmt_ms(times['packed'])} | {ratio:6.1f}x larq")
            target = TARGETS.get(("e2e", name, batch))
            if name == "alexnet_cifar" and not quick:
                target = TARGETS[("e2e-conv",)]
            if target:
                line += f" [target >= {target:.0f}x: {'met' if ratio >= target else 'MISSED'}]"
            if "lce" in times:
                lratio = times["lce"] / times["packed"]
                line += f" | lce {_fmt_ms(times['lce'])} | {lratio:6.1f}x lce"
                if name == "alexnet_cifar" and not quick:
                    target = TARGETS[("e2e-lce",)]
                    line += f" [target >= {target:.0f}x: {'met' if lratio >= target else 'MISSED'}]"
            line += f" | argmax agreement {100 * agree:.0f}%"
            report(line)
    report()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = set(FLAGS.sections) - {"roofline", "dense", "conv", "e2e"}
    if unknown:
        raise app.UsageError(f"Unknown --sections: {sorted(unknown)}")
    report = Report()
    environment(report)
    report()
    rounds = 3 if FLAGS.quick else FLAGS.rounds
    min_round_s = FLAGS.min_round_ms / 1e3 / (4 if FLAGS.quick else 1)
    ceiling = None
    if "roofline" in FLAGS.sections or "dense" in FLAGS.sections or "conv" in FLAGS.sections:
        ceiling = roofline(report, FLAGS.quick)
    if "dense" in FLAGS.sections:
        dense(report, FLAGS.quick, rounds, min_round_s, ceiling)
    if "conv" in FLAGS.sections:
        conv(report, FLAGS.quick, rounds, min_round_s, ceiling)
    if "e2e" in FLAGS.sections:
        e2e(report, FLAGS.quick, rounds, min_round_s, FLAGS.lce)
    report(f"load average after run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w") as f:
            f.write("\n".join(report.lines) + "\n")


if __name__ == "__main__":
    app.run(main)
