#!/usr/bin/env bash
# Detection only (no network training) on all 60,000 Fashion-MNIST training images:
# 20% / 40% symmetric noise, noise seeds 0/1, KRR leave-one-out of the fc3 NTK through
# a Nystrom kernel (4000 landmarks; leave-one-out exact in feature space) and its raw
# residual; then the real labels (no injected noise). The network part of the matrix is
# run.sh. Resumable; workdirs under $ROOT (default runs/clean_fmnist).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/clean_fmnist}
for seed in 0 1; do for rate in 0.2 0.4; do
  w="$ROOT/det_sym${rate}_s${seed}"
  [ -f "$w/results.json" ] || python experiments/clean.py --dataset=fashion_mnist \
    --noise="symmetric:$rate" --noise_seed="$seed" --detectors=krr_loo,krr_residual \
    --landmarks=4000 --conditions= --workdir="$w"
done; done
[ -f "$ROOT/real_labels/results.json" ] || python experiments/clean.py --dataset=fashion_mnist \
  --noise=none --landmarks=4000 --conditions= --workdir="$ROOT/real_labels"
