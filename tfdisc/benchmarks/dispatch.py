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
  loop (the same bookkeeping ops, no layer) as the floor; once with
  TensorFlow's default ``parallel_iterations`` (layers of consecutive
  iterations may overlap on the two inter-op threads) and once "chained"
  (``parallel_iterations=1``: one layer at a time, as in a network);
  the gemv lines also give the memory roofline (issue 31): the packed weights'
  bytes over the copy bandwidth measured here (``copy_bandwidth``: a numpy copy
  of a buffer of the weights' size, so from the same cache level, counting the
  bytes read and written), and each kernel's time against it;
* ``conv``: ``binary_conv2d`` at batch 1 on the CIFAR BNN layer shapes
  against ``tf.nn.conv2d`` float32, the same way.

The op library's spinning worker pool for batch-1 work is opt-in
(``TFDISC_OPS_SPIN_US`` > 0). With ``pool_off`` (``--compare_no_pool``), ``gemv``
and ``conv`` time each kernel with the pool on (``pool_on_us()``) and off (the
default: all work through TensorFlow's sharder), side by side, and
``eager_pool`` times single eager calls (batch-1 dense and conv, batch-256
dense) with the pool on and off.

Every per-iteration time is a median over rounds; ratios are between
candidates timed in the same run.
"""
import os

import numpy as np
import tensorflow as tf

from tfdisc.benchmarks import timing
from tfdisc.benchmarks.marks import share_mark, target_mark

LOOP = 200


def _loop(body, parallel_iterations=10):
    """A tf.function running ``body(i)`` for i < LOOP in a graph while-loop.

    With the default ``parallel_iterations`` (TensorFlow's 10) the layers of
    consecutive iterations, which depend only on ``i``, may run at the same time on
    different inter-op threads; with 1 each starts after the previous one ended, as
    the dependent layers of a network do.
    """

    @tf.function
    def run():
        def step(i, acc):
            return i + 1, acc + tf.cast(body(i), tf.float32)
        return tf.while_loop(lambda i, _: i < LOOP, step,
                             (tf.constant(0), tf.constant(0.0)),
                             parallel_iterations=parallel_iterations)[1]

    return run


def _unhoisted(value, i):
    """``value`` recomputed at step ``i`` (XOR 0 or + 0), so the loop cannot hoist the layer."""
    if value.dtype.is_integer:
        return tf.bitwise.bitwise_xor(value, tf.fill(tf.shape(value), i * 0))
    return value + tf.cast(i * 0, value.dtype)


NO_POOL = " no pool"


def pool_on_us():
    """The spin time of the "pool on" candidates: TFDISC_OPS_SPIN_US when set above 0,
    else 200 µs (the pool is opt-in: off unless that variable is set)."""
    from tfdisc.ops import kernel_select  # pylint: disable=import-outside-toplevel
    value = os.environ.get(kernel_select.SPIN_ENV_VAR, "")
    return int(value) if value.isdigit() and int(value) > 0 else 200


def _pool(fn, spin_us):
    """``fn`` run with the op library's spinning pool at ``spin_us`` (0: off)."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    def run():
        with ops.use_spin_pool(spin_us):
            return fn()
    return run


def _with_pool(name, kernel, fn, compare=True):
    """A candidate: the kernel with the pool on, or its NO_POOL twin with it off; ``fn``
    as it is (the pool as the environment sets it) when not ``compare``-ing."""
    if not compare:
        return fn
    return _pool(fn, pool_on_us() if name == kernel else 0)


def _candidates(kernels, pool_off):
    """(candidate name, kernel) pairs: each kernel (with the pool on when ``pool_off``
    compares, as the environment sets it otherwise), and each kernel without the pool."""
    out = []
    for kernel in kernels:
        out.append((kernel, kernel))
        if pool_off:
            out.append((kernel + NO_POOL, kernel))
    return out


def _timed(compare, fns, rounds, min_round_s):
    """Median seconds per loop iteration of each tf.function in ``fns``."""
    times = compare({name: (lambda f=f: f().numpy()) for name, f in fns.items()},
                    rounds, min_round_s)
    return {name: t / LOOP for name, t in times.items()}


def copy_bandwidth(nbytes, compare, rounds, min_round_s):
    """Bytes per second (read + written) of a one-thread numpy copy of `nbytes` bytes."""
    src = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    t = compare({"copy": lambda: np.copyto(dst, src)}, rounds, min_round_s)["copy"]
    return 2 * nbytes / t


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
        # The work of one iteration depends on the kernel (its fastest tile).
        macs = int(lib.tfdisc_xor_popcount_roofline(words=words, iters=iters, threads=1))
        fns = {}
        for threads in (1, cores):
            def body(i, threads=threads, iters=iters):
                r = lib.tfdisc_xor_popcount_roofline(words=words, iters=iters, threads=threads)
                return r * tf.cast(i, r.dtype)
            fns[threads] = _loop(body)
        t = _timed(compare, fns, rounds, min_round_s)
        extra = t[cores] - t[1]  # the all-thread op does `cores` times the work
        report(f"  work per thread {macs / 1e6:6.2f} M binary MACs: 1 thread {t[1] * 1e6:7.1f} us, "
               f"{cores} threads {t[cores] * 1e6:7.1f} us (same work per thread: the "
               f"{cores}-thread op costs {extra * 1e6:+7.1f} us more)")
    report("  a parallel layer gains only when its one-thread time exceeds about "
           f"{cores}/{cores - 1} x that extra cost")
    report()


def _report_in_graph(report, label, macs, t, reference, kernels, ceilings, summary, target,
                     share_target, pool_off=False):
    for name, kernel in _candidates(kernels, pool_off):
        rate = macs / t[name]
        ratio = t[reference] / t[name]
        share = 100 * rate / ceilings[kernel]
        line = (f"    kernel {name:17s} {t[name] * 1e6:8.1f} us {ratio:6.1f}x {reference}, "
                f"{rate / 1e9:7.1f} G binary MAC/s = {share:5.1f}% of its roofline")
        if name != kernel:
            line += f" (pool on: {t[name] / t[kernel]:4.2f}x faster)"
        if kernel != "portable":
            line += target_mark(ratio, target) + share_mark(share, share_target)
        report(line)
        summary.setdefault(kernel, {})[f"{label} in graph{'' if name == kernel else NO_POOL}"] = (
            ratio, share, target if kernel != "portable" else None)


def gemv(report, compare, rounds, min_round_s, ceilings, kernels, summary, quick=False,
         forced=None, target=None, share_target=None, pool_off=False, parallel_iterations=10):
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

    pi = parallel_iterations
    fns = {"empty loop": _loop(lambda i: _unhoisted(px, i)[0, 0], pi),
           "matmul": _loop(lambda i: tf.linalg.matmul(_unhoisted(x, i), w)[0, 0], pi)}
    for name, kernel in _candidates(kernels, pool_off):
        fn = forced(kernel, _loop(layer, pi))
        fns[name] = _with_pool(name, kernel, fn, pool_off)
    t = _timed(compare, fns, rounds, min_round_s)
    chained = pi == 1
    report(f"== gemv: binary_dense {m}x{k}x{n} vs tf.matmul, both in a graph loop "
           f"({LOOP} layers per call{', one after the other: parallel_iterations=1' if chained else ''}) ==")
    report(f"  empty loop {t['empty loop'] * 1e6:7.1f} us per iteration (included below) | "
           f"matmul {t['matmul'] * 1e6:8.1f} us ({m * k * n / t['matmul'] / 1e9:5.1f} G MAC/s)")
    _report_in_graph(report, f"dense {m}x{k}x{n}{' chained' if chained else ''}", m * k * n, t,
                     "matmul", kernels, ceilings, summary, target, share_target, pool_off)
    weight_bytes = pw.numpy().nbytes
    bandwidth = copy_bandwidth(weight_bytes, compare, rounds, min_round_s)
    floor = weight_bytes / bandwidth
    report(f"  memory roofline: {weight_bytes / 2**20:.2f} MiB of packed weights / "
           f"{bandwidth / 1e9:.1f} GB/s copy bandwidth (numpy, one thread, a buffer that size, "
           f"read + write) = {floor * 1e6:.1f} us per layer")
    for name, _ in _candidates(kernels, pool_off):
        share = 100 * floor / t[name]
        mark = share_mark(share, 50.0) if chained and share_target is not None else ""
        report(f"    kernel {name:17s} {t[name] * 1e6:8.1f} us = {share:5.1f}% of the memory "
               f"roofline{mark}")
    report()


def conv(report, compare, rounds, min_round_s, ceilings, kernels, summary, shapes,
         forced=None, share_target=None, pool_off=False):
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
        for name, kernel in _candidates(kernels, pool_off):
            fn = forced(kernel, _loop(layer))
            fns[name] = _with_pool(name, kernel, fn, pool_off)
        t = _timed(compare, fns, rounds, min_round_s)
        macs = h * w_ * c * o * 9
        report(f"  N= 1 {h}x{w_}x{c}->{o}: conv2d {t['conv2d'] * 1e6:8.1f} us")
        _report_in_graph(report, f"conv N=1 {h}x{w_}x{c}->{o}", macs, t, "conv2d", kernels,
                         ceilings, summary, None, share_target, pool_off)
    report()


def eager_pool(report, compare, rounds, min_round_s, kernels, forced=None, quick=False):
    """Single eager calls with the spinning pool on and off: batch-1 dense and conv (where it
    is used) and batch-256 dense (where it is not, the sharder splits)."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(2)
    report(f"== eager calls, spinning pool on ({pool_on_us()} us) vs off (the default), per call ==")
    cases = []
    for m, k, n in ([(1, 512, 512), (32, 512, 512)] if quick
                    else [(1, 4096, 4096), (256, 4096, 4096)]):
        px = ops.bitpack(tf.constant(rng.standard_normal((m, k)).astype(np.float32)))
        pw = tf.constant(ops.pack_dense_weights(rng.standard_normal((k, n)).astype(np.float32)))
        cases.append((f"dense {m}x{k}x{n}",
                      lambda px=px, pw=pw, k=k: timing.sync(ops.binary_dense(px, pw, k))))
    for h, w_, c, o in ([(8, 8, 64, 64)] if quick else [(32, 32, 128, 128), (8, 8, 512, 512)]):
        px = ops.bitpack(tf.constant(np.where(rng.standard_normal((1, h, w_, c)) < 0, -1.0, 1.0)
                                     .astype(np.float32)))
        pf = tf.constant(ops.pack_conv_filter(rng.standard_normal((3, 3, c, o))
                                              .astype(np.float32)))
        cases.append((f"conv N=1 {h}x{w_}x{c}->{o}",
                      lambda px=px, pf=pf, c=c: timing.sync(ops.binary_conv2d(
                          px, pf, c, padding="SAME", pad_value=1))))
    for label, call in cases:
        fns = {}
        for name, kernel in _candidates(kernels, True):
            fn = forced(kernel, call)
            fns[name] = _with_pool(name, kernel, fn)
        t = compare(fns, rounds, min_round_s)
        report(f"  {label}: " + " | ".join(
            f"{kernel} {t[kernel] * 1e6:8.1f} us on, {t[kernel + NO_POOL] * 1e6:8.1f} us off "
            f"({t[kernel + NO_POOL] / t[kernel]:4.2f}x)" for kernel in kernels))
    report("  (x = time with the pool off / time with it on: above 1, the pool is faster)")
    report()
