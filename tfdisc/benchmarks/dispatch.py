"""Batch-1 ops inside a graph, and what a parallel dispatch costs on this machine.

A batch-1 binary layer is tens of microseconds of popcounts (1x4096x4096: about
23 us at an AVX2 core pair's roofline). Timed as single eager calls, as the
``dense`` section of ``tfdisc.benchmarks.ops`` does, Python dispatch adds about
as much again, and the figure says more about the eager runtime than about the
kernel. Inside a converted network the op runs in a graph. This section
therefore times, in one ``tf.function`` holding a ``tf.while_loop`` of
``LOOP`` iterations:

* ``dispatch``: the XOR+popcount roofline op at 1 thread and at all threads,
  for a few amounts of work per thread. What all threads cost beyond
  ``1-thread time / threads`` is the price of waking the intra-op pool, which
  decides whether a batch-1 layer can use a second core at all;
* ``gemv``: ``binary_dense`` at 1x4096x4096 (each kernel) against
  ``tf.linalg.matmul`` float32, both in the same kind of loop, with an empty
  loop (the same bookkeeping ops, no layer) as the floor;
* ``conv``: ``binary_conv2d`` at batch 1 on the CIFAR BNN layer shapes
  against ``tf.nn.conv2d`` float32, the same way.

Every per-iteration time is a median over rounds; ratios are between
candidates timed in the same run.
"""
import os

import numpy as np
import tensorflow as tf

LOOP = 200


def _loop(body):
    """A tf.function running ``body(i)`` for i < LOOP in a graph while-loop."""

    @tf.function
    def run():
        def step(i, acc):
            return i + 1, acc + tf.cast(body(i), tf.float32)
        return tf.while_loop(lambda i, _: i < LOOP, step,
                             (tf.constant(0), tf.constant(0.0)))[1]

    return run


def _unhoisted(value, i):
    """``value`` recomputed at step ``i`` (XOR 0 or + 0), so the loop cannot hoist the layer."""
    if value.dtype.is_integer:
        return tf.bitwise.bitwise_xor(value, tf.fill(tf.shape(value), i * 0))
    return value + tf.cast(i * 0, value.dtype)


def _timed(compare, fns, rounds, min_round_s):
    """Median seconds per loop iteration of each tf.function in ``fns``."""
    times = compare({name: (lambda f=f: f().numpy()) for name, f in fns.items()},
                    rounds, min_round_s)
    return {name: t / LOOP for name, t in times.items()}


