#!/usr/bin/env bash
# Evaluation-only CIFAR10 rows, from models trained by cifar10.sh (no training: --epochs=0).
# 1) gradient masking demonstration: the full-2b weights attacked with the zero gradient of floor
#    (and, recorded beside it, through the straight-through gradient); NOT a defence.
# 2) black-box transfer: examples crafted on the full-8b model, evaluated on full-2b and BNN-2b.
set -uo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs}/cifar10
DATA=${DATA:-../shared/datasets/cifar10}
RESULTS=experiments/results/cifar10
COMMON="--model=alexnet_cifar --width=32 --epochs=0 --data_dir=$DATA --verbose=2 --pgd_steps=7 --pgd_test_limit=1000 --save_model=false"
run() {
  local name=$1; shift
  if [ -f "$RESULTS/$name/results.json" ]; then echo "skip $name"; return; fi
  echo "=== $name $(date -u +%H:%M:%S)"
  python -m tfdisc.experiments.cifar $COMMON "$@" --output_dir="$RUNS/$name" \
    > "$RUNS/$name.log" 2>&1 || { echo "FAILED $name"; return; }
  mkdir -p "$RESULTS/$name"
  cp "$RUNS/$name/results.json" "$RUNS/$name/flags.json" "$RESULTS/$name/"
  grep -A12 "^cifar10 " "$RUNS/$name.log"
}
run alexnet_cifar_full_2b_gradient_none --precision=full --bits=2 --gradient=none --attack=fgsm,pgd \
  --init_from="$RUNS/alexnet_cifar_full_2b"
run alexnet_cifar_full_2b_transfer --precision=full --bits=2 --attack=fgsm \
  --init_from="$RUNS/alexnet_cifar_full_2b" --transfer_from="$RUNS/alexnet_cifar_full_8b"
run alexnet_cifar_binary_2b_transfer --precision=binary --bits=2 --attack=fgsm \
  --init_from="$RUNS/alexnet_cifar_binary_2b" --transfer_from="$RUNS/alexnet_cifar_full_8b"
echo "done $(date -u +%H:%M:%S)"
