#!/usr/bin/env bash
# DC, DSA, DM and DD on Fashion-MNIST at 1 and 10 images per class, seeds 0/1, sized for
# about an hour of condensation per cell on 2 CPU cores. CPU settings (the papers' in
# results/condense_fmnist_gpu/run.sh):
#   dc / dsa: ConvNet w32 d3 instance norm (paper: w128) re-initialised every outer
#     iteration, the paper's (outer, inner) loops by ipc ((1,1) at 1, (10,50) at 10),
#     images SGD 0.1 momentum 0.5, network SGD 0.01, 64 real images per class per
#     gradient (paper: 256); dsa with DSA's full strategy.
#   dm: ConvNet w32 d3 drawn afresh every iteration, images SGD 1.0 momentum 0.5, 256 real
#     images per class, DSA augmentation (paper: w128, 20000 iterations).
#   dd: MLP 2 x 128 (with the ConvNet w32 d3 a step took over a minute of wall time
#     here: second-order convolutions), 10 unrolled steps, 2 random initialisations per
#     step, learned soft labels and inner lr, Adam 0.01, 256 real targets per step.
# Iterations per cell: about 4 minutes of condensation per cell on 2 idle CPU cores
# (jax 0.10.2, after the im2col-tangent convolution of kernelcond.nets.conv, which made
# DC's outer iteration 27x faster on CPU; benchmarks/conv.py). Seconds per outer
# iteration measured in one run of benchmarks/condense.py (commands in README.md here):
#   dc 1: ~0.35 s -> 600        dc 10: ~25 s -> 10 (10 x (matching + 50 inner steps))
#   dsa 1: ~0.4 s -> 500        dsa 10: ~25 s -> 10
#   dm 1: 0.23 s -> 1000        dm 10: ~0.4 s -> 250
#   dd 1: 0.015 s -> 10000      dd 10: 0.02 s -> 3000
# (the 10 img/class counts were cut to fit this session's CPU time: dc/dsa at 10 take
# 10 outer iterations of the paper's 1000)
# These are far below the papers' 1000 (dc/dsa) and 20000 (dm) iterations: the curves
# (eval/val_accuracy in metrics.jsonl) show how far each cell got.
# Evaluation on the full test set: KRR (fc3 NTK) and finite networks under the `dc`
# protocol (ConvNet w128, 300 epochs), one network per cell (seeds 0/1 of the condensation
# give the two numbers). 1000 training images are held out
# for the running KRR validation accuracy every 1/20 of the run (eval/val_accuracy in
# metrics.jsonl: the accuracy-vs-iteration curve; checkpoints at the same steps).
# Resumable: re-run to continue; finished cells are skipped. Workdirs under $ROOT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/condense_fmnist}
IPCS=${IPCS:-"1 10"}
METHODS=${METHODS:-"dc dsa dm dd"}
SEEDS=${SEEDS:-"0 1"}
steps_for() {  # method ipc -> iterations (see above)
  case "$1_$2" in
    dc_1) echo 600 ;;   dc_10) echo 10 ;;
    dsa_1) echo 500 ;;  dsa_10) echo 10 ;;
    dm_1) echo 1000 ;;  dm_10) echo 250 ;;
    dd_1) echo 10000 ;; dd_10) echo 3000 ;;
  esac
}
CONV=(--net=convnet --width=32 --depth=3)
for ipc in $IPCS; do
  for method in $METHODS; do
    case $method in
      dc)  args=("${CONV[@]}" --batch_real=64) ;;
      dsa) args=("${CONV[@]}" --batch_real=64 --dsa_strategy=dsa) ;;
      dm)  args=("${CONV[@]}" --batch_real=256 --dsa_strategy=dsa) ;;
      dd)  args=(--net=mlp --width=128 --depth=2 --inner_steps=10 --n_inits=2 --target_batch=256) ;;
    esac
    steps=$(steps_for "$method" "$ipc")
    every=$(( steps / 20 > 0 ? steps / 20 : 1 ))
    for seed in $SEEDS; do
      python experiments/distill.py --dataset=fashion_mnist --method="$method" --ipc="$ipc" \
        --seed="$seed" --steps="$steps" "${args[@]}" --val_size=1000 --eval_every="$every" \
        --checkpoint_every="$every" --protocols=dc --net_seeds=0 \
        --workdir="$ROOT/${method}_ipc${ipc}_s${seed}"
    done
  done
done
