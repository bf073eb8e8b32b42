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

The header prints the CPU (model, family/model numbers, the SIMD flags the
kernels care about) and every line names the kernel that produced it
(``ops.selected_kernel()``): every section runs each supported kernel
(``--kernels``, default all but ``reference``) side by side, and each kernel's
rate is also given as a percentage of its **own** roofline, which carries
across machines (an AVX-512 host can report the AVX2 kernel forced).
``--emulate=avx2`` goes further on an AVX-512 host: it also caps TensorFlow's
float kernels (oneDNN) and LCE's (ruy) to AVX2, so the ratios against float
are those of an AVX2-only CPU with this host's clock and caches
(``tfdisc.benchmarks.cpu``; the header states the ISA oneDNN reports).

Sections:
  roofline  XOR+popcount micro-kernel on L1-resident rows (1 and all threads),
            per kernel: the binary-MAC ceiling of this CPU with that kernel.
  dense     binary_dense (each kernel) vs tf.matmul float32 (M x K x N).
  dispatch  (tfdisc.benchmarks.dispatch) what waking all intra-op threads
            costs per op, and batch-1 binary_dense / binary_conv2d vs
            tf.matmul / tf.nn.conv2d, both inside a graph loop, without
            Python's per-call dispatch.
  conv      binary_conv2d (each kernel) vs tf.nn.conv2d float32 on CIFAR BNN
            layer shapes, batch 1 and 16.
  e2e       (tfdisc.benchmarks.e2e) tfdisc.convert.to_packed(model) vs the
            larq model (both in a tf.function) for fcn1, fcn2, alexnet_cifar,
            with the auto kernel and each forced kernel; vs the
            larq-compute-engine interpreter when it is installed.
  summary   one table: each kernel's figures against the targets.
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

from tfdisc.benchmarks import cpu, dispatch, e2e, timing  # noqa: E402
from tfdisc.benchmarks.marks import ROOFLINE_SHARE_TARGET, share_mark, target_mark  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small shapes and few rounds (smoke test of the script).")
SECTIONS = ("roofline", "dense", "dispatch", "conv", "e2e")
flags.DEFINE_list("sections", list(SECTIONS), "Sections to run: " + ", ".join(SECTIONS) + ".")
flags.DEFINE_integer("rounds", 9, "Timed rounds per candidate; the median is reported.")
flags.DEFINE_float("min_round_ms", 40.0, "Minimum duration of one timed round.")
flags.DEFINE_string("output", None, "Also write the report to this file.")
flags.DEFINE_bool("lce", True, "Include larq-compute-engine if it is installed.")
flags.DEFINE_list("kernels", None,
                  "Kernels to time (default: every supported one except reference).")
flags.DEFINE_bool("compare_no_pool", True,
                  "dispatch section: also time each kernel with the op library's spinning "
                  "worker pool off (TFDISC_OPS_SPIN_US=0), and eager calls with it on and off.")
flags.DEFINE_enum("emulate", None, sorted(cpu.EMULATIONS),
                  "Emulate a CPU with less SIMD on this host (tfdisc.benchmarks.cpu): cap "
                  "oneDNN (TensorFlow's MatMul/Conv2D) and ruy (LCE) to its ISA and time only "
                  "its tfdisc kernels, so ratios against float mean what they would there.")
flags.register_validator("rounds", lambda v: v >= 1, message="--rounds must be >= 1.")

# Issue 4 (auto kernel) and issue 13 (every kernel on a CPU that has it as
# its best: AVX2-only, NEON; portable: never slower than float).
TARGETS = {
    ("dense", 256, 4096, 4096): 10.0,
    ("dense", 1, 4096, 4096): 30.0,
    ("e2e", "fcn1", 256): 8.0,
    ("e2e", "alexnet_cifar", 1): 12.0,
    ("e2e", "alexnet_cifar", 32): 8.0,
    ("e2e-lce",): 20.0,
    # Issue 31: alexnet_cifar batch 1 vs LCE and larq >= 20x (fused), the fused op at
    # most 2x the binary convolutions' time at the kernel roofline.
    ("e2e-fused", "alexnet_cifar", 1): 20.0,
    ("e2e-fused-conv", "alexnet_cifar", 1): 2.0,
}
PORTABLE_TARGET = ("dense", 256, 4096, 4096, 1.5)  # portable >= 1.5x tf.matmul
KERNEL_ORDER = ("avx512", "avx512bw", "avx2", "neon", "portable")


class Report:
    """Prints lines and keeps them for --output."""

    def __init__(self):
        self.lines = []

    def __call__(self, text=""):
        print(text, flush=True)
        self.lines.append(text)


