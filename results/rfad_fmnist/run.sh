#!/usr/bin/env bash
# RFAD on Fashion-MNIST at 1/10/50 images per class, seeds 0/1, on 2 CPU cores.
# Condensation: the method's CPU defaults (kernelcond.condense.rfad.RfadConfig: 4 random
# networks of width 32 drawn every step, 256 targets per step, Adam 0.01, Platt loss,
# fixed labels) on the random-feature NNGP of $KERNEL, for $STEPS_<ipc> steps.
#   KERNEL=conv3_in (default): the ConvNet of DC/DSA/DM (conv, instance norm, ReLU,
#     avgpool) -- no closed-form kernel, random features only;
#   KERNEL=conv3: KIP's ConvNet without normalisation (RFAD's; closed form exists).
# Evaluation on the full test set, natural subset and condensed set alike:
#   - KRR with the random-feature estimate of the same kernel from $RF_MODELS fixed
#     networks of width $RF_WIDTH (--rf_models/--rf_width; the exact pooled conv3 NNGP
#     costs 240 ms per entry on these cores);
#   - finite ConvNets, one network each, under `dc` (ConvNet w128 d3 instance norm,
#     cross-entropy, SGD, 300 epochs) and `kernel:width=128` (the spec's own network,
#     width 128 instead of 1024 for the CPU: MSE on centred labels x 8, f - f0, SGD at
#     0.1 x the NTK bound, early stopping on the 1000 held-out training images).
# At 50 img/class the steps decay by a cosine schedule with 512 targets per step
# (FLAGS_50): at 10 img/class that setting reached validation accuracy 0.871 against
# 0.863 for the constant rate with 256 targets (seed 0, 2000 steps each; README.md).
# 1000 training images are held out for the running validation accuracy
# (eval/val_accuracy in metrics.jsonl, the accuracy-vs-steps curve).
# Resumable: re-run to continue; finished cells are skipped. IPCS / SEEDS select cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/rfad_fmnist}
KERNEL=${KERNEL:-conv3_in}
IPCS=${IPCS:-"1 10 50"}
SEEDS=${SEEDS:-"0 1"}
RF_MODELS=${RF_MODELS:-8}
RF_WIDTH=${RF_WIDTH:-32}
PROTOCOLS=${PROTOCOLS:-dc,kernel:width=128}
for ipc in $IPCS; do
  steps_var="STEPS_$ipc"
  steps=${!steps_var:-$([ "$ipc" = 1 ] && echo 1000 || echo 2000)}
  flags_var="FLAGS_$ipc"
  default_flags=$([ "$ipc" = 50 ] && echo "--lr_schedule=cosine --target_batch=512" || true)
  extra=${!flags_var-$default_flags}
  every=$(( steps / 10 ))
  for seed in $SEEDS; do
    out="$ROOT/rfad_${KERNEL}_ipc${ipc}_s${seed}"
    python experiments/distill.py --dataset=fashion_mnist --method=rfad --ipc="$ipc" \
      --seed="$seed" --steps="$steps" --val_size=1000 --eval_every="$every" \
      --checkpoint_every="$every" --kernel="$KERNEL" --kernel_type=nngp \
      --rf_models="$RF_MODELS" --rf_width="$RF_WIDTH" --protocols="$PROTOCOLS" --net_seeds=0 \
      $extra --workdir="$out"
  done
done
