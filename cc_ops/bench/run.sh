#!/usr/bin/env bash
# Builds and runs cc_ops/bench/core_bench.cc (one thread, no TensorFlow):
#   cc_ops/bench/run.sh [repetitions]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/tfdisc_core_bench"
mkdir -p "$OUT"
# shellcheck disable=SC2046
"${CXX:-g++}" -std=c++17 -O3 -ffp-contract=off -I. cc_ops/bench/core_bench.cc \
  $(python3 - <<'PY'
import ast
tree = ast.parse(open("cc_ops/sources.bzl").read())
lists = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
         if isinstance(n, ast.Assign)}
print(" ".join("cc_ops/" + s for s in lists["BGEMM_SRCS"]))
PY
) -o "$OUT/core_bench"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); flags:" \
  $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'popcnt|avx2|avx512f|avx512bw|avx512_vpopcntdq' | tr '\n' ' ')
"$OUT/core_bench" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
