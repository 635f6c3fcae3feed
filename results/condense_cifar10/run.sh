#!/usr/bin/env bash
# DM on CIFAR-10 (the JPEG copy in .data/cifar10, see README.md) at 10 images per class,
# seeds 0/1, on 2 CPU cores: ConvNet w32 d3 instance norm drawn afresh every iteration,
# images SGD 1.0 momentum 0.5, 256 real images per class, DSA augmentation (the paper:
# w128, 20000 iterations; arXiv:2110.04181), $STEPS iterations (about 10 minutes per cell
# here). No ZCA (DM does not use it). Evaluated on the full test set by KRR (fc3 NTK) and
# one ConvNet under the `dc` protocol (w128 d3, 300 epochs); 1000 training images held
# out for the running validation accuracy. Published DM, CIFAR-10 10 img/class: 48.9.
# Resumable: re-run to continue; finished cells are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/condense_cifar10}
DATA=${DATA:-.data/cifar10}
STEPS=${STEPS:-1000}
for seed in 0 1; do
  python experiments/distill.py --dataset=folder --data_dir="$DATA" --method=dm --ipc=10 \
    --seed="$seed" --steps="$STEPS" --net=convnet --width=32 --depth=3 --batch_real=256 \
    --dsa_strategy=dsa --val_size=1000 --eval_every=$((STEPS / 20)) \
    --checkpoint_every=$((STEPS / 20)) --protocols=dc --net_seeds=0 \
    --workdir="$ROOT/dm_ipc10_s${seed}"
done
