r"""The paper-reproduction sweeps, one command each, resumable cell by cell.

    # KIP and Label Solve at 1/10/50 images per class, FC NTK, 3 seeds, plus the natural
    # baseline (Nguyen, Chen, Lee, arXiv:2011.00050, Table 1; arXiv:2107.13034):
    python experiments/sweep.py --sweep=kip --dataset=fashion_mnist --root=runs/sweep_fmnist
    # Pruning curves for every score and baseline (Data Diet, arXiv:2107.07075):
    python experiments/sweep.py --sweep=prune --dataset=fashion_mnist \
        --root=runs/sweep_prune_fmnist
    # Then the tables and figures of docs/results.md:
    python experiments/report.py --roots=runs/sweep_fmnist,runs/sweep_prune_fmnist \
        --out=docs/results.md

A sweep is a list of cells; each cell runs one experiment script in a subprocess
(`sys.executable`) with its own workdir under `--root`:

  --sweep=kip    natural/ipc<k>/seed<s>  experiments/krr_baseline.py (one ipc, one seed)
                 ls/ipc<k>/seed<s>       experiments/distill.py --method=ls
                 kip/ipc<k>/seed<s>      experiments/distill.py --method=kip
  --sweep=prune  scores/<score>          experiments/score.py (el2n, grand, forgetting)
                 prune/full              experiments/prune.py --fractions=1.0
                 prune/<method>          experiments/prune.py --methods=<method>
                                         (score methods read scores/<score>)

A cell is finished when its outputs hold the final keys for the requested settings
(e.g. a KIP `results.json` with `test_accuracy`, all `--steps` done and its transfer
accuracy). Re-running the same command skips finished cells and re-runs the others;
the experiments resume themselves from their checkpoints, so a killed sweep loses at
most one checkpoint interval. Adding seeds or images-per-class later extends the
sweep; raising `--steps` extends KIP runs only with `--lr_schedule=constant` (a
cosine schedule decays over `--steps`, so distill.py refuses a longer budget in the
same workdir: start a new `--root`). `--dry_run` prints the command of every cell and whether it is finished,
without running or writing anything; `--only=REGEX` restricts the sweep to cells
whose name matches (e.g. to spread cells over machines).

Each cell's output goes to `--root/logs/<cell>.log`. `--root/sweep.json` lists
every cell (name, command, workdir, status, return code, wall time), the settings,
the command line and the machine (CPU model, cores), and is rewritten after every
cell. The exit status is 0 when every cell is finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

from absl import app
from absl import flags

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402
import report  # noqa: E402  (machine_info; report.py defines its flags only when run)

SWEEPS = ("kip", "prune")
KIP_METHODS = ("kip", "ls")
PRUNE_METHODS = ("random", "el2n", "grand", "forgetting", "herding", "kcenter")
SCORE_METHODS = ("el2n", "grand", "forgetting")

# Defaults that differ between the two sweeps (a flag left unset takes these).
_DEFAULTS = {
    "kip": {"seeds": ["0", "1", "2"], "methods": list(KIP_METHODS), "lr": 0.04},
    "prune": {"seeds": ["0", "1"], "methods": list(PRUNE_METHODS), "lr": 0.05},
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("sweep", None, list(SWEEPS), "Which sweep: kip or prune.")
flags.DEFINE_string("root", None, "Output directory: one workdir per cell, logs/, sweep.json.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (see kernelcond/data.py), or a "
                    "TFDS name with --data_source=tfds.")
flags.DEFINE_string("data_dir", None, "Where the dataset files are (default per dataset).")
flags.DEFINE_enum("data_source", "local", ["local", "tfds"], "Local files or TFDS.")
flags.DEFINE_bool("standardize", True, "Standardise each channel with training statistics.")
flags.DEFINE_float("zca", 0.0, "ZCA whitening strength (0 = off).")
flags.DEFINE_list("seeds", None, "Seeds (default: 0,1,2 for kip; 0,1 for prune).")
flags.DEFINE_list("methods", None, "kip sweep: any of kip, ls (default both). prune sweep: "
                  f"any of {', '.join(PRUNE_METHODS)} (default all).")
flags.DEFINE_bool("natural", True, "kip sweep: include the natural baseline "
                  "(krr_baseline.py).")
# --sweep=kip
flags.DEFINE_list("ipc", ["1", "10", "50"], "kip: images per class.")
flags.DEFINE_string("kernel", "fc3", "kip: kernel spec, e.g. fc3.")
flags.DEFINE_enum("kernel_backend", "auto", ["auto", "nt", "native"], "kip: kernel backend.")
flags.DEFINE_integer("steps", 1000, "kip: KIP steps.")
flags.DEFINE_integer("target_batch", 5000, "kip: target examples per KIP step.")
flags.DEFINE_enum("lr_schedule", "cosine", ["constant", "cosine"],
                  "kip: KIP learning-rate schedule (distill.py --lr_schedule).")
flags.DEFINE_float("lr", None, "Learning rate: KIP's Adam (default 0.04) or the pruned "
                   "networks' SGD (default 0.05).")
flags.DEFINE_float("reg", 1e-6, "kip: relative ridge reg * trace(K) / n (KRR, KIP, LS).")
flags.DEFINE_enum("transfer_model", "mlp", ["mlp", "convnet", "none"],
                  "kip: finite network trained on each small set.")
flags.DEFINE_integer("transfer_epochs", 1000, "kip: steps of the finite network.")
# --sweep=prune
flags.DEFINE_list("fractions", ["1.0", "0.8", "0.6", "0.5", "0.4", "0.2"],
                  "prune: fractions of the training set kept (1.0 = the full-set cell).")
flags.DEFINE_string("model", "convnet", "prune: mlp, convnet or resnet18.")
flags.DEFINE_string("model_kwargs", "", "prune: model attributes, e.g. 'depth=2,width=16'.")
flags.DEFINE_integer("epochs", 10, "prune: training budget in epochs of the full set.")
flags.DEFINE_integer("batch_size", 128, "prune: batch size.")
flags.DEFINE_integer("score_epochs", 5, "prune: epochs of training before scoring.")
flags.DEFINE_integer("score_inits", 2, "prune: initialisations scores are averaged over.")
flags.DEFINE_integer("score_seed", 100, "prune: seed of the first scoring network.")
# Running.
flags.DEFINE_multi_string("cell_flag", [], "Extra flag for every distill.py / prune.py cell, "
                          "repeatable, e.g. --cell_flag=--eval_every=100.")
flags.DEFINE_string("only", None, "Only cells whose name matches this regular expression.")
flags.DEFINE_bool("dry_run", False, "Print the cells' commands and status; run nothing.")
flags.DEFINE_bool("keep_going", True, "After a failed cell, go on with the others.")
flags.mark_flags_as_required(["sweep", "root"])


@dataclasses.dataclass
class Cell:
  """One experiment run of a sweep.

  Attributes:
    name: unique name, also the workdir relative to the root ('kip/ipc10/seed0').
    script: experiment script path.
    args: its command-line flags (including --workdir).
    workdir: absolute workdir.
    is_finished: reads the workdir; True when the cell's final outputs are there.
    deps: names of cells that must be finished first.
  """
  name: str
  script: str
  args: list
  workdir: str
  is_finished: Callable[[], bool]
  deps: tuple = ()

  @property
  def command(self) -> list:
    return [sys.executable, self.script, *self.args]


def _read_results(workdir: str) -> Optional[dict]:
  """workdir/results.json, or None if it is missing or unreadable (being written)."""
  path = os.path.join(workdir, "results.json")
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def distill_finished(workdir: str, method: str, steps: int, transfer: bool) -> bool:
  """A distill.py run is finished: KRR accuracy, all steps, and the transfer (if asked)."""
  r = _read_results(workdir)
  if not r or r.get("test_accuracy") is None:
    return False
  if method == "kip" and int(r.get("steps", 0)) < steps:
    return False
  if transfer and r.get("transfer_test_accuracy") is None and not r.get("transfer_error"):
    return False
  return True


def baseline_finished(workdir: str, ipc: int, seed: int) -> bool:
  """A krr_baseline.py run holds the test accuracy of (ipc, seed)."""
  r = _read_results(workdir)
  cell = ((r or {}).get("results") or {}).get(str(ipc)) or {}
  return seed in cell.get("seeds", []) and len(cell.get("test_accuracy", [])) == len(
      cell.get("seeds", []))


def prune_finished(workdir: str, method: str, fractions, seeds) -> bool:
  """A prune.py run holds every (fraction, seed) of `method` ('full' for fraction 1)."""
  r = _read_results(workdir)
  cells = (r or {}).get("results") or {}
  for fraction in fractions:
    key = "1" if method == "full" else f"{fraction:g}"
    done = (cells.get(method) or {}).get(key, {}).get("seeds", [])
    if any(seed not in done for seed in seeds):
      return False
  return True


def _parse_ints(values, name) -> list:
  try:
    out = [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--{name} must be integers, got {values}") from None
  if not out or len(set(out)) != len(out):
    raise ValueError(f"--{name} must be a non-empty list without repeats, got {values}")
  return out


def settings_from_flags() -> dict:
  """The sweep's resolved settings (per-sweep defaults filled in), validated."""
  sweep = FLAGS.sweep
  defaults = _DEFAULTS[sweep]
  methods = [m.strip() for m in (FLAGS.methods or defaults["methods"]) if m.strip()]
  valid = KIP_METHODS if sweep == "kip" else PRUNE_METHODS
  unknown = sorted(set(methods) - set(valid))
  if unknown or not methods:
    raise ValueError(f"Unknown method(s) {unknown or methods} for --sweep={sweep}; valid: "
                     f"{', '.join(valid)}")
  settings = {
      "sweep": sweep, "dataset": FLAGS.dataset, "data_dir": FLAGS.data_dir,
      "data_source": FLAGS.data_source, "standardize": FLAGS.standardize, "zca": FLAGS.zca,
      "seeds": _parse_ints(FLAGS.seeds or defaults["seeds"], "seeds"), "methods": methods,
      "lr": FLAGS.lr if FLAGS.lr is not None else defaults["lr"],
      "cell_flags": list(FLAGS.cell_flag),
  }
  if sweep == "kip":
    ipcs = _parse_ints(FLAGS.ipc, "ipc")
    if min(ipcs) < 1 or FLAGS.steps < 1 or FLAGS.target_batch < 1:
      raise ValueError("--ipc, --steps and --target_batch must be >= 1")
    settings.update(ipc=ipcs, natural=FLAGS.natural, kernel=FLAGS.kernel,
                    kernel_backend=FLAGS.kernel_backend, steps=FLAGS.steps,
                    target_batch=FLAGS.target_batch, reg=FLAGS.reg,
                    lr_schedule=FLAGS.lr_schedule,
                    transfer_model=FLAGS.transfer_model, transfer_epochs=FLAGS.transfer_epochs)
  else:
    try:
      fractions = sorted({float(f) for f in FLAGS.fractions}, reverse=True)
    except ValueError:
      raise ValueError(f"--fractions must be numbers, got {FLAGS.fractions}") from None
    if not fractions or any(not 0 < f <= 1 for f in fractions):
      raise ValueError(f"--fractions must lie in (0, 1], got {FLAGS.fractions}")
    if FLAGS.score_epochs < 1 and "forgetting" in methods:
      raise ValueError("forgetting needs --score_epochs >= 1")
    settings.update(fractions=fractions, model=FLAGS.model, model_kwargs=FLAGS.model_kwargs,
                    epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                    score_epochs=FLAGS.score_epochs, score_inits=FLAGS.score_inits,
                    score_seed=FLAGS.score_seed)
  return settings


