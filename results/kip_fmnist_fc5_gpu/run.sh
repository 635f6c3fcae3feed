export PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
D="--dataset=fashion_mnist --data_dir=.data/fashion-mnist --kernel_backend=native --kernel=fc5"
K="--lr=0.04 --lr_schedule=cosine --steps=16000 --target_batch=5000 --eval_every=2000 --checkpoint_every=2000"
W=/tmp/runs
stream() { i=$1; for s in 0 1; do
  python3 experiments/distill.py $D $K --ipc=$i --seed=$s --workdir=$W/kip_ipc${i}_s$s
  python3 experiments/distill.py $D --method=ls --ipc=$i --seed=$s --workdir=$W/ls_ipc${i}_s$s
  python3 experiments/distill.py $D --method=ls --ipc=$i --seed=$s --init_npz=$W/kip_ipc${i}_s$s/distilled.npz --workdir=$W/kipls_ipc${i}_s$s
done; }
for i in 1 10 50; do timeout 420 bash -c "$(declare -f stream); D='$D' K='$K' W=$W stream $i" > $OUT/stream$i.log 2>&1 & done; wait
timeout 150 python3 experiments/krr_baseline.py $D --ipc=3000,6000 --seeds=0 --batch_size=4000 --workdir=$W/full_fc5 > $OUT/full.log 2>&1
cd /tmp && tar czf $OUT/runs.tgz --exclude=checkpoints runs; grep -h "KRR test\|KIP on\|LS on\|ms/step\|trained on\|rror" $OUT/stream*.log; grep -v "^I11\|^W11" $OUT/full.log | tail -5
