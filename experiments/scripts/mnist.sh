#!/usr/bin/env bash
# MNIST reproduction runs of issue 3 (FCN2, 10 epochs as in the paper's Figs. 4b/5b), with the
# bracket of issue 11: FGSM and PGD (gradient straight-through the quantizer) on the 10 000 test
# images, the gradient-free quantized_search attack and --certify on the first $LIMIT of them
# (SEARCH_LIMIT, default 1000: both cost ~0.12 s per image for 3 ε on this 2-core machine), and
# AutoAttack (issue 29: APGD-CE, APGD-T, Square; ~0.1 s per image and ε) on the same first images.
# --certify uses branch and bound (CERTIFY_METHOD): the exact verifier's default time limit costs
# ~10 s per open BNN example and ε, and it times out at ε >= 0.1 (experiments/results/certify_exact).
# Usage: experiments/scripts/mnist.sh [RUNS_DIR]   (models and logs go to RUNS_DIR, default runs/)
# results.json/flags.json are copied into experiments/results/mnist/fcn2/<run>/; a run whose
# committed results.json already has an `autoattack` entry is skipped.
set -uo pipefail
cd "$(dirname "$0")/../.."
. experiments/scripts/run_lib.sh
RUNS=${1:-runs}/mnist
DATA=${DATA:-../shared/datasets/mnist}
RESULTS=experiments/results/mnist
LIMIT=${SEARCH_LIMIT:-1000}
COMMON="--model=fcn2 --epochs=10 --data_dir=$DATA --attack=fgsm,pgd,quantized_search,autoattack
  --pgd_steps=20 --search_test_limit=$LIMIT --autoattack_test_limit=$LIMIT --certify
  --certify_test_limit=$LIMIT --certify_method=${CERTIFY_METHOD:-branch} --verbose=2"
SRC=$RUNS/fcn2_full_8b

run() {  # name, flags...
  local name=$1; shift
  if grep -qs '"autoattack"' "$RESULTS/fcn2/$name/results.json"; then echo "skip $name"; return; fi
  # shellcheck disable=SC2086  # COMMON is a list of flags
  run_binary mnist "$name" "$RUNS/$name" "$RESULTS/fcn2/$name" $COMMON "$@" \
    && tail -8 "$RUNS/$name.log"
}
mkdir -p "$RUNS"
# (a) Tables IV/V style, Figs. 4b/5b: {full, binary} x {8, 4, 2}, FGSM and PGD; transfer from full-8b.
# (b) Tables II, III, VI: R-FGSM adversarial training (eps 0.3, alpha 0.15, half/half).
# Order: the transfer source, then the 2b/8b cells of every table, then 4b.
run fcn2_full_8b --precision=full --bits=8
for pb in full_2 binary_2 binary_8; do
  run fcn2_${pb}b --precision=${pb%_*} --bits=${pb#*_} --transfer_from=$SRC
done
for pb in full_2 binary_2 full_8 binary_8; do
  run fcn2_${pb}b_advtrain --precision=${pb%_*} --bits=${pb#*_} --adv_train --train_eps=0.3 \
    --transfer_from=$SRC
done
for p in full binary; do
  run fcn2_${p}_4b --precision=$p --bits=4 --transfer_from=$SRC
done
# Gradient masking demonstration: zero gradient through floor. NOT a defence.
run fcn2_full_2b_gradient_none --precision=full --bits=2 --gradient=none
echo "done $(date -u +%H:%M:%S)"
