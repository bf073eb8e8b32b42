"""Choosing the C++ kernel: ``TFDISC_OPS_KERNEL`` and helpers."""

import contextlib
import os

import numpy as np

KERNELS = ("auto", "reference", "portable", "avx2", "avx512bw", "avx512", "neon")
ENV_VAR = "TFDISC_OPS_KERNEL"
SPIN_ENV_VAR = "TFDISC_OPS_SPIN_US"


def current_kernel():
    """The requested kernel name (``"auto"`` when unset)."""
    return os.environ.get(ENV_VAR) or "auto"


@contextlib.contextmanager
def _env(var, value):
    """Environment variable ``var`` set to ``value`` inside the block, then restored
    (removed if it was unset): the C++ ops read these variables on every call."""
    old = os.environ.get(var)
    os.environ[var] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


@contextlib.contextmanager
def use_kernel(name):
    """Forces kernel `name` for ops run inside the block.

    Raises:
      ValueError: `name` is not one of KERNELS.
    """
    if name not in KERNELS:
        raise ValueError(f"`name` must be one of {KERNELS}, got {name!r}.")
    with _env(ENV_VAR, name):
        yield


def selected_kernel():
    """The kernel the ops run now: the forced one, or what ``auto`` resolves
    to on this CPU (asks the C++ dispatcher).

    Raises:
      tf.errors.InvalidArgumentError: TFDISC_OPS_KERNEL names an unknown or
        unsupported kernel.
    """
    from tfdisc.ops import _loader  # pylint: disable=import-outside-toplevel

    return _loader.load().tfdisc_selected_kernel().numpy().decode()


def kernel_supported(name):
    """Whether this CPU can run kernel `name` (asks the C++ dispatcher)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfdisc.ops.binary_dense import binary_dense  # pylint: disable=import-outside-toplevel

    x = np.zeros((1, 1), np.int32)
    with use_kernel(name):
        try:
            binary_dense(x, x, k=1, output="int32")
        except tf.errors.InvalidArgumentError:
            return False
    return True


@contextlib.contextmanager
def use_spin_pool(spin_us):
    """Sets ``TFDISC_OPS_SPIN_US`` for ops run inside the block: how long (µs)
    the op library's worker pool for small (batch-1) work spins after a job
    before sleeping; 0 turns the pool off (all work goes to TensorFlow's
    sharder), as does leaving the variable unset (the default: the pool is
    opt-in). Read by the C++ ops on every call (cc_ops/core/spin_pool.h).

    Raises:
      ValueError: `spin_us` is not a non-negative integer.
    """
    if isinstance(spin_us, bool) or not isinstance(spin_us, int) or spin_us < 0:
        raise ValueError(f"`spin_us` must be a non-negative int, got {spin_us!r}.")
    with _env(SPIN_ENV_VAR, str(spin_us)):
        yield
