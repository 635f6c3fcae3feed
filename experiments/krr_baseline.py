r"""Natural-images baseline of the KIP tables: KRR on random class-balanced real subsets.

For each images-per-class budget and seed, draw a class-balanced random subset of
the training set, fit kernel ridge regression (NTK or NNGP of `--kernel`) on it
and report accuracy on the full test set. This is the "natural" row that KIP and
Label Solve are compared against (Nguyen et al., arXiv:2011.00050, Table 1).

    python experiments/krr_baseline.py --dataset=fashion_mnist --kernel=fc3 --ipc=10 \
        --workdir=runs/krr_fmnist_fc3
    python experiments/krr_baseline.py --dataset=fashion_mnist --kernel=fc5 --ipc=all \
        --solver=cg --kernel_backend=native --workdir=runs/krr_fmnist_fc5_all

`--ipc=all` fits the whole training set (one cell, named `all`). `--solver=cg` never
forms the `(n, n)` kernel on a device: it keeps the kernel's upper triangle on the
host in float32 (about `2 n^2` bytes: 7.2 GB for 60,000) and solves by conjugate
gradients with a Nystrom preconditioner of `--cg_rank` landmarks (`kernelcond.krr.fit_cg`);
`cholesky` (the default) factorises the whole kernel on one device.

Writes `--workdir/results.json` (default `runs/krr_baseline`) in the shared results
schema (`kernelcond.experiment.results_record`): one evaluation per (ipc, seed), named
`ipc<k>/seed<s>`, the output of `kernelcond.evaluate.evaluate_support` (KRR only)
plus `subset: {ipc, seed}`. It is rewritten after every finished cell, so a re-run
of a killed job skips finished cells, and a re-run of a finished command only
prints its stored results.
"""

import math
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (experiments/ helpers: data, distributed and version flags)
import _run  # noqa: E402

from kernelcond import evaluate  # noqa: E402
from kernelcond import experiment  # noqa: E402
from kernelcond import io  # noqa: E402
from kernelcond import kernels  # noqa: E402
from kernelcond import krr  # noqa: E402
from kernelcond import preprocess  # noqa: E402
from kernelcond import report  # noqa: E402

FLAGS = flags.FLAGS
SOLVERS = ("cholesky", "cg")
_common.define_data_flags()
_common.define_distributed_flags()
flags.DEFINE_string("kernel", "fc3", "Kernel spec, e.g. fc3 or 'fc3:W_std=1.5,b_std=0.05'.")
flags.DEFINE_enum("kernel_backend", "auto", kernels.BACKENDS, "Kernel backend.")
flags.DEFINE_enum("kernel_type", "ntk", kernels.KERNEL_KINDS, "NTK or NNGP.")
flags.DEFINE_list("ipc", ["1", "10", "50"], "Images per class (comma-separated), or 'all' "
                  "for the whole training set.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the random subsets.")
flags.DEFINE_float("reg", 1e-6, "Relative ridge: reg * trace(K) / n (>= 0).")
flags.DEFINE_integer("batch_size", 256, "Kernel block size.")
flags.DEFINE_enum("solver", "cholesky", SOLVERS, "cholesky: the whole kernel on one device; "
                  "cg: Nystrom-preconditioned conjugate gradients over a kernel held in blocks "
                  "on the host (large training sets).")
flags.DEFINE_integer("cg_rank", 1000, "cg: Nystrom landmarks of the preconditioner.")
flags.DEFINE_float("cg_tol", 1e-4, "cg: relative residual at which CG stops.")
flags.DEFINE_integer("cg_max_iters", 2000, "cg: most iterations.")
flags.DEFINE_string("workdir", "runs/krr_baseline", "Output directory (created; the same "
                    "command resumes, or prints the results of a finished run; another "
                    "configuration is refused).")
flags.register_validator("reg", lambda v: math.isfinite(v) and v >= 0,
                         message="--reg must be a finite number >= 0")
