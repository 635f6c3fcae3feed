#!/usr/bin/env bash
# Pruning curves on CIFAR-10 (JPEG copy in .data/cifar10, see README; label results
# "CIFAR-10 (JPEG copy)": re-encoding shifts pixels) at 1.0 / 0.5 / 0.3 kept, full
# test set, training seeds 0 and 1, steps budget.
#
# PART=cpu (default): ConvNet width 32 depth 3 (instance norm), EPOCHS=5 epochs of
#   budget (1950 steps of batch 128 per kept set): random, EL2N (2 networks trained 3
#   epochs) under hardest-first and CCS, and dynamic (METHODS=random,el2n leaves it out).
#   Measured on 2 idle AMD EPYC cores (2026-12-03, results.json wall times): 7 to 9.5
#   minutes per training (0.22-0.29 s per step with the test evaluation); scoring took
#   about 15 minutes with a test suite sharing the cores; so the 14 trainings of
#   METHODS=random,el2n take about 2 hours and dynamic adds 4 more; shared cores, more.
# PART=gpu: the Data Diet setting (Paul et al., arXiv:2107.07075): ResNet-18 (CIFAR
#   stem, BatchNorm), 200 epochs of batch 128, SGD lr 0.1 momentum 0.9, wd 5e-4,
#   random crop + flip (DSA crop_flip here); EL2N from 10 networks at epoch 20, GraNd
#   at initialisation from 10 networks; random, el2n, grand under hardest-first and CCS.
#   Deviations: cosine learning-rate decay (Data Diet: step decay), DSA's crop (a
#   random translation) rather than pad-and-crop. Target (issue 15): EL2N at 50% kept
#   within 0.5 of the full-data accuracy.
# Resumable: re-running continues every workdir; a finished one says so. Also across
# sessions: a workdir that does not exist yet starts from the results.json / config.json
# committed under results/prune_cifar10/<workdir>, so finished cells are not trained again
# (the scores are recomputed). After a run:
#   python results/copy_runs.py runs/prune_cifar10 results/prune_cifar10
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
ROOT=${ROOT:-runs/prune_cifar10}
PART=${PART:-cpu}
D="--dataset=folder --data_dir=${DATA_DIR:-.data/cifar10} --seeds=0,1 --fractions=1.0,0.5,0.3"
restore() {  # $1: workdir name; copies the committed record of its finished cells
  if [ ! -e "$ROOT/$1" ] && [ -e "results/prune_cifar10/$1/results.json" ]; then
    mkdir -p "$ROOT/$1"
    cp "results/prune_cifar10/$1/results.json" "results/prune_cifar10/$1/config.json" "$ROOT/$1/"
  fi
}
mkdir -p "$ROOT"
if [ "$PART" = cpu ]; then
  restore convnet_w32
  python3 experiments/prune.py $D --model=convnet --model_kwargs=width=32,depth=3 \
    --epochs=${EPOCHS:-5} --score_epochs=3 --score_inits=2 --methods=${METHODS:-random,el2n,dynamic} \
    --strategy=${STRATEGY:-hardest,ccs} --workdir=$ROOT/convnet_w32
else
  T="--model=resnet18 --epochs=200 --batch_size=128 --lr=0.1 --momentum=0.9 \
     --weight_decay=5e-4 --augment=crop_flip --score_inits=10"
  python3 experiments/prune.py $D $T --methods=random,el2n --score_epochs=20 \
    --strategy=hardest,ccs --workdir=$ROOT/resnet18_el2n &
  python3 experiments/prune.py $D $T --methods=grand --score_epochs=0 --fractions=0.5,0.3 \
    --strategy=hardest,ccs --workdir=$ROOT/resnet18_grand &
  wait
fi
