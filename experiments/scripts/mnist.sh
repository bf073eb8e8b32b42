#!/usr/bin/env bash
# MNIST reproduction runs of issue 3 (FCN2, 10 epochs as in the paper's Figs. 4b/5b).
# Usage: experiments/scripts/mnist.sh [RUNS_DIR]   (models and logs go to RUNS_DIR, default runs/)
# results.json/flags.json are copied into experiments/results/mnist/fcn2/<run>/.
set -uo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs}/mnist
DATA=${DATA:-../shared/datasets/mnist}
RESULTS=experiments/results/mnist
COMMON="--model=fcn2 --epochs=10 --data_dir=$DATA --attack=fgsm,pgd --pgd_steps=20 --verbose=2"
SRC=$RUNS/fcn2_full_8b

run() {  # name, flags...
  local name=$1; shift
  if [ -f "$RESULTS/fcn2/$name/results.json" ]; then echo "skip $name"; return; fi
  echo "=== $name $(date -u +%H:%M:%S)"
  python -m tfdisc.experiments.mnist $COMMON "$@" --output_dir="$RUNS/$name" \
    > "$RUNS/$name.log" 2>&1 || { echo "FAILED $name"; return; }
  mkdir -p "$RESULTS/fcn2/$name"
  cp "$RUNS/$name/results.json" "$RUNS/$name/flags.json" "$RESULTS/fcn2/$name/"
  tail -8 "$RUNS/$name.log"
}
mkdir -p "$RUNS"
# (a) Tables IV/V style, Figs. 4b/5b: {full, binary} x {8, 4, 2}, FGSM and PGD; transfer from full-8b.
run fcn2_full_8b --precision=full --bits=8
for p in full binary; do for b in 8 4 2; do
  [ "$p$b" = full8 ] && continue
  run fcn2_${p}_${b}b --precision=$p --bits=$b --transfer_from=$SRC
done; done
# (b) Tables II, III, VI: R-FGSM adversarial training (eps 0.3, alpha 0.15, half/half).
for p in full binary; do for b in 8 2; do
  run fcn2_${p}_${b}b_advtrain --precision=$p --bits=$b --adv_train --train_eps=0.3 --transfer_from=$SRC
done; done
# Gradient masking demonstration: zero gradient through floor. NOT a defence.
run fcn2_full_2b_gradient_none --precision=full --bits=2 --gradient=none
echo "done $(date -u +%H:%M:%S)"
