#!/usr/bin/env bash
# Cross-compiles cc_ops/tests/core_test.cc + core/ for AArch64 with Debian's
# cross toolchain and runs it under qemu-user: every kernel the (emulated)
# CPU supports, NEON included, against the reference kernel and the
# reference convolution.
#
#   cc_ops/test_aarch64.sh            # needs g++-aarch64-linux-gnu, qemu-user
#   cc_ops/test_aarch64.sh --install  # apt-get install them first (root)
#
# The binary is linked statically, so no AArch64 sysroot is needed at run
# time. Only core/ is tested this way: the TensorFlow op library would need
# an AArch64 TensorFlow.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--install" ]]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    g++-aarch64-linux-gnu qemu-user
fi
CXX="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
QEMU="${QEMU_AARCH64:-qemu-aarch64}"
for tool in "$CXX" "$QEMU"; do
  if ! command -v "$tool" > /dev/null; then
    echo "$tool not found: apt-get install g++-aarch64-linux-gnu qemu-user" \
         "(or run $0 --install)" >&2
    exit 2
  fi
done
OUT="${TMPDIR:-/tmp}/tfdisc_aarch64"
mkdir -p "$OUT"
# shellcheck disable=SC2046
"$CXX" -std=c++17 -O2 -static -ffp-contract=off -Wall -Wno-sign-compare -I. \
  cc_ops/tests/core_test.cc $(python3 - <<'PY'
import ast
tree = ast.parse(open("cc_ops/sources.bzl").read())
lists = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
         if isinstance(n, ast.Assign)}
print(" ".join("cc_ops/" + s for s in lists["BGEMM_SRCS"]))
PY
) -o "$OUT/core_test"
# ELF e_machine 183 = EM_AARCH64 (no dependency on file(1)).
python3 -c 'import sys; d = open(sys.argv[1], "rb").read(20); sys.exit(
    0 if d[:4] == b"\x7fELF" and int.from_bytes(d[18:20], "little") == 183 else 1)' \
  "$OUT/core_test" || { echo "not an AArch64 binary" >&2; exit 1; }
"$QEMU" "$OUT/core_test"