def dispatch(report, compare, rounds, min_round_s, quick=False):
    """Per-op cost of running the roofline op on all threads vs one thread."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel
    lib = ops.library()
    cores = os.cpu_count() or 1
    report("== dispatch: the roofline op in a graph loop, 1 thread vs all threads ==")
    if cores < 2:
        report("  one core: nothing to measure")
        report()
        return
    words = 256
    for iters in ((20, 200) if quick else (20, 100, 500)):
        fns = {}
        for threads in (1, cores):
            def body(i, threads=threads, iters=iters):
                r = lib.tfdisc_xor_popcount_roofline(words=words, iters=iters, threads=threads)
                return r * tf.cast(i, r.dtype)
            fns[threads] = _loop(body)
        t = _timed(compare, fns, rounds, min_round_s)
        extra = t[cores] - t[1]  # the all-thread op does `cores` times the work
        report(f"  work per thread {iters:4d} x {words} words: 1 thread {t[1] * 1e6:7.1f} us, "
               f"{cores} threads {t[cores] * 1e6:7.1f} us (same work per thread: the "
               f"{cores}-thread op costs {extra * 1e6:+7.1f} us more)")
    report("  a parallel layer gains only when its one-thread time exceeds about "
           f"{cores}/{cores - 1} x that extra cost")
    report()


def _report_in_graph(report, label, macs, t, reference, kernels, ceilings, summary, target,
                     share_target):
    for kernel in kernels:
        rate = macs / t[kernel]
        ratio = t[reference] / t[kernel]
        share = 100 * rate / ceilings[kernel]
        line = (f"    kernel {kernel:9s} {t[kernel] * 1e6:8.1f} us {ratio:6.1f}x {reference}, "
                f"{rate / 1e9:7.1f} G binary MAC/s = {share:5.1f}% of its roofline")
        if target is not None and kernel != "portable":
            line += f" [target >= {target:g}x: {'met' if ratio >= target else 'MISSED'}]"
        if share_target is not None and kernel != "portable":
            line += f" [>= {share_target:.0f}%: {'met' if share >= share_target else 'MISSED'}]"
        report(line)
        summary.setdefault(kernel, {})[f"{label} in graph"] = (
            ratio, share, target if kernel != "portable" else None)


def gemv(report, compare, rounds, min_round_s, ceilings, kernels, summary, quick=False,
         forced=None, target=None, share_target=None):
    """binary_dense 1xKxN vs tf.matmul, both in a graph loop."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel
    lib = ops.library()
    m, k, n = (1, 512, 512) if quick else (1, 4096, 4096)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((m, k)).astype(np.float32))
    w = tf.constant(rng.standard_normal((k, n)).astype(np.float32))
    px = ops.bitpack(x)
    pw = tf.constant(ops.pack_dense_weights(w.numpy()))
    empty = tf.zeros([0], tf.float32)

    def layer(i):
        y = lib.tfdisc_binary_dense(_unhoisted(px, i), pw, empty, empty, k=k, out_type=tf.float32,
                                    bitpacked_output=False)
        return y[0, 0]

    fns = {"empty loop": _loop(lambda i: _unhoisted(px, i)[0, 0]),
           "matmul": _loop(lambda i: tf.linalg.matmul(_unhoisted(x, i), w)[0, 0])}
    for kernel in kernels:
        fns[kernel] = forced(kernel, _loop(layer))
    t = _timed(compare, fns, rounds, min_round_s)
    report(f"== gemv: binary_dense {m}x{k}x{n} vs tf.matmul, both in a graph loop "
           f"({LOOP} layers per call) ==")
    report(f"  empty loop {t['empty loop'] * 1e6:7.1f} us per iteration (included below) | "
           f"matmul {t['matmul'] * 1e6:8.1f} us ({m * k * n / t['matmul'] / 1e9:5.1f} G MAC/s)")
    _report_in_graph(report, f"dense {m}x{k}x{n}", m * k * n, t, "matmul", kernels, ceilings,
                     summary, target, share_target)
    report()


def conv(report, compare, rounds, min_round_s, ceilings, kernels, summary, shapes,
         forced=None, share_target=None):
    """binary_conv2d at batch 1 vs tf.nn.conv2d, both in a graph loop (3x3 SAME)."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(1)
    report(f"== conv in graph: binary_conv2d N=1 vs tf.nn.conv2d, both in a graph loop "
           f"({LOOP} layers per call), 3x3 SAME, float output ==")
    for h, w_, c, o in shapes:
        x = tf.constant(np.where(rng.standard_normal((1, h, w_, c)) < 0, -1.0, 1.0)
                        .astype(np.float32))
        f = tf.constant(rng.standard_normal((3, 3, c, o)).astype(np.float32))
        px = ops.bitpack(x)
        pf = tf.constant(ops.pack_conv_filter(f.numpy()))

        def layer(i, px=px, pf=pf, c=c):
            return ops.binary_conv2d(_unhoisted(px, i), pf, c, padding="SAME",
                                     pad_value=1)[0, 0, 0, 0]

        fns = {"conv2d": _loop(lambda i, x=x, f=f: tf.nn.conv2d(
            _unhoisted(x, i), f, 1, "SAME")[0, 0, 0, 0])}
        for kernel in kernels:
            fns[kernel] = forced(kernel, _loop(layer))
        t = _timed(compare, fns, rounds, min_round_s)
        macs = h * w_ * c * o * 9
        report(f"  N= 1 {h}x{w_}x{c}->{o}: conv2d {t['conv2d'] * 1e6:8.1f} us")
        _report_in_graph(report, f"conv N=1 {h}x{w_}x{c}->{o}", macs, t, "conv2d", kernels,
                         ceilings, summary, None, share_target)
    report()
