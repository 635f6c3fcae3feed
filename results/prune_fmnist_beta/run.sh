#!/usr/bin/env bash
# CCS's hard-cutoff rate beta chosen on held-out training images, not on the test set
# (issue 15's 20%-kept target). Fashion-MNIST, the setting of results/prune_fmnist_ccs
# (ConvNet w32 d3 instance norm, SGD 0.05 cosine, batch 128, steps budget of 10 full-set
# epochs), with --val_size=5000: a stratified draw of 5000 training images is held out of
# scoring, selection and training, and every cell reports its accuracy on it. At 20% kept
# (of the 55,000 left), EL2N (2 networks trained 5 epochs, scored once in the first workdir
# and read by the others through --scores_dir) under CCS with beta in $BETAS (0.225 is
# the rule select.ccs_beta gives at 80% pruned) and easiest-first, against random; seeds
# $SEEDS (default 0,1). The beta with the best mean validation accuracy is the one reported
# (results/prune_fmnist_beta/README.md); its test accuracy is read once.
# Resumable: re-running continues every workdir; a finished one says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
ROOT=${ROOT:-runs/prune_fmnist_beta}
D="--dataset=fashion_mnist ${DATA_DIR:+--data_dir=$DATA_DIR} --model=convnet \
   --model_kwargs=width=32,depth=3 --epochs=10 --budget=steps --score_epochs=5 \
   --score_inits=2 --seeds=${SEEDS:-0,1} --val_size=5000 --fractions=0.2"
P="python experiments/prune.py $D"
mkdir -p "$ROOT"
$P --methods=random,el2n --strategy=easiest --workdir=$ROOT/base
for beta in ${BETAS:-0.225 0.45 0.7}; do
  $P --methods=el2n --strategy=ccs --ccs_beta=$beta --scores_dir=$ROOT/base/scores \
     --workdir=$ROOT/ccs_beta$beta
done
