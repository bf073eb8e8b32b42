#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the binary ops.
#
#   cc_ops/sanitize.sh            # both stages below
#   cc_ops/sanitize.sh core       # stage 1 only (seconds, no TensorFlow)
#
# 1. cc_ops/tests/core_test.cc + core/ built with -fsanitize=address,undefined
#    and run: every kernel vs the reference, exact-size buffers; then
#    cc_ops/tests/spin_pool_test.cc (the worker pool for batch-1 work) under
#    ASan+UBSan and under ThreadSanitizer.
# 2. The TensorFlow op library built with ASan + UBSan (cc_ops/build.py
#    --sanitize; UBSan minus its null/nonnull-attribute checks, which make
#    TensorFlow's absl headers fail to compile with GCC 12) and the Python
#    op tests (tests/ops) run against it, with the
#    ASan/UBSan runtimes preloaded into python. Leak detection is off (the
#    Python interpreter and TensorFlow keep allocations alive at exit by
#    design); any memory error or UB report aborts the run
#    (-fno-sanitize-recover=all, halt_on_error=1).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${TMPDIR:-/tmp}/tfdisc_sanitize"
mkdir -p "$OUT"
CXX="${CXX:-g++}"
FLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=all -ffp-contract=off -Wall -Wno-sign-compare)

echo "== stage 1: core_test under ASan+UBSan"
"$CXX" "${FLAGS[@]}" -I. cc_ops/tests/core_test.cc cc_ops/core/bgemm/*.cc \
  -o "$OUT/core_test"
ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$OUT/core_test"

echo "== stage 1b: spin_pool_test under ASan+UBSan, then under TSan"
"$CXX" "${FLAGS[@]}" -pthread -I. cc_ops/tests/spin_pool_test.cc cc_ops/core/bgemm/*.cc \
  -o "$OUT/spin_pool_test"
ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$OUT/spin_pool_test"
"$CXX" -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=thread -ffp-contract=off -pthread \
  -I. cc_ops/tests/spin_pool_test.cc cc_ops/core/bgemm/*.cc -o "$OUT/spin_pool_test_tsan"
TSAN_OPTIONS=halt_on_error=1 "$OUT/spin_pool_test_tsan"

if [[ "${1:-all}" == "core" ]]; then exit 0; fi

echo "== stage 2: op library under ASan+UBSan, tests/ops"
python cc_ops/build.py --sanitize --out "$OUT/_tfdisc_ops_sanitized.so"
PRELOAD="$("$CXX" -print-file-name=libasan.so) $("$CXX" -print-file-name=libubsan.so)"
LD_PRELOAD="$PRELOAD" \
  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:detect_odr_violation=0:alloc_dealloc_mismatch=0 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  TFDISC_OPS_LIBRARY="$OUT/_tfdisc_ops_sanitized.so" TF_CPP_MIN_LOG_LEVEL=2 \
  python -m pytest -q -p no:cacheprovider tests/ops
echo "sanitizer run clean"
