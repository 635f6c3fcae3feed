#!/usr/bin/env bash
# Detection only on all 50,000 CIFAR-10 (JPEG copy) training images, 20% symmetric
# noise, noise seed 0, with the default detector (fc3 NTK KRR leave-one-out through a
# Nystrom kernel of 4000 landmarks, ridge by leave-one-out error on the noisy labels)
# and its residual: the CPU-sized measurement beside run.sh's random-feature ConvNet
# matrix. Resumable; workdirs under $ROOT (default runs/clean_cifar10).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/clean_cifar10}
w="$ROOT/det_fc3_sym0.2_s0"
[ -f "$w/results.json" ] || python experiments/clean.py --dataset=folder --data_dir=.data/cifar10 \
  --noise=symmetric:0.2 --noise_seed=0 --detectors=krr_loo,krr_residual --landmarks=4000 \
  --conditions= --workdir="$w"
