#!/usr/bin/env bash
# Offline Bazel build and test of tfdisc with Debian's bazel-bootstrap 4.2.3:
#
#   tools/bazel_test.sh            # bazel must be installed
#   tools/bazel_test.sh --install  # apt-get install bazel-bootstrap first (root)
#
# 1. bazel build //...            (op library, core/ libraries, core_test)
# 2. bazel test //cc_ops:core_test //cc_ops:spin_pool_test //:ops_test
#    core_test: every kernel vs the reference (framework-free);
#    ops_test:  tests/ops (pytest) against the Bazel-built op library
#               (TFDISC_OPS_LIBRARY=bazel-bin/tfdisc/ops/_tfdisc_ops.so).
# TensorFlow comes from the python3 on PATH (or $TFDISC_PYTHON) via
# tf.sysconfig; nothing is downloaded (see WORKSPACE). Prints the time of
# each step.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--install" ]]; then
  start=$SECONDS
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    bazel-bootstrap
  echo "== install: $((SECONDS - start)) s"
fi
command -v bazel > /dev/null || {
  echo "bazel not found: apt-get install bazel-bootstrap (or $0 --install)" >&2
  exit 2
}
export TF_CPP_MIN_LOG_LEVEL=2
start=$SECONDS
bazel build //...
echo "== bazel build //...: $((SECONDS - start)) s"
start=$SECONDS
bazel test //cc_ops:core_test //cc_ops:spin_pool_test //:ops_test
echo "== bazel test: $((SECONDS - start)) s"
