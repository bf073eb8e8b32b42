#!/usr/bin/env bash
# CIFAR10 reproduction runs of issue 3 under a schedule that fits a shared 2-core CPU:
# alexnet_cifar at width 32 (BinaryNet: 128), 5 epochs (paper: 20 full / 40 BNN), batch 128,
# Adam 1e-3 cosine; FGSM on the 10000 test images, PGD (7 steps, step 2.5·ε/7, random start)
# on the first 1000. Real data: ../shared/datasets/cifar10 (JPEG q75).
# With the bracket of issue 11: the gradient-free quantized_search attack and --certify on the
# first $SEARCH_LIMIT test images (default 500), and black-box transfer from the full-8b model.
# AutoAttack (issue 29: APGD-CE, APGD-T, Square with 5000 queries) on the first $AA_LIMIT images
# (default 500), in every run but the clean-accuracy-only full-3b row.
# Usage: experiments/scripts/cifar10.sh [RUNS_DIR]   (models and logs go to RUNS_DIR, default runs/)
# results.json/flags.json are copied into experiments/results/cifar10/<run>/; a run whose
# committed results.json already has a `certified` block is skipped, unless REDO_AA=1, its flags
# ask for AutoAttack and it has no `autoattack` entry (then it is re-made with AutoAttack).
# Two copies can share the list: each run holds a lock (flock on RUNS_DIR/<run>.lock, freed when
# its process ends), so a run taken by one copy is skipped by the other. The evaluation's
# gradient-free search is single-threaded, so a second copy uses the idle core:
#   ORDER=reverse experiments/scripts/cifar10.sh RUNS_DIR   (the same list, last run first)
# ONLY=name,name runs just those entries of the list. RESULTS=dir commits into another directory:
# the re-run with class-balanced prefixes goes to experiments/rerun/cifar10_balanced until every
# row is re-made (the report reads all of experiments/results and compares rows on the same
# images, so the two sets are not mixed).
set -uo pipefail
cd "$(dirname "$0")/../.."
. experiments/scripts/run_lib.sh
RUNS=${1:-runs}/cifar10
DATA=${DATA:-../shared/datasets/cifar10}
RESULTS=${RESULTS:-experiments/results/cifar10}
LIMIT=${SEARCH_LIMIT:-500}
COMMON="--model=alexnet_cifar --width=32 --epochs=5 --data_dir=$DATA --verbose=2 --pgd_steps=7
  --pgd_test_limit=1000 --search_test_limit=$LIMIT --certify --certify_test_limit=$LIMIT
  --autoattack_test_limit=${AA_LIMIT:-500}"
SRC=$RUNS/alexnet_cifar_full_8b

run() {  # name, flags...
  local name=$1; shift
  exec {lock}>"$RUNS/$name.lock"
  if ! flock -n "$lock"; then echo "skip $name (running elsewhere)"; exec {lock}>&-; return; fi
  local wants_aa=0
  case " $* " in *autoattack*) wants_aa=1 ;; esac
  if grep -qs '"certified"' "$RESULTS/$name/results.json" && \
      { [ "${REDO_AA:-0}" != 1 ] || [ "$wants_aa" = 0 ] || \
        grep -qs '"autoattack"' "$RESULTS/$name/results.json"; }; then
    echo "skip $name"; exec {lock}>&-; return
  fi
  # shellcheck disable=SC2086  # COMMON is a list of flags
  run_binary cifar "$name" "$RUNS/$name" "$RESULTS/$name" $COMMON "$@" \
    && grep -A12 "^cifar10 " "$RUNS/$name.log"
  exec {lock}>&-
}
mkdir -p "$RUNS"
A=--attack=fgsm,pgd,quantized_search,autoattack
ADV="--adv_train --train_eps=8/255"
T=--transfer_from=$SRC
RUN_LIST=(
  # Table IV (and Table I for full precision): no adversarial training. The transfer source first.
  "alexnet_cifar_full_8b --precision=full --bits=8 $A"
  "alexnet_cifar_full_2b --precision=full --bits=2 $A $T"
  "alexnet_cifar_binary_2b --precision=binary --bits=2 $A $T"
  "alexnet_cifar_binary_8b --precision=binary --bits=8 $A $T"
  # Table II: R-FGSM adversarial training (eps 8/255), full precision, 2b vs 8b.
  "alexnet_cifar_full_2b_advtrain --precision=full --bits=2 $ADV $A $T"
  "alexnet_cifar_full_8b_advtrain --precision=full --bits=8 $ADV $A $T"
  # Tables III and VI: adversarially trained BNNs.
  "alexnet_cifar_binary_8b_advtrain --precision=binary --bits=8 $ADV $A $T"
  "alexnet_cifar_binary_2b_advtrain --precision=binary --bits=2 $ADV $A $T"
  # Table IV 4b cells, Table I 3b (clean accuracy only: FGSM sweep).
  "alexnet_cifar_full_4b --precision=full --bits=4 $A $T"
  "alexnet_cifar_binary_4b --precision=binary --bits=4 $A $T"
  "alexnet_cifar_full_3b --precision=full --bits=3 --attack=fgsm"
)
ORDER=${ORDER:-forward}
case $ORDER in
  forward) order=$(seq 0 $((${#RUN_LIST[@]} - 1))) ;;
  reverse) order=$(seq $((${#RUN_LIST[@]} - 1)) -1 0)
    if [ ! -e "$SRC/model.keras" ]; then
      echo "ORDER=reverse needs the transfer source $SRC/model.keras (run forward first)" >&2
      exit 2
    fi ;;
  *) echo "ORDER must be forward or reverse, not '$ORDER'" >&2; exit 2 ;;
esac
for i in $order; do
  entry=${RUN_LIST[$i]}
  if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",${entry%% *},"* ]]; then continue; fi
  # shellcheck disable=SC2086  # each entry is a run name and its flags, split on spaces
  run $entry
done
echo "done $(date -u +%H:%M:%S)"
