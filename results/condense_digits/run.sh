#!/usr/bin/env bash
# Every condensation method of kernelcond on the embedded digits data (scikit-learn's 8x8
# digits, 1797 images: 1347 train / 450 test), 1 and 10 images per class, seeds 0/1, one
# table: natural, KIP, Label Solve, rfad, frepo, dc, dsa, dm, dd. Each set is evaluated by
# KRR with its run's evaluation kernel (fc3 NTK by default; the exact conv3 NNGP for rfad and
# frepo) and by a finite ConvNet under the `dc` protocol (w128 d3 instance norm, 300 epochs;
# one network per set: the `mlp` protocol is tied to fc kernels), on the whole test split. 150 training images
# are held out for the running validation accuracy (the curves in docs/results.md).
# Settings: each method's defaults except the step counts below and, for the ConvNet
# methods, depth 2 (8x8 inputs: 8 -> 4 -> 2) and width 32. Minutes per cell on 2 CPU cores.
# Resumable: re-run to continue; finished cells are skipped. Workdirs under $ROOT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/condense_digits}
IPCS=${IPCS:-"1 10"}
METHODS=${METHODS:-"kip ls rfad frepo dc dsa dm dd"}
for ipc in $IPCS; do
  for method in $METHODS; do
    case $method in
      kip)   args=(--steps=300) ;;
      ls)    args=() ;;
      rfad)  args=(--steps=300) ;;
      frepo) args=(--steps=500) ;;
      dc)    args=(--steps=200 --width=32 --depth=2) ;;
      dsa)   args=(--steps=200 --width=32 --depth=2) ;;
      dm)    args=(--steps=1000 --width=32 --depth=2) ;;
      dd)    args=(--steps=1000) ;;
    esac
    for seed in 0 1; do
      python experiments/distill.py --dataset=digits --method="$method" --ipc="$ipc" \
        --seed="$seed" "${args[@]}" --val_size=150 --protocols=dc --net_seeds=0 \
        --workdir="$ROOT/${method}_ipc${ipc}_s${seed}"
    done
  done
done
