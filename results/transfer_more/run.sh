#!/usr/bin/env bash
# The rest of the transfer matrix (issue "Distilled sets that train real networks"):
#  1. the Fashion-MNIST KIP sets of results/transfer_fmnist (fc3, fixed labels, 200 steps)
#     under the `dc` protocol (300 epochs) at 1/10 images per class;
#  2. Label Solve sets (closed-form labels on the natural subset) on Fashion-MNIST at
#     1/10/50 under `kernel` and `mlp` (2000 epochs), and at 1/10 under `dc`;
#  3. CIFAR-10 (JPEG copy in .data/cifar10): KIP (fc3, fixed labels, 200 steps) and Label
#     Solve at 1/10 under `kernel`/`mlp` (2000 epochs) and `dc`;
#  4. natural subsets under `dc` at 50 images per class (results/natural_dc/run.sh).
# Seeds 0/1, one network per protocol and set, full test sets. Resumable: every cell is
# a workdir that is skipped once it has results.json. Workdirs go to $ROOT
# (default runs/transfer_more); KIP_ROOT holds the transfer_fmnist workdirs.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/transfer_more}
KIP_ROOT=${KIP_ROOT:-runs/transfer_fmnist}
done_() { [ -f "$1/results.json" ]; }
dc_eval() {  # support dataset data_dir workdir
  done_ "$4" && return 0
  python experiments/evaluate.py --support="$1" --dataset="$2" ${3:+--data_dir=$3} \
    --protocols=dc --net_seeds=0 --workdir="$4"
}
distill() {  # method dataset data_dir ipc seed workdir
  local extra=""; [ "$1" = kip ] && extra="--learn_labels=false --steps=200"
  done_ "$6" || python experiments/distill.py --method="$1" --dataset="$2" ${3:+--data_dir=$3} \
    $extra --ipc="$4" --seed="$5" --protocols=kernel,mlp \
    --net_seeds=0 --net_epochs=2000 --workdir="$6"
}
for ipc in 1 10; do for seed in 0 1; do
  dc_eval "$KIP_ROOT/kip_ipc${ipc}_s${seed}/distilled.npz" fashion_mnist "" "$ROOT/fmnist_kip_ipc${ipc}_s${seed}_dc"
done; done
for ipc in 1 10; do for seed in 0 1; do
  distill ls fashion_mnist "" "$ipc" "$seed" "$ROOT/fmnist_ls_ipc${ipc}_s${seed}"
  dc_eval "$ROOT/fmnist_ls_ipc${ipc}_s${seed}/distilled.npz" fashion_mnist "" "$ROOT/fmnist_ls_ipc${ipc}_s${seed}_dc"
done; done
for seed in 0 1; do for ipc in 1 10; do for method in kip ls; do
  w="$ROOT/cifar10_jpeg_${method}_ipc${ipc}_s${seed}"
  distill "$method" folder .data/cifar10 "$ipc" "$seed" "$w"
  dc_eval "$w/distilled.npz" folder .data/cifar10 "${w}_dc"
done; done; done
for seed in 0 1; do distill ls fashion_mnist "" 50 "$seed" "$ROOT/fmnist_ls_ipc50_s${seed}"; done
IPCS=50 ROOT=${NATURAL_ROOT:-runs/natural_dc} bash results/natural_dc/run.sh
