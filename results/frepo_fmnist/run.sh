#!/usr/bin/env bash
# FRePo on Fashion-MNIST at 1/10/50 images per class, seeds 0/1, on 2 CPU cores: the
# method's CPU defaults (kernelcond.condense.frepo.FrepoConfig: a pool of 4 conv3 networks
# of width 32, each re-initialised after 100 online Adam steps, 256 targets per step, Adam
# 1e-3, learned labels) for $STEPS steps (about 0.03 s per step at 1 img/class on 2 idle
# cores; benchmarks/condense.py).
# Evaluation on the full test set, natural subset and condensed set alike:
#   - KRR with the random-feature estimate of the conv3 NNGP (FRePo's last-layer features
#     give an NNGP-like kernel) from $RF_MODELS fixed networks of width $RF_WIDTH (--rf_models/--rf_width;
#     the exact pooled conv3 NNGP costs 240 ms per entry on these cores: hours per set);
#   - finite networks under the `dc` protocol (ConvNet w128 d3, 300 epochs), one network.
# Set KERNEL_EPOCHS>0 to add the `kernel` protocol (conv3 w1024 spec network) capped at that
# many epochs (experiments/evaluate.py; hours per cell on CPU). 1000 training images are
# held out for the running validation accuracy (eval/val_accuracy in metrics.jsonl).
# Resumable: re-run to continue; finished cells are skipped. IPCS / SEEDS select cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/frepo_fmnist}
STEPS=${STEPS:-3000}
IPCS=${IPCS:-"1 10 50"}
SEEDS=${SEEDS:-"0 1"}
RF_MODELS=${RF_MODELS:-8}
RF_WIDTH=${RF_WIDTH:-32}
KERNEL_EPOCHS=${KERNEL_EPOCHS:-0}
every=$(( STEPS / 10 ))
for ipc in $IPCS; do
  for seed in $SEEDS; do
    out="$ROOT/frepo_ipc${ipc}_s${seed}"
    python experiments/distill.py --dataset=fashion_mnist --method=frepo --ipc="$ipc" \
      --seed="$seed" --steps="$STEPS" --val_size=1000 --eval_every="$every" \
      --checkpoint_every="$every" --kernel=conv3 \
      --rf_models="$RF_MODELS" --rf_width="$RF_WIDTH" --protocols=dc --net_seeds=0 \
      --workdir="$out"
    if [ "$KERNEL_EPOCHS" -gt 0 ]; then
      python experiments/evaluate.py --dataset=fashion_mnist --support="$out/distilled.npz" \
        --kernel=conv3 --kernel_type=nngp --reg=1e-6 --protocols=kernel --net_seeds=0 \
        --net_epochs="$KERNEL_EPOCHS" --workdir="$out/kernel_protocol"
    fi
  done
done
