#!/usr/bin/env bash
# Issue 15's missing rows on Fashion-MNIST, on 2 CPU cores: the same setting as
# results/prune_fmnist_ccs (ConvNet width 32 depth 3, instance norm, SGD lr 0.05 momentum
# 0.9 wd 5e-4 cosine, batch 128, a steps budget of 10 full-set epochs = 4680 steps for
# every kept set, full test set, training seeds 0 and 1), for the methods that run did not
# reach: herding and k-center (embeddings of a network trained 5 epochs), and the kernel
# scores krr_loo / krr_el2n (fc3 NTK, Nystrom kernel of 4000 landmarks above 15,000
# examples; no network trained) under hardest-first and CCS, with random rerun here at
# every fraction as the same-machine baseline (full data once, in base_0.2).
# 6.5 to 9 minutes per training on 2 idle Intel Xeon cores; 11.5 to 12 minutes each with two
# FRACTIONS runs at once on 2 AMD EPYC cores (results.json -> wall_time_s of each cell).
# Runs of different FRACTIONS use different workdirs and may run concurrently; each scores
# the kernel scores (2 + 5 minutes) and trains the embedding network again.
#
# Resumable, also across sessions: a workdir that does not exist yet starts from the
# results.json / config.json committed under results/prune_fmnist_cpu/<workdir>, so the
# cells finished in an earlier session are not trained again (their seeds are skipped).
# PYTHON: the interpreter (default python3, e.g. PYTHON=.venv/bin/python).
# After a run: python results/copy_runs.py runs/prune_fmnist_cpu results/prune_fmnist_cpu
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
ROOT=${ROOT:-runs/prune_fmnist_cpu}
KEPT=results/prune_fmnist_cpu
D="--dataset=fashion_mnist ${DATA_DIR:+--data_dir=$DATA_DIR} --model=convnet \
   --model_kwargs=width=32,depth=3 --epochs=10 --budget=steps --score_epochs=5 \
   --score_inits=2 --seeds=0,1"
P="${PYTHON:-python3} experiments/prune.py $D"
restore() {  # $1: workdir name; copies the committed record of its finished cells
  if [ ! -e "$ROOT/$1" ] && [ -e "$KEPT/$1/results.json" ]; then
    mkdir -p "$ROOT/$1"
    cp "$KEPT/$1/results.json" "$KEPT/$1/config.json" "$ROOT/$1/"
  fi
}
mkdir -p "$ROOT"
for F in ${FRACTIONS:-0.2 0.5 0.1 0.8 0.3}; do
  for W in base_$F kernel_$F coverage_$F; do restore "$W"; done
  FULL=$([ "$F" = 0.2 ] && echo 1.0, || true)
  $P --methods=random --fractions=$FULL$F --workdir=$ROOT/base_$F
  $P --methods=krr_loo,krr_el2n --strategy=hardest,ccs --fractions=$F --workdir=$ROOT/kernel_$F
  $P --methods=herding,kcenter --fractions=$F --workdir=$ROOT/coverage_$F
done
