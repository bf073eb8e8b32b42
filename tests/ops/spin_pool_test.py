"""The op library's spinning worker pool (cc_ops/core/spin_pool.h) for batch-1 work.

Results with the pool on (TFDISC_OPS_SPIN_US > 0) equal the numpy reference and the
pool-off results, eagerly and in a tf.function, also with several Python threads running
ops at once (a busy pool falls back to TensorFlow's sharder); the pool's counters show
that it ran (and, with two cores, that its worker took chunks).
"""
import os
import threading

import numpy as np
import pytest
import tensorflow as tf

import tfdisc.ops as ops

# Shapes whose estimated work is in the pool's range (small enough that
# TensorFlow's sharder would keep them on one thread, not too small to split).
DENSE = [(1, 4096, 4096), (1, 2048, 2048), (2, 3000, 1000)]
CONV = [(8, 8, 64, 64), (4, 4, 256, 128)]
TOO_SMALL = (1, 256, 256)


def _stats():
    """(workers, jobs run, chunks run by workers, back-offs, backing off now)."""
    return tuple(int(v) for v in ops.library().tfdisc_spin_pool_stats().numpy())


def _dense_case(rng, m, k, n):
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    px, pw = ops.bitpack(x), tf.constant(ops.pack_dense_weights(w))
    expected = ops.binary_dense_reference(px.numpy(), pw.numpy(), k)
    return (lambda: ops.binary_dense(px, pw, k).numpy()), expected


def _conv_case(rng, h, w, c, o):
    x = np.where(rng.standard_normal((1, h, w, c)) < 0, -1.0, 1.0).astype(np.float32)
    f = rng.standard_normal((3, 3, c, o)).astype(np.float32)
    px, pf = ops.bitpack(x), tf.constant(ops.pack_conv_filter(f))
    expected = ops.binary_conv2d_reference(px.numpy(), pf.numpy(), c, padding="SAME",
                                           pad_value=1)
    return (lambda: ops.binary_conv2d(px, pf, c, padding="SAME", pad_value=1).numpy()), expected


def _cases(rng):
    return ([_dense_case(rng, *shape) for shape in DENSE]
            + [_conv_case(rng, *shape) for shape in CONV])


@pytest.mark.parametrize("spin_us", [0, 1, 200])
def test_results_equal_reference(kernel, spin_us):
    rng = np.random.default_rng(spin_us)
    before = _stats()
    with ops.use_spin_pool(spin_us):
        for run, expected in _cases(rng):
            for _ in range(3):
                np.testing.assert_array_equal(run(), expected)
    after = _stats()
    if spin_us == 0:
        assert after[1] == before[1], "the pool ran with TFDISC_OPS_SPIN_US=0"
    elif (os.cpu_count() or 1) >= 2 and tf.config.threading.get_intra_op_parallelism_threads() != 1:
        # Unless it is backing off (its worker kept losing the CPU to other processes).
        assert after[1] > before[1] or after[4] or after[3] > before[3], \
            "the pool never ran on batch-1 work"


def test_in_graph_and_worker_helps(kernel):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no pool")
    rng = np.random.default_rng(3)
    m, k, n = DENSE[0]
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    px, pw = ops.bitpack(x), tf.constant(ops.pack_dense_weights(w))
    expected = ops.binary_dense_reference(px.numpy(), pw.numpy(), k)

    @tf.function
    def layers():
        # Back-to-back dependent layers in one graph (the worker stays awake between
        # them); independent ones would run at once and all but one would find the
        # pool busy.
        out, p = [], px
        for _ in range(20):
            y = ops.binary_dense(p, pw, k)
            out.append(y)
            p = tf.bitwise.bitwise_xor(px, tf.cast(tf.reduce_sum(y) * 0, px.dtype))
        return out

    # All 100 layers run on the pool unless it backs off (its worker preempted by other
    # processes on a loaded machine); then the worker may have taken no chunk. On a
    # machine loaded by other processes the worker can also be descheduled for a whole
    # round of 100 layers, so up to three rounds are run: one with a chunk suffices.
    for _ in range(3):
        before = _stats()
        with ops.use_spin_pool(2000):
            for _ in range(5):
                for y in layers():
                    np.testing.assert_array_equal(y.numpy(), expected)
        after = _stats()
        if after[1] - before[1] < 100 or after[2] > before[2]:
            break
    assert after[0] >= 1
    if after[1] - before[1] < 100:
        assert after[3] > before[3] or before[4], (before, after)
    else:
        assert after[2] > before[2], "the pool's worker never took a chunk"


def test_too_small_work_stays_off_the_pool():
    run, expected = _dense_case(np.random.default_rng(4), *TOO_SMALL)
    before = _stats()
    with ops.use_spin_pool(200):
        np.testing.assert_array_equal(run(), expected)
    assert _stats()[1] == before[1]


@pytest.mark.parametrize("spin_us", [0, 200])
def test_concurrent_python_threads(spin_us):
    """Several Python threads run batch-1 dense and conv at once: one of them gets the
    pool, the others fall back to TensorFlow's sharder; every result is exact."""
    cases = _cases(np.random.default_rng(5))
    errors = []
    start = threading.Barrier(4)

    def worker(t):
        try:
            start.wait()
            for i in range(12):
                run, expected = cases[(t + i) % len(cases)]
                np.testing.assert_array_equal(run(), expected)
        except Exception as e:  # pylint: disable=broad-except
            errors.append(e)

    with ops.use_spin_pool(spin_us):
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors[0]


def test_use_spin_pool_validates_and_restores():
    old = os.environ.get(ops.kernel_select.SPIN_ENV_VAR)
    with ops.use_spin_pool(7):
        assert os.environ[ops.kernel_select.SPIN_ENV_VAR] == "7"
    assert os.environ.get(ops.kernel_select.SPIN_ENV_VAR) == old
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(ValueError):
            with ops.use_spin_pool(bad):
                pass


def test_pool_is_off_by_default_and_a_bad_value_fails_the_op(monkeypatch):
    run, expected = _dense_case(np.random.default_rng(5), *DENSE[0])
    monkeypatch.delenv(ops.kernel_select.SPIN_ENV_VAR, raising=False)
    before = _stats()
    np.testing.assert_array_equal(run(), expected)
    assert _stats()[1] == before[1], "the pool ran with TFDISC_OPS_SPIN_US unset (opt-in)"
    for bad in ("-5", "2x", "fast"):
        monkeypatch.setenv(ops.kernel_select.SPIN_ENV_VAR, bad)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"TFDISC_OPS_SPIN_US must be a non-negative integer.*'{bad}'"):
            run()
