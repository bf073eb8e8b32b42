"""Fixtures for the op tests: the compiled ops and each forced kernel."""
import pytest

import tfdisc.ops as ops  # noqa: F401  (builds/loads the library once)

DISPATCH_KERNELS = ("reference", "portable", "avx2", "avx512bw", "avx512", "neon")


@pytest.fixture(params=DISPATCH_KERNELS)
def kernel(request):
    """Runs the test with TFDISC_OPS_KERNEL forced to each kernel in turn;
    skips a kernel this CPU cannot run."""
    name = request.param
    if not ops.kernel_supported(name):
        pytest.skip(f"this CPU does not support the {name} kernel")
    with ops.use_kernel(name):
        yield name