def _data_args(s: dict) -> list:
  args = [f"--dataset={s['dataset']}", f"--data_source={s['data_source']}",
          f"--standardize={s['standardize']}", f"--zca={s['zca']}"]
  if s["data_dir"]:
    args.append(f"--data_dir={s['data_dir']}")
  return args


def kip_cells(s: dict, root: str) -> list:
  """Cells of --sweep=kip: natural baselines, then Label Solve, then KIP."""
  kernel = [f"--kernel={s['kernel']}", f"--kernel_backend={s['kernel_backend']}",
            f"--reg={s['reg']}"]
  cells = []
  groups = (["natural"] if s["natural"] else []) + [m for m in ("ls", "kip")
                                                    if m in s["methods"]]
  for group in groups:
    for ipc in s["ipc"]:
      for seed in s["seeds"]:
        name = f"{group}/ipc{ipc}/seed{seed}"
        workdir = os.path.join(root, name)
        if group == "natural":
          cells.append(Cell(name, os.path.join(HERE, "krr_baseline.py"),
                            [*_data_args(s), *kernel, f"--ipc={ipc}", f"--seeds={seed}",
                             f"--workdir={workdir}"], workdir,
                            lambda w=workdir, i=ipc, sd=seed: baseline_finished(w, i, sd)))
          continue
        args = [*_data_args(s), *kernel, f"--method={group}", f"--ipc={ipc}",
                f"--seed={seed}", f"--transfer_model={s['transfer_model']}",
                f"--transfer_epochs={s['transfer_epochs']}"]
        if group == "kip":
          args += [f"--steps={s['steps']}", f"--target_batch={s['target_batch']}",
                   f"--lr={s['lr']}", f"--lr_schedule={s['lr_schedule']}"]
        args += [*s["cell_flags"], f"--workdir={workdir}"]
        transfer = s["transfer_model"] != "none"
        cells.append(Cell(name, os.path.join(HERE, "distill.py"), args, workdir,
                          lambda w=workdir, m=group, t=transfer: distill_finished(
                              w, m, s["steps"], t)))
  return cells


