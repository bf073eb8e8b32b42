#!/usr/bin/env bash
# Evaluation-only CIFAR10 row, from the full-2b model trained by cifar10.sh (no training: --epochs=0):
# the gradient masking demonstration. The full-2b weights attacked with the zero gradient of floor,
# and, recorded beside it, through the straight-through gradient; NOT a defence.
# (Black-box transfer from full-8b is part of every cifar10.sh run since issue 11.)
# A committed row made from other weights than RUNS_DIR's full-2b model is re-made.
set -uo pipefail
cd "$(dirname "$0")/../.."
. experiments/scripts/run_lib.sh
RUNS=${1:-runs}/cifar10
DATA=${DATA:-../shared/datasets/cifar10}
RESULTS=experiments/results/cifar10
COMMON="--model=alexnet_cifar --width=32 --epochs=0 --data_dir=$DATA --verbose=2 --pgd_steps=7 --pgd_test_limit=1000 --save_model=false"
SOURCE=alexnet_cifar_full_2b
run() {
  local name=$1; shift
  # Same weights as the committed source row: its clean accuracy on the 10000 test images matches.
  if [ -f "$RESULTS/$name/results.json" ] && python - "$RESULTS/$name" "$RESULTS/$SOURCE" <<'PY'
import json, sys
a, b = (json.load(open(f"{d}/results.json")) for d in sys.argv[1:])
sys.exit(0 if a["clean_accuracy"] == b["clean_accuracy"] else 1)
PY
  then echo "skip $name"; return; fi
  # shellcheck disable=SC2086  # COMMON is a list of flags
  run_binary cifar "$name" "$RUNS/$name" "$RESULTS/$name" $COMMON "$@" \
    && grep -A12 "^cifar10 " "$RUNS/$name.log"
}
run alexnet_cifar_full_2b_gradient_none --precision=full --bits=2 --gradient=none --attack=fgsm,pgd \
  --init_from="$RUNS/$SOURCE"
echo "done $(date -u +%H:%M:%S)"
