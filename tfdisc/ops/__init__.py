"""Bit-packed binary inference ops (C++, see ``cc_ops/README.md``).

Bit convention (as larq-compute-engine): a value x becomes bit ``x < 0``, so
+1 (and 0, like larq's ``sign``) is bit 0 and -1 is bit 1; bits run along the
last (channel) axis, little-endian, into int32 or int64 words; the padding
bits of the last word are zero. For two packed rows of K values the +-1 dot
product is ``K - 2 * popcount(a XOR b)``.

Importing this module loads (building on first use if needed) the op
library and raises ``ImportError`` naming the cause if that fails; the rest
of tfdisc does not import it.

Kernel selection:
``TFDISC_OPS_KERNEL=auto|reference|portable|avx2|avx512bw|avx512|neon``,
read by the C++ ops on every call; ``use_kernel(name)`` sets it temporarily
and ``selected_kernel()`` names the kernel that runs.
``TFDISC_OPS_SPIN_US`` (opt-in; unset or 0 = off; ``use_spin_pool(us)``): how
long the library's worker pool for batch-1 work spins between jobs (about 2×
faster eager batch-1 dense calls on a 2-vCPU host; see cc_ops/README.md).

Example:

    >>> import numpy as np, tfdisc.ops as ops
    >>> x = np.random.randn(4, 100).astype("float32")
    >>> w = np.random.randn(100, 10).astype("float32")
    >>> y = ops.binary_dense(ops.bitpack(x), ops.pack_dense_weights(w), k=100)
    >>> np.array_equal(y, np.where(x < 0, -1, 1) @ np.where(w < 0, -1, 1))
    True
"""

import tensorflow as _tf

from tfdisc.ops import _loader
from tfdisc.ops._loader import load as _load
from tfdisc.ops.bit_depth import bit_depth
from tfdisc.ops.binary_conv2d import (
    binary_conv2d,
    binary_conv2d_reference,
    bitpacked_max_pool2d,
    bitpacked_max_pool2d_reference,
    float_conv2d_bits,
    pack_conv_filter,
)
from tfdisc.ops.binary_dense import (
    binary_dense,
    binary_dense_reference,
    pack_dense_weights,
)
from tfdisc.ops.bitpack import bitpack, bitpack_reference, unpack_reference
from tfdisc.ops.packed_network import pack_network_weights, packed_network
from tfdisc.ops._transform import PAD_VALUES, pad_value as check_pad_value
from tfdisc.ops.kernel_select import (
    KERNELS,
    current_kernel,
    kernel_supported,
    selected_kernel,
    use_kernel,
    use_spin_pool,
)

_load()


def library():
    """The loaded op library module (its raw ops, e.g. the roofline micro-benchmark op)."""
    return _load()

# Inference-only ops: differentiating through them is an error in the model,
# so say "no gradient" explicitly (tape.gradient returns None).
for _name in ("Tfdisc>Bitpack", "Tfdisc>BinaryDense", "Tfdisc>BinaryConv2D",
              "Tfdisc>BitpackedMaxPool2D", "Tfdisc>BitDepth",
              "Tfdisc>FloatConv2DBits", "Tfdisc>PackedNetwork"):
    _tf.no_gradient(_name)
del _name

__all__ = [
    "KERNELS",
    "PAD_VALUES",
    "library",
    "binary_conv2d",
    "binary_conv2d_reference",
    "binary_dense",
    "binary_dense_reference",
    "bit_depth",
    "bitpack",
    "bitpack_reference",
    "bitpacked_max_pool2d",
    "bitpacked_max_pool2d_reference",
    "check_pad_value",
    "current_kernel",
    "float_conv2d_bits",
    "kernel_supported",
    "pack_conv_filter",
    "pack_dense_weights",
    "pack_network_weights",
    "packed_network",
    "selected_kernel",
    "unpack_reference",
    "use_kernel",
    "use_spin_pool",
]
