#!/usr/bin/env bash
# FRePo on Fashion-MNIST at 1/10/50 images per class, seeds 0/1, on 2 CPU cores: the
# method's CPU defaults (kernelcond.condense.frepo.FrepoConfig: a pool of 4 networks of
# width 32, each re-initialised after 100 online Adam steps, 256 targets per step, Adam
# 1e-3, learned labels) with networks of $KERNEL (default conv3_in: the DC/DSA/DM ConvNet
# with instance norm) for $STEPS steps. Learned labels were kept by the validation KRR
# accuracy of a 2000-step run at 1 img/class (0.729 learned vs 0.696 fixed; README.md).
# Evaluation on the full test set, natural subset and condensed set alike, as
# results/rfad_fmnist/run.sh: KRR with the random-feature NNGP of $KERNEL ($RF_MODELS
# networks of width $RF_WIDTH) and one ConvNet each under `dc` and `kernel:width=128`.
# 1000 training images are held out for the running validation accuracy.
# Resumable: re-run to continue; finished cells are skipped. IPCS / SEEDS select cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/frepo_fmnist}
KERNEL=${KERNEL:-conv3_in}
STEPS=${STEPS:-3000}
IPCS=${IPCS:-"1 10 50"}
SEEDS=${SEEDS:-"0 1"}
RF_MODELS=${RF_MODELS:-8}
RF_WIDTH=${RF_WIDTH:-32}
PROTOCOLS=${PROTOCOLS:-dc,kernel:width=128}
every=$(( STEPS / 10 ))
for ipc in $IPCS; do
  for seed in $SEEDS; do
    python experiments/distill.py --dataset=fashion_mnist --method=frepo --ipc="$ipc" \
      --seed="$seed" --steps="$STEPS" --val_size=1000 --eval_every="$every" \
      --checkpoint_every="$every" --kernel="$KERNEL" \
      --rf_models="$RF_MODELS" --rf_width="$RF_WIDTH" --protocols="$PROTOCOLS" --net_seeds=0 \
      --workdir="$ROOT/frepo_${KERNEL}_ipc${ipc}_s${seed}"
  done
done