def bench_kernels():
    """The kernels to time: --kernels, or every supported one but reference."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    if FLAGS.kernels:
        unknown = [k for k in FLAGS.kernels if k not in ops.KERNELS[1:]]
        if unknown:
            raise app.UsageError(f"Unknown --kernels {unknown}; choose from {ops.KERNELS[1:]}")
        missing = [k for k in FLAGS.kernels if not ops.kernel_supported(k)]
        if missing:
            raise app.UsageError(f"This CPU does not support --kernels {missing}")
        if FLAGS.emulate and set(FLAGS.kernels) - set(cpu.EMULATIONS[FLAGS.emulate].kernels):
            raise app.UsageError(f"--emulate={FLAGS.emulate} has only kernels "
                                 f"{cpu.EMULATIONS[FLAGS.emulate].kernels}, not {FLAGS.kernels}")
        return list(FLAGS.kernels)
    if FLAGS.emulate:
        return list(cpu.EMULATIONS[FLAGS.emulate].kernels)
    return [k for k in KERNEL_ORDER if ops.kernel_supported(k)]


def _host_auto_kernel():
    """The kernel 'auto' picks on this host."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    with ops.use_kernel("auto"):
        return ops.selected_kernel()


def auto_kernel():
    """The kernel 'auto' picks on the CPU measured: this one, or the emulated one's best."""
    if FLAGS.emulate:
        return cpu.EMULATIONS[FLAGS.emulate].kernels[0]
    return _host_auto_kernel()


