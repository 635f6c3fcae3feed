#!/usr/bin/env bash
# FRePo on Fashion-MNIST at 1/10/50 images per class, seeds 0/1, sized for 2 CPU cores
# (about an hour per cell): the method's CPU defaults (kernelcond.condense.frepo.FrepoConfig:
# a pool of 4 conv3 networks of width 32, each re-initialised after 100 online Adam steps,
# 256 targets per step, Adam 1e-3, learned labels) for $STEPS steps. Each cell reports, on
# the full test set, KRR accuracy with the exact conv3 NNGP and finite networks under the
# `dc` protocol (in distill.py), then the `kernel` protocol capped at $KERNEL_EPOCHS epochs
# (experiments/evaluate.py). Resumable: re-run to continue; finished cells are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/frepo_fmnist}
STEPS=${STEPS:-5000}
KERNEL_EPOCHS=${KERNEL_EPOCHS:-300}
for ipc in 1 10 50; do
  for seed in 0 1; do
    out="$ROOT/frepo_ipc${ipc}_s${seed}"
    python experiments/distill.py --dataset=fashion_mnist --method=frepo --ipc="$ipc" \
      --seed="$seed" --steps="$STEPS" --val_size=1000 --eval_every=500 \
      --checkpoint_every=250 --protocols=dc --net_seeds=0 --workdir="$out"
    python experiments/evaluate.py --dataset=fashion_mnist --support="$out/distilled.npz" \
      --kernel=conv3 --kernel_type=nngp --reg=1e-6 --protocols=kernel --net_seeds=0 \
      --net_epochs="$KERNEL_EPOCHS" --workdir="$out/kernel_protocol"
  done
done
