r"""Time to score N Fashion-MNIST examples: KRR leave-one-out against K-fold network CV.

    python benchmarks/clean.py --n=2000                    # fc3 NTK; mlp protocol, 5 folds
    python benchmarks/clean.py --n=10000 --landmarks=4000 --cv_epochs=20

On the first `--n` Fashion-MNIST training images (standardised), in one run:

  krr_exact     kernel in blocks + exact leave-one-out at one ridge
                (`loo.make_loo_fn(method='exact')`, then one `loo_fn(reg)`);
  krr_nystrom   Nystrom features on `--landmarks` landmarks + feature-space
                leave-one-out (`method='nystrom'`);
  cv_net        `--folds`-fold cross-validated networks of `--cv_protocol`
                (`clean.cross_val_outputs`, `--cv_epochs` epochs each).

Each includes its compilation (a user pays it once per run). The last column is
each time relative to krr_exact. Nothing is extrapolated: to compare at 60,000
examples run with `--n=60000` (`--skip=krr_exact` there: the exact kernel of
60,000 examples does not fit 24 GB next to its factor). The matmul rate of the
machine, measured in the same run, says how loaded it was.
"""

import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (benchmarks/ helpers)

from kernelcond import clean
from kernelcond import data
from kernelcond import kernels
from kernelcond import loo
from kernelcond import preprocess
from kernelcond.nets import protocols

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 2000, "Training examples scored.")
flags.DEFINE_string("kernel", "fc3", "Kernel spec of the KRR leave-one-out (its NTK).")
flags.DEFINE_float("reg", 0.1, "Relative ridge of the KRR leave-one-out.")
flags.DEFINE_integer("landmarks", 2000, "Nystrom landmarks.")
flags.DEFINE_integer("folds", 5, "Folds of the network cross-validation.")
flags.DEFINE_string("cv_protocol", "mlp", "Protocol of the cross-validated networks.")
flags.DEFINE_integer("cv_epochs", 20, "Epochs of each cross-validated network.")
flags.DEFINE_list("skip", [], "Rows to skip: krr_exact, krr_nystrom, cv_net.")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST directory (default per dataset).")


def main(argv):
  del argv
  dataset = preprocess.prepare(data.load_dataset("fashion_mnist", FLAGS.data_dir))
  x, y = dataset.x_train[:FLAGS.n], dataset.y_train[:FLAGS.n]
  targets = preprocess.one_hot(y, dataset.num_classes, center=True)
  kernel_fn = kernels.make_kernel_fn(FLAGS.kernel)
  rate = _timing.matmul_rate()
  rows = {}

  def krr(method):
    return lambda: loo.make_loo_fn(kernel_fn, x, targets, method=method,
                                   num_landmarks=FLAGS.landmarks)(FLAGS.reg)

  def cv():
    protocol = protocols.get_protocol(FLAGS.cv_protocol, epochs=FLAGS.cv_epochs)
    return clean.cross_val_outputs(protocol, x, y, dataset.num_classes, FLAGS.folds)

  print(f"\nScoring n={FLAGS.n} Fashion-MNIST examples ({FLAGS.kernel} NTK reg {FLAGS.reg:g}; "
        f"{FLAGS.landmarks} landmarks; {FLAGS.folds}-fold {FLAGS.cv_protocol}, "
        f"{FLAGS.cv_epochs} epochs); matmul {rate / 1e9:.0f} GFLOP/s")
  print(f"{'method':<12}{'seconds':>10}{'held-out acc':>14}{'x krr_exact':>13}", flush=True)
  for name, fn in (("krr_exact", krr("exact")), ("krr_nystrom", krr("nystrom")),
                   ("cv_net", cv)):
    if name in FLAGS.skip:
      continue
    t0 = time.perf_counter()
    outputs = fn()
    seconds = time.perf_counter() - t0
    rows[name] = seconds
    base = rows.get("krr_exact")
    ratio = f"{seconds / base:.2f}" if base else "-"
    accuracy = float(np.mean(np.argmax(outputs, 1) == y))
    print(f"{name:<12}{seconds:>10.1f}{accuracy:>14.4f}{ratio:>13}", flush=True)


if __name__ == "__main__":
  app.run(main)