def environment(report):
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    model, ident, cpu_flags = cpu.describe()
    report(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    report(f"cpu: {model} ({ident}, {platform.machine()}); logical cores: {os.cpu_count()}; "
           f"load average before run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    report(f"cpu flags (of {', '.join(cpu.FLAGS)}): {' '.join(cpu_flags) or 'none'}")
    if FLAGS.emulate:
        capped = ", ".join(f"{k}={v}" for k, v in cpu.EMULATIONS[FLAGS.emulate].env.items())
        report(f"EMULATED {FLAGS.emulate}-only CPU: float libraries capped ({capped}); "
               f"oneDNN reports isa: {cpu.onednn_isa()}; tfdisc kernels timed: "
               f"{', '.join(bench_kernels())}. Clock, caches and memory are this host's.")
    supported = [k for k in ops.KERNELS[1:] if ops.kernel_supported(k)]
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    report(f"python {platform.python_version()}, tensorflow {tf.__version__}; "
           f"kernel 'auto' runs {_host_auto_kernel()} on this host (supported: {', '.join(supported)}); "
           f"intra-op threads: {threads}")
    spin = os.environ.get(ops.kernel_select.SPIN_ENV_VAR)
    report(f"spinning pool for small work (opt-in): TFDISC_OPS_SPIN_US="
           f"{spin if spin is not None else 'unset (off)'}; 'pool on' lines use "
           f"{dispatch.pool_on_us()} us")
    report(f"command: python -m tfdisc.benchmarks.ops {' '.join(sys.argv[1:])}")


def roofline(report, quick, kernels, rounds, min_round_s):
    """Binary MAC/s of each kernel's XOR+popcount tile, per thread count.

    Returns {kernel: ceiling}, the ceiling being the larger of cores x the
    1-thread rate and the all-thread rate.
    """
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel
    lib = ops.library()
    words = 256  # 8 KiB of rows: L1-resident
    cores = os.cpu_count() or 1
    ceilings = {}
    report("== roofline: XOR+popcount micro-kernel of each kernel (rows in L1) ==")
    for kernel in kernels:
        rates = {}
        for threads in sorted({1, cores}):
            iters = 2_000 if quick else 20_000
            if kernel == "portable":
                iters //= 4

            def run(threads=threads, iters=iters):
                return lib.tfdisc_xor_popcount_roofline(words=words, iters=iters,
                                                        threads=threads)

            run = timing.forced(kernel, run)
            macs = int(run().numpy())
            # Timed like every op below (same rounds and round length), so
            # that on a shared machine the roofline and the ops see the same
            # kind of interference and "% of roofline" compares like with
            # like. cc_ops/bench/run.sh gives undisturbed one-thread figures.
            t = timing.compare({"roofline": run}, rounds, min_round_s)["roofline"]
            rates[threads] = macs / t
        ceilings[kernel] = max(rates[1] * cores, max(rates.values()))
        report(f"  {kernel:9s}: " + " | ".join(
            f"{threads} thread(s) {rate / 1e9:8.1f} G binary MAC/s"
            for threads, rate in sorted(rates.items()))
            + f" | ceiling {ceilings[kernel] / 1e9:8.1f}")
    report(f"  ceiling = larger of {cores} x the 1-thread rate and the all-thread rate "
           "(other jobs on the machine lower the measured rates, not this ceiling)")
    report()
    return ceilings


def dense(report, quick, rounds, min_round_s, ceilings, kernels, summary):
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    shapes = [(256, 4096, 4096), (1, 4096, 4096), (64, 6144, 6144)]
    if quick:
        shapes = [(32, 512, 512), (1, 512, 512)]
    report("== dense: binary_dense (each kernel) vs tf.matmul float32 (M x K x N) ==")
    report("  packed input (the case inside a converted network); '+bitpack' starts from")
    report("  float input and includes bitpack() (auto kernel).")
    rng = np.random.default_rng(0)
    auto = auto_kernel()
    for m, k, n in shapes:
        x = tf.constant(rng.standard_normal((m, k)).astype(np.float32))
        w = tf.constant(rng.standard_normal((k, n)).astype(np.float32))
        px = ops.bitpack(x)
        pw = tf.constant(ops.pack_dense_weights(w.numpy()))
        candidates = {"matmul": lambda: timing.sync(tf.linalg.matmul(x, w)),
                      "+bitpack": timing.forced(auto, lambda: timing.sync(
                          ops.binary_dense(ops.bitpack(x), pw, k)))}
        for kernel in kernels:
            candidates[kernel] = timing.forced(kernel, lambda: timing.sync(ops.binary_dense(px, pw, k)))
        # Slow kernels get fewer rounds' worth of calls, not fewer rounds.
        times = timing.compare(candidates, rounds, min_round_s)
        macs = m * k * n
        report(f"  {m}x{k}x{n}: matmul {timing.fmt_ms(times['matmul'])} "
               f"({macs / times['matmul'] / 1e9:6.1f} G MAC/s) | +bitpack ({auto}) "
               f"{timing.fmt_ms(times['+bitpack'])} ({times['matmul'] / times['+bitpack']:5.1f}x)")
        for kernel in kernels:
            rate = macs / times[kernel]
            ratio = times["matmul"] / times[kernel]
            share = 100 * rate / ceilings[kernel]
            target = TARGETS.get(("dense", m, k, n))
            if kernel == "portable":
                target = PORTABLE_TARGET[-1] if (m, k, n) == PORTABLE_TARGET[1:4] else None
            line = (f"    kernel {kernel:9s}{' (auto)' if kernel == auto else '       '} "
                    f"{timing.fmt_ms(times[kernel])} {ratio:6.1f}x matmul, "
                    f"{rate / 1e9:7.1f} G binary MAC/s = {share:5.1f}% of its roofline"
                    + target_mark(ratio, target))
            if m == 1 and kernel != "portable":
                line += share_mark(share)
            report(line)
            summary.setdefault(kernel, {})[f"dense {m}x{k}x{n}"] = (ratio, share, target)
    report()


CIFAR_CONV = [  # (H, W, C_in, C_out): BinaryNet CIFAR-10 (alexnet_cifar, width 128)
    (32, 32, 128, 128), (16, 16, 128, 256), (16, 16, 256, 256),
    (8, 8, 256, 512), (8, 8, 512, 512),
]


def conv(report, quick, rounds, min_round_s, ceilings, kernels, summary):
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    shapes = CIFAR_CONV if not quick else [(8, 8, 64, 64)]
    batches = (1, 16) if not quick else (2,)
    report("== conv: binary_conv2d (each kernel) vs tf.nn.conv2d float32, 3x3 SAME ==")
    report("  packed input, float output; 'bits out' (auto kernel) emits packed signs")
    report("  (fused BN+sign).")
    rng = np.random.default_rng(1)
    auto = auto_kernel()
    for batch in batches:
        for h, w_, c, o in shapes:
            x = tf.constant(np.where(rng.standard_normal((batch, h, w_, c)) < 0, -1.0, 1.0)
                            .astype(np.float32))
            f = tf.constant(rng.standard_normal((3, 3, c, o)).astype(np.float32))
            px = ops.bitpack(x)
            pf = tf.constant(ops.pack_conv_filter(f.numpy()))
            mult = tf.constant(rng.random(o).astype(np.float32))
            bias = tf.constant(rng.standard_normal(o).astype(np.float32))
            candidates = {
                "conv2d": lambda: timing.sync(tf.nn.conv2d(x, f, 1, "SAME")),
                "bits": timing.forced(auto, lambda: timing.sync(ops.binary_conv2d(
                    px, pf, c, padding="SAME", pad_value=1, multiplier=mult, bias=bias,
                    output="bitpacked"))),
            }
            for kernel in kernels:
                candidates[kernel] = timing.forced(kernel, lambda: timing.sync(ops.binary_conv2d(
                    px, pf, c, padding="SAME", pad_value=1)))
            times = timing.compare(candidates, rounds, min_round_s)
            macs = batch * h * w_ * c * o * 9
            report(f"  N={batch:2d} {h}x{w_}x{c}->{o}: conv2d {timing.fmt_ms(times['conv2d'])} | "
                   f"bits out ({auto}) {timing.fmt_ms(times['bits'])} "
                   f"({times['conv2d'] / times['bits']:5.1f}x)")
            for kernel in kernels:
                rate = macs / times[kernel]
                share = 100 * rate / ceilings[kernel]
                ratio = times["conv2d"] / times[kernel]
                line = (f"    kernel {kernel:9s}{' (auto)' if kernel == auto else '       '} "
                        f"{timing.fmt_ms(times[kernel])} {ratio:6.1f}x conv2d, "
                        f"{share:5.1f}% of its roofline")
                if kernel != "portable":
                    line += share_mark(share)
                report(line)
                summary.setdefault(kernel, {})[f"conv N={batch} {h}x{w_}x{c}->{o}"] = (
                    ratio, share, None)
    report()


def summarize(report, summary):
    """One table per kernel: every figure, its % of roofline, its target."""
    report("== summary: per kernel (ratio vs float / larq / lce; % of the kernel's own "
           "roofline) ==")
    for kernel, rows in summary.items():
        report(f"  kernel {kernel}:")
        for label, (ratio, share, target) in rows.items():
            line = f"    {label:38s} {ratio:7.1f}x"
            line += f"  {share:5.1f}% roofline" if share is not None else " " * 17
            if target is not None:
                line += f"  target >= {target:g}x: {'met' if ratio >= target else 'MISSED'}"
            if share is not None and kernel != "portable" and (
                    label.startswith("conv") or label.startswith("dense 1x")):
                line += (f"  (>= {ROOFLINE_SHARE_TARGET:.0f}% roofline: "
                         f"{'met' if share >= ROOFLINE_SHARE_TARGET else 'MISSED'})")
            report(line)
    report()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = set(FLAGS.sections) - set(SECTIONS)
    if unknown:
        raise app.UsageError(f"Unknown --sections: {sorted(unknown)}")
    if FLAGS.emulate:
        try:
            cpu.emulate(FLAGS.emulate)
        except ValueError as e:
            raise app.UsageError(str(e)) from e
    report = Report()
    environment(report)
    report()
    rounds = 3 if FLAGS.quick else FLAGS.rounds
    rounds = min(rounds, FLAGS.rounds)
    min_round_s = FLAGS.min_round_ms / 1e3 / (4 if FLAGS.quick else 1)
    kernels = bench_kernels()
    summary = {}
    ceilings = None
    if {"roofline", "dense", "dispatch", "conv"} & set(FLAGS.sections):
        ceilings = roofline(report, FLAGS.quick, kernels, rounds, min_round_s)
    if "dense" in FLAGS.sections:
        dense(report, FLAGS.quick, rounds, min_round_s, ceilings, kernels, summary)
    if "dispatch" in FLAGS.sections:
        dispatch.dispatch(report, timing.compare, rounds, min_round_s, FLAGS.quick)
        dispatch.gemv(report, timing.compare, rounds, min_round_s, ceilings, kernels, summary,
                      FLAGS.quick, forced=timing.forced,
                      target=None if FLAGS.quick else TARGETS[("dense", 1, 4096, 4096)],
                      share_target=ROOFLINE_SHARE_TARGET, pool_off=FLAGS.compare_no_pool)
        dispatch.gemv(report, timing.compare, rounds, min_round_s, ceilings, kernels, summary,
                      FLAGS.quick, forced=timing.forced,
                      target=None if FLAGS.quick else TARGETS[("dense", 1, 4096, 4096)],
                      share_target=ROOFLINE_SHARE_TARGET, pool_off=FLAGS.compare_no_pool,
                      parallel_iterations=1)
        dispatch.conv(report, timing.compare, rounds, min_round_s, ceilings, kernels, summary,
                      CIFAR_CONV if not FLAGS.quick else [(8, 8, 64, 64)], forced=timing.forced,
                      share_target=ROOFLINE_SHARE_TARGET, pool_off=FLAGS.compare_no_pool)
        if FLAGS.compare_no_pool:
            dispatch.eager_pool(report, timing.compare, rounds, min_round_s, kernels, forced=timing.forced,
                                quick=FLAGS.quick)
    if "conv" in FLAGS.sections:
        conv(report, FLAGS.quick, rounds, min_round_s, ceilings, kernels, summary)
    if "e2e" in FLAGS.sections:
        e2e.e2e(report, FLAGS.quick, rounds, min_round_s, FLAGS.lce, kernels, summary,
                auto=auto_kernel(), targets=TARGETS, ceilings=ceilings)
    summarize(report, summary)
    report(f"load average after run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w") as f:
            f.write("\n".join(report.lines) + "\n")


if __name__ == "__main__":
    app.run(main)
