#!/usr/bin/env bash
# RFAD on CIFAR-10 (the JPEG copy in .data/cifar10: label results "CIFAR-10 (JPEG copy)") at
# $IPCS images per class (default 10), seeds 0/1, on 2 CPU cores: ZCA strength 0.1 (as the
# papers), the method's CPU defaults (kernelcond.condense.rfad.RfadConfig: 4 random networks
# of width 32 drawn every step, 256 targets per step, Adam 0.01, Platt loss, fixed labels)
# on the random-feature NNGP of $KERNEL (default conv3_in: the DC/DSA/DM ConvNet with
# instance norm; see results/rfad_fmnist/run.sh) for $STEPS steps. The paper's settings on
# a GPU: results/rfad_cifar10_gpu/run.sh.
# Evaluation on the full test set (10000), natural subset and condensed set alike: KRR with
# the random-feature estimate of the same kernel from $RF_MODELS fixed networks of width
# $RF_WIDTH, and one ConvNet each under `dc` (w128 d3 instance norm, cross-entropy, 300
# epochs) and `kernel:width=128` (the spec's network at width 128, MSE, f - f0).
# 1000 training images are held out for the running validation accuracy every $STEPS/10
# steps (the accuracy-vs-steps curve, eval/val_accuracy in metrics.jsonl).
# Resumable: re-run to continue; finished cells are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/rfad_cifar10}
DATA=${DATA:-.data/cifar10}
STEPS=${STEPS:-1500}
IPCS=${IPCS:-10}
SEEDS=${SEEDS:-"0 1"}
KERNEL=${KERNEL:-conv3_in}
PROTOCOLS=${PROTOCOLS:-dc,kernel:width=128}
RF_MODELS=${RF_MODELS:-8}
RF_WIDTH=${RF_WIDTH:-32}
every=$(( STEPS / 10 ))
for ipc in $IPCS; do
  for seed in $SEEDS; do
    python experiments/distill.py --dataset=folder --data_dir="$DATA" --zca=0.1 --method=rfad \
      --kernel="$KERNEL" --kernel_type=nngp --ipc="$ipc" --seed="$seed" --steps="$STEPS" \
      --val_size=1000 --eval_every="$every" --checkpoint_every="$every" \
      --rf_models="$RF_MODELS" --rf_width="$RF_WIDTH" --protocols="$PROTOCOLS" --net_seeds=0 \
      --workdir="$ROOT/rfad_${KERNEL}_ipc${ipc}_s${seed}"
  done
done
