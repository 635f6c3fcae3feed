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
# Iterations per cell = about 3600 / the CPU seconds per outer iteration measured with
# these settings (process CPU time of one jitted update after compilation, jax 0.10.2, on
# the 2 shared cores at load 18-22, where wall time was 7-10x the CPU time; on idle cores
# wall time is about the CPU time):
#   dc 1: 9.4 s -> 400        dc 10: not measured (est. 10 x dc 1 + 450 inner steps) -> 20
#   dsa 1: 10.4 s -> 350      dsa 10: as dc 10 -> 20
#   dm 1: 0.42 s -> 8000      dm 10: 0.67 s -> 5000
#   dd 1: 0.030 s, dd 10: 0.042 s -> capped at 20000 (about 15 minutes)
# Evaluation on the full test set: KRR (fc3 NTK) and finite networks under the `dc`
# protocol (ConvNet w128, 300 epochs), 2 networks each. 1000 training images are held out
# for the running KRR validation accuracy every 1/20 of the run (eval/val_accuracy in
# metrics.jsonl: the accuracy-vs-iteration curve; checkpoints at the same steps).
# Resumable: re-run to continue; finished cells are skipped. Workdirs under $ROOT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/condense_fmnist}
IPCS=${IPCS:-"1 10"}
METHODS=${METHODS:-"dc dsa dm dd"}
steps_for() {  # method ipc -> iterations (see above)
  case "$1_$2" in
    dc_1) echo 400 ;;   dc_10) echo 20 ;;
    dsa_1) echo 350 ;;  dsa_10) echo 20 ;;
    dm_1) echo 8000 ;;  dm_10) echo 5000 ;;
    dd_1) echo 20000 ;; dd_10) echo 20000 ;;
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
    for seed in 0 1; do
      python experiments/distill.py --dataset=fashion_mnist --method="$method" --ipc="$ipc" \
        --seed="$seed" --steps="$steps" "${args[@]}" --val_size=1000 --eval_every="$every" \
        --checkpoint_every="$every" --protocols=dc --net_seeds=0,1 \
        --workdir="$ROOT/${method}_ipc${ipc}_s${seed}"
    done
  done
done
