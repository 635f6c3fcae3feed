#!/usr/bin/env bash
# RFAD on Fashion-MNIST at 1/10/50 images per class, seeds 0/1, on 2 CPU cores: the
# method's CPU defaults (kernelcond.condense.rfad.RfadConfig: 4 random conv3 networks of
# width 32 drawn every step, 256 targets per step, Adam 0.01, Platt loss, fixed labels)
# for $STEPS steps (0.04 / 0.14 s per step at 1 / 10 img/class on 2 idle cores after the
# im2col-tangent convolution; benchmarks/condense.py).
# Evaluation on the full test set, natural subset and condensed set alike:
#   - KRR with the random-feature estimate of the conv3 NNGP (the kernel RFAD's features
#     estimate) from $RF_MODELS fixed networks of width $RF_WIDTH (--rf_models/--rf_width;
#     the exact pooled conv3 NNGP costs 240 ms per entry on these cores: hours per set);
#   - finite networks under the `dc` protocol (ConvNet w128 d3, 300 epochs), one network.
# Set KERNEL_EPOCHS>0 to add the `kernel` protocol (conv3 w1024 spec network) capped at that
# many epochs (experiments/evaluate.py; hours per cell on CPU). 1000 training images are
# held out for the running validation accuracy (eval/val_accuracy in metrics.jsonl).
# Resumable: re-run to continue; finished cells are skipped. IPCS / SEEDS select cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/rfad_fmnist}
STEPS=${STEPS:-1000}
IPCS=${IPCS:-"1 10 50"}
SEEDS=${SEEDS:-"0 1"}
RF_MODELS=${RF_MODELS:-8}
RF_WIDTH=${RF_WIDTH:-32}
KERNEL_EPOCHS=${KERNEL_EPOCHS:-0}
every=$(( STEPS / 10 ))
for ipc in $IPCS; do
  for seed in $SEEDS; do
    out="$ROOT/rfad_ipc${ipc}_s${seed}"
    python experiments/distill.py --dataset=fashion_mnist --method=rfad --ipc="$ipc" \
      --seed="$seed" --steps="$STEPS" --val_size=1000 --eval_every="$every" \
      --checkpoint_every="$every" --kernel=conv3 --kernel_type=nngp \
      --rf_models="$RF_MODELS" --rf_width="$RF_WIDTH" --protocols=dc --net_seeds=0 \
      --workdir="$out"
    if [ "$KERNEL_EPOCHS" -gt 0 ]; then
      python experiments/evaluate.py --dataset=fashion_mnist --support="$out/distilled.npz" \
        --kernel=conv3 --kernel_type=nngp --reg=1e-4 --protocols=kernel --net_seeds=0 \
        --net_epochs="$KERNEL_EPOCHS" --workdir="$out/kernel_protocol"
    fi
  done
done
