r"""Natural-images baseline of the KIP tables: KRR on random class-balanced real subsets.

For each images-per-class budget and seed, draw a class-balanced random subset of
the training set, fit kernel ridge regression (NTK or NNGP of `--kernel`) on it
and report accuracy on the full test set. This is the "natural" row that KIP and
Label Solve are compared against (Nguyen et al., arXiv:2011.00050, Table 1).

    python experiments/krr_baseline.py --dataset=fashion_mnist --kernel=fc3 --ipc=10 \
        --workdir=runs/krr_fmnist_fc3

Writes `--workdir/results.json` (config; per ipc: `test_accuracy` per seed,
`test_accuracy_mean`, `test_accuracy_std`; wall time; library versions), after
every finished (ipc, seed) cell, so a re-run of a killed job skips finished cells.
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (experiments/ helpers: data, distributed and version flags)

from kernelcond import io  # noqa: E402
from kernelcond import kernels  # noqa: E402
from kernelcond import krr  # noqa: E402
from kernelcond import preprocess  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_distributed_flags()
flags.DEFINE_string("kernel", "fc3", "Kernel spec, e.g. fc3 or 'fc3:W_std=1.5,b_std=0.05'.")
flags.DEFINE_enum("kernel_backend", "auto", kernels.BACKENDS, "Kernel backend.")
flags.DEFINE_enum("kernel_type", "ntk", kernels.KERNEL_KINDS, "NTK or NNGP.")
flags.DEFINE_list("ipc", ["1", "10", "50"], "Images per class (comma-separated).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the random subsets.")
flags.DEFINE_float("reg", 1e-6, "Relative ridge: reg * trace(K) / n.")
flags.DEFINE_integer("batch_size", 256, "Kernel block size.")
flags.DEFINE_string("workdir", None, "Output directory (created; an existing one resumes).")
flags.mark_flag_as_required("workdir")


def run_cell(kernel_fn, data, ipc: int, seed: int) -> float:
  """KRR test accuracy of one class-balanced random subset."""
  idx = preprocess.class_balanced_indices(data.y_train, ipc, seed, data.num_classes)
  x_support = data.x_train[idx]
  y_support = preprocess.one_hot(data.y_train[idx], data.num_classes)
  scores = krr.evaluate(kernel_fn, x_support, y_support, data.x_test, data.y_test,
                        reg=FLAGS.reg, get=FLAGS.kernel_type, batch_size=FLAGS.batch_size)
  return scores["accuracy"]


def main(argv):
  del argv
  with _common.user_errors():
    run()


def run():
  _common.maybe_initialize_distributed()
  start = time.time()
  ipcs = [int(v) for v in FLAGS.ipc]
  seeds = [int(v) for v in FLAGS.seeds]
  spec = kernels.get_spec(FLAGS.kernel)
  backend = kernels.resolve_backend(FLAGS.kernel_backend, spec)
  config = {
      "experiment": "krr_baseline", **_common.data_config(), "kernel": FLAGS.kernel,
      "spec": spec.to_dict(), "kernel_backend": backend, "kernel_type": FLAGS.kernel_type,
      "ipc": ipcs, "seeds": seeds, "reg": FLAGS.reg,
  }
  data = _common.load_data_from_flags()
  for ipc in ipcs:  # fail before touching the workdir on a budget a class cannot meet
    preprocess.class_balanced_indices(data.y_train, ipc, 0, data.num_classes)
  io.check_run_config(FLAGS.workdir, config)
  kernel_fn = kernels.make_kernel_fn(spec, backend)

  path = os.path.join(FLAGS.workdir, "results.json")
  results = io.load_json(path) if os.path.exists(path) else {"results": {}}
  elapsed_before = results.get("wall_time_s", 0.0)
  for ipc in ipcs:
    cell = results["results"].setdefault(str(ipc), {"seeds": [], "test_accuracy": []})
    for seed in seeds:
      if seed in cell["seeds"]:
        logging.info("ipc=%d seed=%d already done: %.4f", ipc, seed,
                     cell["test_accuracy"][cell["seeds"].index(seed)])
        continue
      t0 = time.time()
      acc = run_cell(kernel_fn, data, ipc, seed)
      logging.info("ipc=%d seed=%d test_accuracy=%.4f (%.1fs)", ipc, seed, acc, time.time() - t0)
      cell["seeds"].append(seed)
      cell["test_accuracy"].append(acc)
      cell["test_accuracy_mean"] = float(np.mean(cell["test_accuracy"]))
      cell["test_accuracy_std"] = float(np.std(cell["test_accuracy"]))
      results.update(config=config, dataset=data.name, n_test=len(data.y_test),
                     devices=jax.local_device_count(),
                     wall_time_s=elapsed_before + time.time() - start,
                     versions=_common.versions())
      io.save_json(path, results)

  print(f"\nKRR on natural class-balanced subsets: {data.name}, {FLAGS.kernel} "
        f"{FLAGS.kernel_type.upper()} ({backend} backend), reg={FLAGS.reg}, "
        f"test set of {len(data.y_test)}")
  print(f"{'ipc':>5} {'support':>8} {'mean acc':>9} {'std':>7}  seeds")
  for ipc in ipcs:
    cell = results["results"][str(ipc)]
    print(f"{ipc:>5} {ipc * data.num_classes:>8} {cell['test_accuracy_mean']:>9.4f} "
          f"{cell['test_accuracy_std']:>7.4f}  {len(cell['seeds'])}")
  print(f"results: {path}")


if __name__ == "__main__":
  app.run(main)
