#!/usr/bin/env bash
# Issue 14's result matrix on CIFAR-10 (JPEG copy, .data/cifar10; see DEVELOPERS.md):
# 20% and 40% symmetric label noise, noise seeds 0/1, all 50,000 training images,
# ZCA 0.1 as KIP does for RGB. The detector is a random-feature model: KRR
# leave-one-out, exact in feature space, on the NNGP features of $MODELS random
# conv3_gap networks of width $WIDTH (D = $MODELS x ($WIDTH + 1) features) (kernels.random_feature_fn; arXiv:2210.12067), ridge chosen by
# leave-one-out error against the noisy labels; its raw residual beside it. Then one
# mlp network each on noisy, cleaned, oracle-clean and true labels, and with label
# smoothing / mixup (for ConvNet numbers use --protocol=dc, about 20 min per network
# per 500 images on 2 CPU cores: a GPU job). Resumable: re-run to continue.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/clean_cifar10}
MODELS=${MODELS:-8}
WIDTH=${WIDTH:-128}
EPOCHS=${EPOCHS:-20}
for rate in 0.2 0.4; do
  for seed in 0 1; do
    python experiments/clean.py --dataset=folder --data_dir=.data/cifar10 --zca=0.1 \
      --noise="symmetric:$rate" --noise_seed="$seed" --kernel=conv3_gap --kernel_type=nngp \
      --rf_models="$MODELS" --rf_width="$WIDTH" --detectors=krr_loo,krr_residual \
      --net_epochs="$EPOCHS" --workdir="$ROOT/sym${rate}_s${seed}"
  done
done
