"""Side-by-side timing for the benchmarks: interleaved rounds, medians, forced kernels.

Candidates compared by ``compare`` are timed in interleaved rounds (A, B, A, B,
...), each long enough to amortize timer and dispatch overhead, so that on a
shared machine every candidate sees the same kind of interference; ratios are
between medians of the same run. As ``timeit`` does, the garbage collector is
off while rounds run (after one full collection): a generation-2 collection
walks every Python object TensorFlow and Keras hold, tens of milliseconds that
land in whichever round it happens to interrupt and belong to no op.
"""
import contextlib
import gc
import time

import numpy as np


def _calls_per_round(fn, min_round_s):
    fn()
    start = time.perf_counter()
    fn()
    one = max(time.perf_counter() - start, 1e-7)
    return max(1, int(min_round_s / one))


@contextlib.contextmanager
def gc_paused():
    """The garbage collector off (after a full collection), as timeit runs."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compare(candidates, rounds, min_round_s):
    """Median seconds per call for each candidate, timed in interleaved rounds."""
    for fn in candidates.values():
        fn()  # warm up (tracing, allocation, library load)
    with gc_paused():
        return _timed_rounds(candidates, rounds, min_round_s)


def _timed_rounds(candidates, rounds, min_round_s):
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


def sync(value):
    """Waits until a result exists, without copying it.

    Eager ops and tf.function calls on CPU are synchronous by default, but be
    explicit: the buffer protocol resolves a tensor (as ``.numpy()`` does)
    and exposes its memory in place. ``.numpy()`` would also copy it, which
    for a batch-16 conv's 8 MiB float output costs about 0.7-1 ms on both
    sides of a comparison and is no part of either op.
    """
    if isinstance(value, (list, tuple)):
        value = value[0]
    if hasattr(value, "numpy"):
        memoryview(value)
    return value


def fmt_ms(seconds):
    return f"{seconds * 1e3:9.3f} ms"


def forced(name, fn):
    """fn run with kernel `name` forced (TFDISC_OPS_KERNEL is read per call)."""
    import tfdisc.ops as ops  # pylint: disable=import-outside-toplevel

    def run():
        with ops.use_kernel(name):
            return fn()
    return run
