"""The C++ sources of the op library: the one list.

Read by cc_ops/BUILD (Bazel `load`) and by tfdisc/ops/_build.py (the g++
build used by setup.py and the lazy loader, which parses this file with
Python's `ast`), so keep it to plain list literals of paths relative to
cc_ops/. tests/ops/build_sources_test.py checks that every .cc file under
cc_ops/core, cc_ops/kernels and cc_ops/ops is listed here exactly once.

Every ISA kernel file compiles on every architecture: its code is wrapped in
`#if defined(__x86_64__)` / `#if defined(__aarch64__)`, and
core/bgemm/dispatch.cc picks among the kernels present at run time.
"""

# Popcount-GEMM kernels and their run-time dispatch (framework-free).
BGEMM_SRCS = [
    "core/bgemm/dispatch.cc",
    "core/bgemm/reference.cc",
    "core/bgemm/portable.cc",
    "core/bgemm/avx2.cc",
    "core/bgemm/avx512.cc",
    "core/bgemm/avx512bw.cc",
    "core/bgemm/neon.cc",
]

# TensorFlow OpKernels and op registrations.
TF_OPS_SRCS = [
    "kernels/bit_depth_op.cc",
    "kernels/bitpack_op.cc",
    "kernels/binary_dense_op.cc",
    "kernels/binary_conv2d_op.cc",
    "kernels/bitpacked_max_pool_op.cc",
    "kernels/float_conv2d_bits_op.cc",
    "kernels/packed_network_op.cc",
    "kernels/roofline_op.cc",
    "ops/bit_depth_op.cc",
    "ops/bitpack_op.cc",
    "ops/binary_dense_op.cc",
    "ops/binary_conv2d_op.cc",
    "ops/bitpacked_max_pool_op.cc",
    "ops/float_conv2d_bits_op.cc",
    "ops/packed_network_op.cc",
]
