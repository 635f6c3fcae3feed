#!/usr/bin/env bash
# KIP (fc3 NTK, fixed labels, 200 steps: chosen on a validation split by
# experiments/tune_kip.py, see search_ipc10.jsonl) and the natural subsets it starts
# from, evaluated on the full Fashion-MNIST test set by KRR and by finite networks
# under the `kernel` and `mlp` protocols (2000 epochs each), for 1/10/50 images per
# class and seeds 0/1. Resumable: re-run to continue. Workdirs go to $ROOT (default
# runs/transfer_fmnist); copy their results.json / config.json here afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/transfer_fmnist}
STEPS=${STEPS:-200}
for ipc in 1 10 50; do
  for seed in 0 1; do
    python experiments/distill.py --dataset=fashion_mnist --method=kip --learn_labels=false \
      --steps="$STEPS" --ipc="$ipc" --seed="$seed" --protocols=kernel,mlp --net_seeds=0 \
      --net_epochs=2000 --workdir="$ROOT/kip_ipc${ipc}_s${seed}"
  done
done