def prune_cells(s: dict, root: str) -> list:
  """Cells of --sweep=prune: scores, the full-set cell, then one cell per method."""
  train = [f"--model={s['model']}", f"--model_kwargs={s['model_kwargs']}",
           f"--batch_size={s['batch_size']}", f"--lr={s['lr']}"]
  cells = []
  for method in (m for m in SCORE_METHODS if m in s["methods"]):
    name = f"scores/{method}"
    workdir = os.path.join(root, name)
    cells.append(Cell(name, os.path.join(HERE, "score.py"),
                      [*_data_args(s), *train, f"--method={method}",
                       f"--epochs={s['score_epochs']}", f"--num_inits={s['score_inits']}",
                       f"--seed={s['score_seed']}", f"--workdir={workdir}"], workdir,
                      lambda w=workdir, m=method: os.path.exists(
                          os.path.join(w, f"scores_{m}.npz"))))
  common = [*_data_args(s), *train, f"--epochs={s['epochs']}",
            f"--score_epochs={s['score_epochs']}", f"--score_inits={s['score_inits']}",
            f"--score_seed={s['score_seed']}", f"--seeds={','.join(map(str, s['seeds']))}"]
  fractions = s["fractions"]
  if 1.0 in fractions:
    workdir = os.path.join(root, "prune", "full")
    cells.append(Cell("prune/full", os.path.join(HERE, "prune.py"),
                      [*common, "--methods=random", "--fractions=1.0", *s["cell_flags"],
                       f"--workdir={workdir}"], workdir,
                      lambda w=workdir: prune_finished(w, "full", [1.0], s["seeds"])))
  pruned = [f for f in fractions if f < 1.0]
  for method in s["methods"] if pruned else []:
    name = f"prune/{method}"
    workdir = os.path.join(root, name)
    args = [*common, f"--methods={method}", f"--fractions={','.join(f'{f:g}' for f in pruned)}"]
    deps = ()
    if method in SCORE_METHODS:
      args.append(f"--scores_dir={os.path.join(root, 'scores', method)}")
      deps = (f"scores/{method}",)
    args += [*s["cell_flags"], f"--workdir={workdir}"]
    cells.append(Cell(name, os.path.join(HERE, "prune.py"), args, workdir,
                      lambda w=workdir, m=method: prune_finished(w, m, pruned, s["seeds"]),
                      deps))
  return cells