flags.register_validator("ipc", lambda v: bool(v) and all(
    s == "all" or (s.isdigit() and int(s) >= 1) for s in v),
    message="--ipc must list positive integers or 'all'")
flags.register_validator("seeds", lambda v: bool(v) and all(s.lstrip("-").isdigit() for s in v),
                         message="--seeds must list integers")
flags.register_validator("batch_size", lambda v: v >= 1, message="--batch_size must be >= 1")
flags.register_validator("cg_rank", lambda v: v >= 1, message="--cg_rank must be >= 1")
flags.register_validator("cg_tol", lambda v: math.isfinite(v) and 0 < v < 1,
                         message="--cg_tol must be in (0, 1)")
flags.register_validator("cg_max_iters", lambda v: v >= 1, message="--cg_max_iters must be >= 1")


def cells(ipcs: list, seeds: list[int]) -> list[tuple[str, object, int]]:
  """`(name, ipc, seed)` per evaluation; the whole training set ('all') is one cell."""
  out = []
  for ipc in ipcs:
    if ipc == "all":
      out.append(("all", ipc, seeds[0]))
    else:
      out.extend((f"ipc{ipc}/seed{seed}", ipc, seed) for seed in seeds)
  return out


def krr_cg(config: evaluate.EvalConfig, x_train, y_train, x_test, y_test) -> dict:
  """The KRR record of `evaluate_support`, solved by `krr.evaluate_cg` (with CG details)."""
  kernel_fn = kernels.make_kernel_fn(config.kernel, config.kernel_backend)
  start = time.time()

  def progress(iteration, residual):
    if iteration == 1 or iteration % 25 == 0:
      logging.info("CG iteration %d: relative residual %.3g (%.0fs)", iteration, residual,
                   time.time() - start)

  result = krr.evaluate_cg(kernel_fn, x_train, y_train, x_test, y_test, config.reg,
                           config.kernel_type, rank=FLAGS.cg_rank, tol=FLAGS.cg_tol,
                           max_iters=FLAGS.cg_max_iters, seed=0, batch_size=FLAGS.batch_size,
                           callback=progress)
  return {"kernel": config.kernel, "kernel_type": config.kernel_type,
          "backend": kernel_fn.backend, "reg": config.reg, "accuracy": result["accuracy"],
          "solver": "cg",
          "cg": {"preconditioner": "nystrom", "rank": FLAGS.cg_rank, "tol": FLAGS.cg_tol,
                 "iterations": result["iterations"], "residual": result["residual"],
                 "converged": result["converged"]}}


def run_cell(config, data, ipc, seed: int) -> dict:
  """The evaluation (`evaluate_support`, KRR only) of one class-balanced random subset.

  `ipc='all'` takes the whole training set; its `subset.ipc` is the mean class size
  (what the report tabulates it under) and `subset.all` is true.
  """
  if ipc == "all":
    idx = np.arange(len(data.y_train))
    subset = {"ipc": round(len(idx) / data.num_classes), "seed": seed, "all": True}
  else:
    idx = preprocess.class_balanced_indices(data.y_train, ipc, seed, data.num_classes)
    subset = {"ipc": ipc, "seed": seed}
  labels = data.y_train[idx]
  y_support = preprocess.one_hot(labels, data.num_classes)
  if FLAGS.solver == "cg":
    t0 = time.perf_counter()
    result = {"support_size": len(idx), "label_kind": "hard",
              "krr": krr_cg(config, data.x_train[idx], y_support, data.x_test, data.y_test),
              "networks": {}, "slapknn": None}
    result["seconds"] = time.perf_counter() - t0
  else:
    result = evaluate.evaluate_support(
        config, data.x_train[idx], y_support, data.x_test, data.y_test,
        num_classes=data.num_classes, labels=labels)
  return {**result, "subset": subset}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _common.maybe_initialize_distributed()
  with _common.user_errors():
    run()


