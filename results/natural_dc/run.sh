#!/usr/bin/env bash
# Natural (class-balanced random real) subsets under the `dc` protocol (ConvNet w128 d3
# instance norm, SGD 0.01 momentum 0.9, wd 5e-4, lr x0.1 at half, 300 epochs, batch
# 256, cross-entropy), one network per draw, draws (seeds) 0 and 1, full test sets.
# The DC paper's random-selection rows (ICLR 2021, Table 2) are the reference.
# Resumable per cell (a finished workdir is skipped). CIFAR-10 is the JPEG copy in
# .data/cifar10 (see README). Workdirs go to $ROOT (default runs/natural_dc).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/natural_dc}
IPCS=${IPCS:-"1 10"}
for ipc in $IPCS; do
  for spec in "fashion_mnist:" "folder:.data/cifar10"; do
    dataset=${spec%%:*}; data_dir=${spec#*:}
    name=$([ "$dataset" = folder ] && echo cifar10_jpeg || echo "$dataset")
    for seed in 0 1; do
      out="$ROOT/${name}_ipc${ipc}_s${seed}"
      [ -f "$out/results.json" ] && continue
      mkdir -p "$out"
      python -c "import sys, numpy as np; from kernelcond import data, preprocess
ds = data.load_dataset('$dataset', '$data_dir' or None)
idx = preprocess.class_balanced_indices(ds.y_train, $ipc, $seed, ds.num_classes)
np.savez('$out/subset.npz', indices=np.sort(idx))"
      python experiments/evaluate.py --support="$out/subset.npz" --dataset="$dataset" \
        ${data_dir:+--data_dir=$data_dir} --protocols=dc --net_seeds=0 --workdir="$out"
    done
  done
done
