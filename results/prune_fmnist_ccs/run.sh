#!/usr/bin/env bash
# Issue 15's result matrix on Fashion-MNIST: ConvNet width 32 depth 3 (instance norm),
# 10 epochs of steps budget (4680 SGD steps of batch 128 for every kept set), full test
# set, training seeds 0 and 1, kept fractions 1.0 / 0.8 / 0.5 / 0.3 / 0.2 / 0.1.
# Methods: random, dynamic, herding, k-center, and each score (el2n, grand, forgetting,
# curvature; scores from 2 networks trained 5 epochs) under hardest-first and CCS
# (beta by select.ccs_beta: 0 at <=50% pruned, 0.15/0.225/0.3 at 70/80/90%), plus
# EL2N scored by a proxy (ConvNet w16 d2 trained 2 epochs).
#
# One workdir per stream, streams in parallel (one GPU: each process takes the GPU
# memory it needs). On an H100 a training took 7-15 s (streams in parallel), the whole
# matrix without herding / k-center about 7 minutes; on the 2 shared CPU cores one
# training is about 26 minutes (157 s per full-set epoch, benchmarks/scores.py), so
# the matrix (~180 trainings plus scores) is a GPU job.
#
# Not run yet: the kernel scores (krr_loo, krr_el2n) need a large-n leave-one-out
# (kernelcond.loo, exact up to scores.KRR_EXACT_MAX_N = 6000 examples; prune.py says so
# before writing anything): uncomment KERNEL once it is wired in.
#
# Usage: results/prune_fmnist_ccs/run.sh   (ROOT=runs/prune_fmnist_ccs by default;
# DATA_DIR=.data/fashion-mnist on a machine without /usr/share/datasets).
# Re-running resumes every stream; a finished stream says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
# Herding and k-center run numpy loops: without this, parallel streams oversubscribe the
# CPU threads (both streams made no progress in 7 minutes on the H100 machine).
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
ROOT=${ROOT:-runs/prune_fmnist_ccs}
D="--dataset=fashion_mnist ${DATA_DIR:+--data_dir=$DATA_DIR} --model=convnet \
   --model_kwargs=width=32,depth=3 --epochs=10 --budget=steps --score_epochs=5 \
   --score_inits=2 --seeds=0,1"
P="python3 experiments/prune.py $D"
F=0.8,0.5,0.3,0.2,0.1
mkdir -p "$ROOT"
$P --methods=random,dynamic --fractions=1.0,$F --workdir=$ROOT/base > $ROOT/base.log 2>&1 &
for m in el2n grand forgetting curvature; do
  $P --methods=$m --strategy=hardest,ccs --fractions=$F --workdir=$ROOT/$m > $ROOT/$m.log 2>&1 &
done
$P --methods=el2n --strategy=hardest,ccs --proxy_model=convnet \
   --proxy_model_kwargs=width=16,depth=2 --proxy_epochs=2 --fractions=$F \
   --workdir=$ROOT/proxy > $ROOT/proxy.log 2>&1 &
wait
for m in herding kcenter; do
  $P --methods=$m --fractions=$F --workdir=$ROOT/$m > $ROOT/$m.log 2>&1 &
done
# KERNEL: $P --methods=krr_loo,krr_el2n --strategy=hardest,ccs --fractions=$F \
#   --workdir=$ROOT/kernel > $ROOT/kernel.log 2>&1 &
wait
# All scores of one dataset side by side (Spearman table + PNG): the score files cached
# above are read back through --scores_dir (no rescoring); only the full-set cell trains.
mkdir -p $ROOT/scores
for m in el2n grand forgetting curvature; do cp -n $ROOT/$m/scores/scores_$m.npz $ROOT/scores/; done
$P --methods=el2n,grand,forgetting,curvature --fractions=1.0 --seeds=0 \
   --scores_dir=$ROOT/scores --workdir=$ROOT/correlations > $ROOT/correlations.log 2>&1
tail -n 25 $ROOT/*.log | grep -v "^I1\|^W1"