def build_config() -> dict:
  """The run's configuration (config.json) from the flags; bad values are named."""
  ipcs = [v if v == "all" else int(v) for v in FLAGS.ipc]
  spec = kernels.get_spec(FLAGS.kernel)
  backend = kernels.resolve_backend(FLAGS.kernel_backend, spec)
  config = {
      "experiment": "krr_baseline", **_common.data_config(), "kernel": FLAGS.kernel,
      "spec": spec.to_dict(), "kernel_backend": backend, "kernel_type": FLAGS.kernel_type,
      "ipc": ipcs, "seeds": [int(v) for v in FLAGS.seeds], "reg": FLAGS.reg,
  }
  if FLAGS.solver == "cg":  # Cholesky runs keep the configuration they always had
    config["solver"] = {"name": "cg", "preconditioner": "nystrom", "rank": FLAGS.cg_rank,
                        "tol": FLAGS.cg_tol, "max_iters": FLAGS.cg_max_iters}
  return config


def title(config: dict, dataset: str, n_test: int) -> str:
  solver = " by Nystrom-preconditioned CG" if "solver" in config else ""
  return (f"KRR on natural class-balanced subsets: {dataset}, {FLAGS.kernel} "
          f"{FLAGS.kernel_type.upper()} ({config['kernel_backend']} backend), reg={FLAGS.reg}"
          f"{solver}, test set of {n_test}")


def run():
  start = time.time()
  config = build_config()
  path = os.path.join(FLAGS.workdir, "results.json")
  stored = io.finished_results(FLAGS.workdir, config)  # reads only
  todo = cells(config["ipc"], config["seeds"])
  if stored is not None and all(name in stored["evaluations"] for name, _, _ in todo):
    _run.print_finished(stored, path, title(config, stored["dataset"]["name"],
                                            stored["run"]["n_test"]))
    return
  io.check_workdir(FLAGS.workdir, "--workdir")
  data = _common.load_data_from_flags()
  for _, ipc, _ in todo:  # fail before touching the workdir on a budget a class cannot meet
    if ipc != "all":
      preprocess.class_balanced_indices(data.y_train, ipc, 0, data.num_classes)
  eval_config = evaluate.EvalConfig(kernel=FLAGS.kernel, kernel_backend=config["kernel_backend"],
                                    kernel_type=FLAGS.kernel_type, reg=FLAGS.reg, protocols=(),
                                    block_size=FLAGS.batch_size)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  io.check_run_config(FLAGS.workdir, config)

  previous = stored or (report.load_record(path) if os.path.exists(path) else {})
  evaluations = dict(previous.get("evaluations") or {})
  elapsed_before = (previous.get("run") or {}).get("wall_time_s") or 0.0
  for name, ipc, seed in todo:
    if name in evaluations:
      logging.info("%s already done: %.4f", name, evaluations[name]["krr"]["accuracy"])
      continue
    evaluations[name] = run_cell(eval_config, data, ipc, seed)
    logging.info("%s test_accuracy=%.4f (%.1fs)", name, evaluations[name]["krr"]["accuracy"],
                 evaluations[name]["seconds"])
    run_info = {"wall_time_s": elapsed_before + time.time() - start, "n_test": len(data.y_test)}
    io.save_json(path, experiment.results_record("krr_baseline", config, data, evaluations,
                                                 run_info))

  print("\n" + title(config, data.name, len(data.y_test)))
  print(f"{'ipc':>5} {'support':>8} {'mean acc':>9} {'std':>7}  seeds")
  for ipc in config["ipc"]:
    done = [e for e in evaluations.values()
            if (e["subset"].get("all") if ipc == "all" else e["subset"]["ipc"] == ipc
                and not e["subset"].get("all"))]
    accs = [e["krr"]["accuracy"] for e in done]
    print(f"{ipc:>5} {done[0]['support_size']:>8} {np.mean(accs):>9.4f} {np.std(accs):>7.4f}  "
          f"{len(accs)}")
  print(f"results: {path}")


if __name__ == "__main__":
  app.run(main, flags_parser=_common.parse_flags)
