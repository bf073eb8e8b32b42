#!/usr/bin/env bash
# CIFAR10 reproduction runs of issue 3 under a schedule that fits a shared 2-core CPU:
# alexnet_cifar at width 32 (BinaryNet: 128), 5 epochs (paper: 20 full / 40 BNN), batch 128,
# Adam 1e-3 cosine; FGSM on the 10000 test images, PGD (7 steps, step 2.5·ε/7, random start)
# on the first 1000. Real data: ../shared/datasets/cifar10 (JPEG q75).
# Usage: experiments/scripts/cifar10.sh [RUNS_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs}/cifar10
DATA=${DATA:-../shared/datasets/cifar10}
RESULTS=experiments/results/cifar10
COMMON="--model=alexnet_cifar --width=32 --epochs=5 --data_dir=$DATA --verbose=2 --pgd_steps=7 --pgd_test_limit=1000"

run() {  # name, flags...
  local name=$1; shift
  if [ -f "$RESULTS/$name/results.json" ]; then echo "skip $name"; return; fi
  echo "=== $name $(date -u +%H:%M:%S)"
  python -m tfdisc.experiments.cifar $COMMON "$@" --output_dir="$RUNS/$name" \
    > "$RUNS/$name.log" 2>&1 || { echo "FAILED $name"; return; }
  mkdir -p "$RESULTS/$name"
  cp "$RUNS/$name/results.json" "$RUNS/$name/flags.json" "$RESULTS/$name/"
  grep -A12 "^cifar10 " "$RUNS/$name.log"
}
mkdir -p "$RUNS"
# Table IV (and Table I for full precision): no adversarial training, FGSM + PGD.
run alexnet_cifar_full_8b --precision=full --bits=8 --attack=fgsm,pgd
run alexnet_cifar_full_2b --precision=full --bits=2 --attack=fgsm,pgd
run alexnet_cifar_binary_8b --precision=binary --bits=8 --attack=fgsm,pgd
run alexnet_cifar_binary_2b --precision=binary --bits=2 --attack=fgsm,pgd
# Table II: R-FGSM adversarial training (eps 8/255), full precision, 2b vs 8b.
run alexnet_cifar_full_2b_advtrain --precision=full --bits=2 --adv_train --train_eps=8/255 --attack=fgsm,pgd
run alexnet_cifar_full_8b_advtrain --precision=full --bits=8 --adv_train --train_eps=8/255 --attack=fgsm,pgd
# Table IV 4b cells, Table I 3b (clean accuracy only: FGSM sweep).
run alexnet_cifar_full_4b --precision=full --bits=4 --attack=fgsm,pgd
run alexnet_cifar_binary_4b --precision=binary --bits=4 --attack=fgsm,pgd
run alexnet_cifar_full_3b --precision=full --bits=3 --attack=fgsm
# Tables III and VI: adversarially trained BNNs.
run alexnet_cifar_binary_8b_advtrain --precision=binary --bits=8 --adv_train --train_eps=8/255 --attack=fgsm,pgd
run alexnet_cifar_binary_2b_advtrain --precision=binary --bits=2 --adv_train --train_eps=8/255 --attack=fgsm,pgd
echo "done $(date -u +%H:%M:%S)"
