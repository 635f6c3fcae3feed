r"""Natural-images baseline of the KIP tables: KRR on random class-balanced real subsets.

For each images-per-class budget and seed, draw a class-balanced random subset of
the training set, fit kernel ridge regression (NTK or NNGP of `--kernel`) on it
and report accuracy on the full test set. This is the "natural" row that KIP and
Label Solve are compared against (Nguyen et al., arXiv:2011.00050, Table 1).

    python experiments/krr_baseline.py --dataset=fashion_mnist --kernel=fc3 --ipc=10 \
        --workdir=runs/krr_fmnist_fc3

Writes `--workdir/results.json` in the shared results schema
(`kernelcond.experiment.results_record`): one evaluation per (ipc, seed), named
`ipc<k>/seed<s>`, the output of `kernelcond.evaluate.evaluate_support` (KRR only)
plus `subset: {ipc, seed}`. It is rewritten after every finished cell, so a re-run
of a killed job skips finished cells.
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (experiments/ helpers: data, distributed and version flags)

from kernelcond import evaluate  # noqa: E402
from kernelcond import experiment  # noqa: E402
from kernelcond import io  # noqa: E402
from kernelcond import kernels  # noqa: E402
from kernelcond import preprocess  # noqa: E402
from kernelcond import report  # noqa: E402

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


def run_cell(config, data, ipc: int, seed: int) -> dict:
  """The evaluation (`evaluate_support`, KRR only) of one class-balanced random subset."""
  idx = preprocess.class_balanced_indices(data.y_train, ipc, seed, data.num_classes)
  labels = data.y_train[idx]
  result = evaluate.evaluate_support(
      config, data.x_train[idx], preprocess.one_hot(labels, data.num_classes), data.x_test,
      data.y_test, num_classes=data.num_classes, labels=labels)
  return {**result, "subset": {"ipc": ipc, "seed": seed}}


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
  eval_config = evaluate.EvalConfig(kernel=FLAGS.kernel, kernel_backend=backend,
                                    kernel_type=FLAGS.kernel_type, reg=FLAGS.reg, protocols=(),
                                    block_size=FLAGS.batch_size)

  path = os.path.join(FLAGS.workdir, "results.json")
  previous = report.load_record(path) if os.path.exists(path) else {}
  evaluations = dict(previous.get("evaluations") or {})
  elapsed_before = (previous.get("run") or {}).get("wall_time_s") or 0.0
  for ipc in ipcs:
    for seed in seeds:
      name = f"ipc{ipc}/seed{seed}"
      if name in evaluations:
        logging.info("ipc=%d seed=%d already done: %.4f", ipc, seed,
                     evaluations[name]["krr"]["accuracy"])
        continue
      evaluations[name] = run_cell(eval_config, data, ipc, seed)
      logging.info("ipc=%d seed=%d test_accuracy=%.4f (%.1fs)", ipc, seed,
                   evaluations[name]["krr"]["accuracy"], evaluations[name]["seconds"])
      run = {"wall_time_s": elapsed_before + time.time() - start, "n_test": len(data.y_test)}
      io.save_json(path, experiment.results_record("krr_baseline", config, data, evaluations,
                                                   run))

  print(f"\nKRR on natural class-balanced subsets: {data.name}, {FLAGS.kernel} "
        f"{FLAGS.kernel_type.upper()} ({backend} backend), reg={FLAGS.reg}, "
        f"test set of {len(data.y_test)}")
  print(f"{'ipc':>5} {'support':>8} {'mean acc':>9} {'std':>7}  seeds")
  for ipc in ipcs:
    accs = [e["krr"]["accuracy"] for e in evaluations.values() if e["subset"]["ipc"] == ipc]
    print(f"{ipc:>5} {ipc * data.num_classes:>8} {np.mean(accs):>9.4f} {np.std(accs):>7.4f}  "
          f"{len(accs)}")
  print(f"results: {path}")


if __name__ == "__main__":
  app.run(main)
