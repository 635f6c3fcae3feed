"""KRR test accuracy on Fashion-MNIST under a random-feature conv3 NNGP (many networks).

    python results/rfad_fmnist/rf_krr_eval.py SUPPORT.npz N_MODELS WIDTH SEED REG

Fits KRR (relative ridge REG) on the support file and on the natural subset of
DistillConfig(ipc=1, seed=SEED) under the empirical NNGP of N_MODELS random conv3
networks of WIDTH channels (`kernels.random_feature_fn`, fixed key), and reports
full-test-set accuracies. A stand-in, on CPU, for the exact pooled conv3 NNGP of
`evaluate_support`, whose 10000 x n_s entries take hours on 2 CPU cores; its
agreement across widths (32 vs 128) is the check that it has converged.
"""
import sys, time
import jax
import numpy as np
from kernelcond import data as kdata, preprocess, kernels, krr, support as ksupport, experiment
ds = preprocess.prepare(kdata.load_dataset("fashion_mnist"))
n_models, width = int(sys.argv[2]), int(sys.argv[3])
features = kernels.random_feature_fn("conv3", n_models, width, get="nngp")
key = jax.random.PRNGKey(123)
t0 = time.time()
phi_test = np.concatenate([np.asarray(features(key, ds.x_test[i:i + 500]))
                           for i in range(0, len(ds.x_test), 500)])
print("test features", phi_test.shape, f"{time.time() - t0:.0f}s", flush=True)
x_s, y_s, _ = ksupport.load_support(sys.argv[1], ds, True)
cfg = experiment.DistillConfig(method="rfad", ipc=1, seed=int(sys.argv[4]))
parts = experiment.split(cfg, ds)
for name, (x, y) in {"natural": (parts.x_natural, parts.y_natural), "distilled": (x_s, y_s)}.items():
  phi_s = np.asarray(features(key, x))
  pred = krr.predict(phi_test @ phi_s.T, phi_s @ phi_s.T, y, float(sys.argv[5]))
  print(name, "KRR accuracy", krr.accuracy(pred, ds.y_test))