def build_cells(settings: dict, root: str) -> list:
  """All cells of the sweep, in the order they run."""
  return (kip_cells if settings["sweep"] == "kip" else prune_cells)(settings, root)


class _Terminated(Exception):
  """Raised by the SIGTERM handler so the running cell can be stopped cleanly."""


def _on_sigterm(signum, frame):
  del signum, frame
  raise _Terminated()


def _run_cell(cell: Cell, log_path: str) -> int:
  """Runs one cell, its output appended to `log_path`. Returns the exit status.

  On Ctrl-C or SIGTERM the cell is sent SIGTERM (the experiments checkpoint on it)
  and waited for before the exception propagates.
  """
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  with open(log_path, "a") as log:
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cell.command)}\n")
    log.flush()
    proc = subprocess.Popen(cell.command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
      return proc.wait()
    except (KeyboardInterrupt, _Terminated):
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
          proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()
      raise


def _accuracies(tree) -> list:
  """Every number in the `test_accuracy` lists of a nested results dict."""
  if not isinstance(tree, dict):
    return []
  found = [a for a in tree.get("test_accuracy") or [] if isinstance(a, (int, float))] if (
      isinstance(tree.get("test_accuracy"), list)) else []
  for key, value in tree.items():
    if key != "test_accuracy":
      found += _accuracies(value)
  return found


def _summary(cell: Cell) -> str:
  """A short result line for the console."""
  r = _read_results(cell.workdir) or {}
  if isinstance(r.get("test_accuracy"), (int, float)):
    text = f"KRR test accuracy {r['test_accuracy']:.4f}"
    if r.get("transfer_test_accuracy") is not None:
      text += f", transfer {r['transfer_test_accuracy']:.4f}"
    return text
  accs = _accuracies(r.get("results"))
  if accs:
    return f"test accuracy {min(accs):.4f} .. {max(accs):.4f} over {len(accs)} run(s)"
  return "outputs written"


def _save_sweep_json(path: str, record: dict) -> None:
  from kernelcond import io
  io.save_json(path, record)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  with _common.user_errors():
    settings = settings_from_flags()
    root = os.path.abspath(FLAGS.root)
    all_cells = build_cells(settings, root)
    cells = all_cells
    if FLAGS.only:
      try:
        pattern = re.compile(FLAGS.only)
      except re.error as e:
        raise ValueError(f"--only is not a valid regular expression: {e}") from None
      cells = [c for c in all_cells if pattern.search(c.name)]
      if not cells:
        raise ValueError(f"--only={FLAGS.only!r} matches no cell")
    for script in sorted({c.script for c in cells}):
      if not os.path.exists(script):
        raise FileNotFoundError(f"Experiment script {script} is missing")

  finished = {c.name: c.is_finished() for c in all_cells}
  if FLAGS.dry_run:
    for cell in cells:
      status = "finished" if finished[cell.name] else "pending"
      print(f"# {cell.name} [{status}]")
      print(shlex.join(cell.command))
    n_done = sum(finished[c.name] for c in cells)
    print(f"# {len(cells)} cell(s), {n_done} finished, {len(cells) - n_done} to run "
          "(dry run: nothing was run)")
    return 0

  os.makedirs(root, exist_ok=True)
  sweep_path = os.path.join(root, "sweep.json")
  record = {"sweep": settings["sweep"], "root": root, "argv": sys.argv,
            "settings": settings, "machine": report.machine_info(), "cells": []}
  entries = {}
  for cell in all_cells:
    entries[cell.name] = {
        "name": cell.name, "script": os.path.relpath(cell.script, os.path.dirname(HERE)),
        "workdir": cell.workdir, "command": shlex.join(cell.command),
        "log": os.path.join(root, "logs", cell.name.replace("/", "__") + ".log"),
        "status": "finished" if finished[cell.name] else "pending",
        "returncode": None, "wall_time_s": None}
  record["cells"] = [entries[c.name] for c in all_cells]
  previous_record = report.read_sweep(root) or {}
  for old in previous_record.get("cells", []):  # keep what earlier runs measured
    entry = entries.get(old.get("name"))
    if entry and entry["status"] == "finished" and old.get("status") == "finished":
      entry.update(returncode=old.get("returncode"), wall_time_s=old.get("wall_time_s"))

  def save():
    counts = {}
    for e in record["cells"]:
      counts[e["status"]] = counts.get(e["status"], 0) + 1
    record["counts"] = counts
    _save_sweep_json(sweep_path, record)

  save()
  previous = signal.signal(signal.SIGTERM, _on_sigterm)
  start = time.time()
  entry, prefix, t0 = None, "", time.time()
  try:
    for i, cell in enumerate(cells, 1):
      entry = entries[cell.name]
      prefix = f"[{i}/{len(cells)}] {cell.name}"
      if finished[cell.name]:
        print(f"{prefix}: finished, skipped")
        continue
      blocked = [d for d in cell.deps if d in entries and entries[d]["status"] != "finished"]
      if blocked:
        entry["status"] = "blocked"
        print(f"{prefix}: blocked by unfinished {', '.join(blocked)}")
        save()
        continue
      print(f"{prefix}: running (log {entry['log']})", flush=True)
      entry["status"] = "running"
      save()
      t0 = time.time()
      rc = _run_cell(cell, entry["log"])
      done = rc == 0 and cell.is_finished()
      entry.update(returncode=rc, wall_time_s=time.time() - t0,
                   status="finished" if done else "failed")
      save()
      if done:
        print(f"{prefix}: finished in {entry['wall_time_s']:.1f} s: {_summary(cell)}")
      else:
        why = f"exit status {rc}" if rc else "exited 0 without its final outputs"
        print(f"{prefix}: FAILED ({why}); see {entry['log']}", file=sys.stderr)
        if not FLAGS.keep_going:
          break
  except (KeyboardInterrupt, _Terminated):
    if entry is not None and entry["status"] == "running":
      entry.update(status="interrupted", wall_time_s=time.time() - t0)
    save()
    print(f"\n{prefix}: interrupted; re-run the same command to resume.", file=sys.stderr)
    return 130
  finally:
    signal.signal(signal.SIGTERM, previous)
  counts = record["counts"]
  print(f"\n{settings['sweep']} sweep: " + ", ".join(f"{n} {k}" for k, n in sorted(
      counts.items())) + f" ({time.time() - start:.0f} s); {sweep_path}")
  return 0 if all(entries[c.name]["status"] == "finished" for c in cells) else 1


if __name__ == "__main__":
  app.run(main)
