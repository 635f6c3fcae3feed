#!/usr/bin/env bash
# Issue 14's result matrix on Fashion-MNIST: 20% and 40% symmetric label noise, noise
# seeds 0/1, the full 60,000 training images. Detectors: KRR leave-one-out of the fc3
# NTK (default; above loo.EXACT_AUTO_MAX_N examples a Nystrom kernel with $LANDMARKS
# landmarks, leave-one-out exact in feature space), its raw residual, and EL2N /
# forgetting of the mlp network; the ridge is chosen by leave-one-out error against the
# noisy labels (clean.REGS), never by the injected flips. Then one mlp network each on
# noisy, cleaned, oracle-clean and true labels, and with label smoothing / mixup.
# A reference row: the exact leave-one-out on a 10,000-image subset beside the Nystrom
# one on the same subset (the approximation's F1 next to the exact one).
# Resumable: re-run to continue. Workdirs go to $ROOT (default runs/clean_fmnist); copy
# their results.json / config.json / *.png here afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/clean_fmnist}
LANDMARKS=${LANDMARKS:-4000}
EPOCHS=${EPOCHS:-20}
for rate in 0.2 0.4; do
  for seed in 0 1; do
    python experiments/clean.py --dataset=fashion_mnist --noise="symmetric:$rate" \
      --noise_seed="$seed" --detectors=krr_loo,krr_residual,el2n,forgetting \
      --landmarks="$LANDMARKS" --cv_epochs="$EPOCHS" --net_epochs="$EPOCHS" \
      --workdir="$ROOT/sym${rate}_s${seed}"
  done
done
for method in exact nystrom; do
  python experiments/clean.py --dataset=fashion_mnist --noise=symmetric:0.2 --subset=10000 \
    --loo_method="$method" --landmarks="$LANDMARKS" --conditions= \
    --workdir="$ROOT/subset10k_${method}"
done
# Real labels, no injected noise: the most suspicious training labels (flagged.png).
python experiments/clean.py --dataset=fashion_mnist --noise=none --landmarks="$LANDMARKS" \
  --conditions= --workdir="$ROOT/real_labels"
# Time to score every example: KRR leave-one-out (Nystrom) vs 5-fold network CV.
python benchmarks/clean.py --n=60000 --skip=krr_exact --landmarks="$LANDMARKS" \
  --cv_epochs="$EPOCHS" | tee "$ROOT/bench_60000.txt"
