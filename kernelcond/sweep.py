"""Sweeps of experiment scripts: cells, their finished checks, and running them.

A sweep is a list of `Cell`s; each runs one experiment script in a subprocess
with its own workdir under the sweep's root, and is finished when its
results.json (read with `kernelcond.report.load_record`, the one reader of every
results format) holds the outputs the cell asks for. `run_sweep` runs the
unfinished cells in order, skipping finished ones and those whose dependencies
failed, and rewrites `root/sweep.json` (cells, settings, machine) after each.

  kip    natural/ipc<k>/seed<s>  krr_baseline.py (one ipc, one seed)
         ls/ipc<k>/seed<s>       distill.py --method=ls
         kip/ipc<k>/seed<s>      distill.py --method=kip
  prune  scores/<score>          score.py (el2n, grand, forgetting)
         prune/full              prune.py --fractions=1.0
         prune/<method>          prune.py --methods=<method> (scores from scores/<score>)
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

SWEEPS = ("kip", "prune")
KIP_METHODS = ("kip", "ls")
PRUNE_METHODS = ("random", "el2n", "grand", "forgetting", "herding", "kcenter")
SCORE_METHODS = ("el2n", "grand", "forgetting")
# Defaults that differ between the two sweeps (a setting left as None takes these).
DEFAULTS = {
    "kip": {"seeds": ["0", "1", "2"], "methods": list(KIP_METHODS), "lr": 0.04},
    "prune": {"seeds": ["0", "1"], "methods": list(PRUNE_METHODS), "lr": 0.05},
}
_DATA = ("dataset", "data_dir", "data_source", "standardize", "zca")
_KIP = ("kernel", "kernel_backend", "steps", "target_batch", "reg", "lr_schedule",
        "net_epochs")
_PRUNE = ("model", "model_kwargs", "epochs", "batch_size", "score_epochs", "score_inits",
          "score_seed")


def machine_info() -> dict:
  """CPU model (from /proc/cpuinfo where there is one), core count, OS and Python."""
  model = None
  try:
    with open("/proc/cpuinfo") as f:
      model = next((line.split(":", 1)[1].strip() for line in f
                    if line.lower().startswith("model name")), None)
  except OSError:  # no /proc/cpuinfo: not Linux
    pass
  return {"cpu_model": model or platform.processor() or platform.machine(),
          "cpu_cores": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version()}


def read_sweep(root: str) -> Optional[dict]:
  """root/sweep.json, or None when there is none."""
  path = os.path.join(root, "sweep.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


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


def read_record(workdir: str) -> Optional[dict]:
  """workdir/results.json in the shared schema, or None (missing, being written, unknown)."""
  from kernelcond import report
  try:
    return report.load_record(os.path.join(workdir, "results.json"))
  except (OSError, ValueError):
    return None


def distill_finished(workdir: str, method: str, steps: int, protocols) -> bool:
  """A distill run is finished: KRR accuracy, all steps, and every protocol's networks."""
  r = read_record(workdir)
  distilled = ((r or {}).get("evaluations") or {}).get("distilled") or {}
  if (distilled.get("krr") or {}).get("accuracy") is None:
    return False
  if method == "kip" and int(r["run"].get("steps") or 0) < steps:
    return False
  networks = distilled.get("networks") or {}
  return r["run"].get("transfer_error") is not None or all(p in networks for p in protocols)


def baseline_finished(workdir: str, ipc: int, seed: int) -> bool:
  """A krr_baseline run holds the KRR test accuracy of (ipc, seed)."""
  evaluations = ((read_record(workdir) or {}).get("evaluations") or {}).values()
  return any(e.get("subset") == {"ipc": ipc, "seed": seed} and
             (e.get("krr") or {}).get("accuracy") is not None for e in evaluations)


def prune_finished(workdir: str, method: str, fractions, seeds) -> bool:
  """A prune run holds every (fraction, seed) of `method` ('full' for fraction 1)."""
  done = {}
  for e in ((read_record(workdir) or {}).get("evaluations") or {}).values():
    subset = e.get("subset") or {}
    if subset.get("method") == method:
      done[float(subset["fraction"])] = {int(s) for n in (e.get("networks") or {}).values()
                                         for s in n.get("seeds") or []}
  wanted = [1.0] if method == "full" else [float(f) for f in fractions]
  return all(set(seeds) <= done.get(f, set()) for f in wanted)


def _ints(values, name) -> list:
  try:
    out = [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--{name} must be integers, got {values}") from None
  if not out or len(set(out)) != len(out):
    raise ValueError(f"--{name} must be a non-empty list without repeats, got {values}")
  return out


def make_settings(sweep: str, values: dict) -> dict:
  """The sweep's resolved settings from flag values (per-sweep defaults filled in).

  Args:
    sweep: 'kip' or 'prune'.
    values: flag name -> value (the flags of experiments/sweep.py).

  Raises:
    ValueError: on an unknown method or a bad list of numbers.
  """
  defaults = DEFAULTS[sweep]
  methods = [m.strip() for m in (values["methods"] or defaults["methods"]) if m.strip()]
  valid = KIP_METHODS if sweep == "kip" else PRUNE_METHODS
  unknown = sorted(set(methods) - set(valid))
  if unknown or not methods:
    raise ValueError(f"Unknown method(s) {unknown or methods} for --sweep={sweep}; valid: "
                     f"{', '.join(valid)}")
  s = {"sweep": sweep, **{k: values[k] for k in _DATA}, "methods": methods,
       "seeds": _ints(values["seeds"] or defaults["seeds"], "seeds"),
       "lr": values["lr"] if values["lr"] is not None else defaults["lr"],
       "cell_flags": list(values["cell_flag"])}
  if sweep == "kip":
    s.update({k: values[k] for k in _KIP}, ipc=_ints(values["ipc"], "ipc"),
             natural=values["natural"], protocols=[p for p in values["protocols"] if p],
             net_seeds=_ints(values["net_seeds"], "net_seeds"))
    if min(s["ipc"]) < 1 or s["steps"] < 1 or s["target_batch"] < 1:
      raise ValueError("--ipc, --steps and --target_batch must be >= 1")
    return s
  try:
    fractions = sorted({float(f) for f in values["fractions"]}, reverse=True)
  except ValueError:
    raise ValueError(f"--fractions must be numbers, got {values['fractions']}") from None
  if not fractions or any(not 0 < f <= 1 for f in fractions):
    raise ValueError(f"--fractions must lie in (0, 1], got {values['fractions']}")
  if values["score_epochs"] < 1 and "forgetting" in methods:
    raise ValueError("forgetting needs --score_epochs >= 1")
  return {**s, **{k: values[k] for k in _PRUNE}, "fractions": fractions}


def _data_args(s: dict) -> list:
  args = [f"--dataset={s['dataset']}", f"--data_source={s['data_source']}",
          f"--standardize={s['standardize']}", f"--zca={s['zca']}"]
  return args + ([f"--data_dir={s['data_dir']}"] if s["data_dir"] else [])


def kip_cells(s: dict, root: str, scripts: str) -> list:
  """Cells of the kip sweep: natural baselines, then Label Solve, then KIP."""
  kernel = [f"--kernel={s['kernel']}", f"--kernel_backend={s['kernel_backend']}",
            f"--reg={s['reg']}"]
  nets = [f"--protocols={','.join(s['protocols'])}",
          f"--net_seeds={','.join(map(str, s['net_seeds']))}", f"--net_epochs={s['net_epochs']}"]
  cells = []
  groups = ["natural"] * s["natural"] + [m for m in ("ls", "kip") if m in s["methods"]]
  for group in groups:
    for ipc in s["ipc"]:
      for seed in s["seeds"]:
        name = f"{group}/ipc{ipc}/seed{seed}"
        workdir = os.path.join(root, name)
        if group == "natural":
          cells.append(Cell(name, os.path.join(scripts, "krr_baseline.py"),
                            [*_data_args(s), *kernel, f"--ipc={ipc}", f"--seeds={seed}",
                             f"--workdir={workdir}"], workdir,
                            lambda w=workdir, i=ipc, sd=seed: baseline_finished(w, i, sd)))
          continue
        args = [*_data_args(s), *kernel, f"--method={group}", f"--ipc={ipc}", f"--seed={seed}",
                *nets]
        if group == "kip":
          args += [f"--steps={s['steps']}", f"--target_batch={s['target_batch']}",
                   f"--lr={s['lr']}", f"--lr_schedule={s['lr_schedule']}"]
        args += [*s["cell_flags"], f"--workdir={workdir}"]
        cells.append(Cell(name, os.path.join(scripts, "distill.py"), args, workdir,
                          lambda w=workdir, m=group: distill_finished(
                              w, m, s["steps"], s["protocols"])))
  return cells


def prune_cells(s: dict, root: str, scripts: str) -> list:
  """Cells of the prune sweep: scores, the full-set cell, then one cell per method."""
  train = [f"--model={s['model']}", f"--model_kwargs={s['model_kwargs']}",
           f"--batch_size={s['batch_size']}", f"--lr={s['lr']}"]
  cells = []
  for method in (m for m in SCORE_METHODS if m in s["methods"]):
    workdir = os.path.join(root, "scores", method)
    cells.append(Cell(f"scores/{method}", os.path.join(scripts, "score.py"),
                      [*_data_args(s), *train, f"--method={method}",
                       f"--epochs={s['score_epochs']}", f"--num_inits={s['score_inits']}",
                       f"--seed={s['score_seed']}", f"--workdir={workdir}"], workdir,
                      lambda w=workdir, m=method: os.path.exists(
                          os.path.join(w, f"scores_{m}.npz"))))
  common = [*_data_args(s), *train, f"--epochs={s['epochs']}",
            f"--score_epochs={s['score_epochs']}", f"--score_inits={s['score_inits']}",
            f"--score_seed={s['score_seed']}", f"--seeds={','.join(map(str, s['seeds']))}"]
  script = os.path.join(scripts, "prune.py")
  if 1.0 in s["fractions"]:
    workdir = os.path.join(root, "prune", "full")
    cells.append(Cell("prune/full", script, [*common, "--methods=random", "--fractions=1.0",
                                             *s["cell_flags"], f"--workdir={workdir}"],
                      workdir, lambda w=workdir: prune_finished(w, "full", [1.0], s["seeds"])))
  pruned = [f for f in s["fractions"] if f < 1.0]
  for method in s["methods"] if pruned else []:
    workdir = os.path.join(root, "prune", method)
    args = [*common, f"--methods={method}", f"--fractions={','.join(f'{f:g}' for f in pruned)}"]
    deps = ()
    if method in SCORE_METHODS:
      args.append(f"--scores_dir={os.path.join(root, 'scores', method)}")
      deps = (f"scores/{method}",)
    cells.append(Cell(f"prune/{method}", script,
                      [*args, *s["cell_flags"], f"--workdir={workdir}"], workdir,
                      lambda w=workdir, m=method: prune_finished(w, m, pruned, s["seeds"]),
                      deps))
  return cells


def build_cells(settings: dict, root: str, scripts: str) -> list:
  """All cells of the sweep, in the order they run (`scripts`: the experiments folder)."""
  return (kip_cells if settings["sweep"] == "kip" else prune_cells)(settings, root, scripts)


class Terminated(Exception):
  """Raised by the SIGTERM handler so the running cell can be stopped cleanly."""


def _on_sigterm(signum, frame):
  del signum, frame
  raise Terminated()


def run_cell(cell: Cell, log_path: str) -> int:
  """Runs one cell, its output appended to `log_path`; returns its exit status.

  On Ctrl-C or SIGTERM the cell is sent SIGTERM (the experiments checkpoint on it)
  and waited for before the exception propagates.
  """
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
  with open(log_path, "a") as log:
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cell.command)}\n")
    log.flush()
    proc = subprocess.Popen(cell.command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
      return proc.wait()
    except (KeyboardInterrupt, Terminated):
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
          proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()
      raise


def summary(cell: Cell) -> str:
  """A short result line for the console: KRR and network accuracies of the cell."""
  evaluations = ((read_record(cell.workdir) or {}).get("evaluations") or {}).values()
  accs = [a for e in evaluations for a in [(e.get("krr") or {}).get("accuracy")] + [
      n.get("mean") for n in (e.get("networks") or {}).values()] if a is not None]
  if not accs:
    return "outputs written"
  return f"test accuracy {min(accs):.4f} .. {max(accs):.4f} over {len(accs)} evaluation(s)"


def sweep_record(settings: dict, root: str, argv, all_cells, finished: dict,
                 repo_dir: str) -> dict:
  """The sweep.json record, keeping the measured times of cells finished earlier."""
  entries = {c.name: {
      "name": c.name, "script": os.path.relpath(c.script, repo_dir), "workdir": c.workdir,
      "command": shlex.join(c.command),
      "log": os.path.join(root, "logs", c.name.replace("/", "__") + ".log"),
      "status": "finished" if finished[c.name] else "pending", "returncode": None,
      "wall_time_s": None} for c in all_cells}
  for old in (read_sweep(root) or {}).get("cells", []):
    entry = entries.get(old.get("name"))
    if entry and entry["status"] == "finished" and old.get("status") == "finished":
      entry.update(returncode=old.get("returncode"), wall_time_s=old.get("wall_time_s"))
  return {"sweep": settings["sweep"], "root": root, "argv": list(argv), "settings": settings,
          "machine": machine_info(), "cells": list(entries.values())}


def run_sweep(record: dict, cells, finished: dict, keep_going: bool = True) -> int:
  """Runs the unfinished `cells`, rewriting root/sweep.json after each.

  Returns:
    0 when every cell is finished, 1 when one is not, 130 when interrupted.
  """
  from kernelcond import io
  entries = {e["name"]: e for e in record["cells"]}
  path = os.path.join(record["root"], "sweep.json")

  def save():
    counts = {}
    for e in record["cells"]:
      counts[e["status"]] = counts.get(e["status"], 0) + 1
    record["counts"] = counts
    io.save_json(path, record)

  os.makedirs(record["root"], exist_ok=True)
  save()
  previous = signal.signal(signal.SIGTERM, _on_sigterm)
  start, entry, prefix, t0 = time.time(), None, "", time.time()
  try:
    for i, cell in enumerate(cells, 1):
      entry, prefix = entries[cell.name], f"[{i}/{len(cells)}] {cell.name}"
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
      rc = run_cell(cell, entry["log"])
      done = rc == 0 and cell.is_finished()
      entry.update(returncode=rc, wall_time_s=time.time() - t0,
                   status="finished" if done else "failed")
      save()
      if done:
        print(f"{prefix}: finished in {entry['wall_time_s']:.1f} s: {summary(cell)}")
      else:
        why = f"exit status {rc}" if rc else "exited 0 without its final outputs"
        print(f"{prefix}: FAILED ({why}); see {entry['log']}", file=sys.stderr)
        if not keep_going:
          break
  except (KeyboardInterrupt, Terminated):
    if entry is not None and entry["status"] == "running":
      entry.update(status="interrupted", wall_time_s=time.time() - t0)
    save()
    print(f"\n{prefix}: interrupted; re-run the same command to resume.", file=sys.stderr)
    return 130
  finally:
    signal.signal(signal.SIGTERM, previous)
  print(f"\n{record['sweep']} sweep: " + ", ".join(
      f"{n} {k}" for k, n in sorted(record["counts"].items()))
        + f" ({time.time() - start:.0f} s); {path}")
  return 0 if all(entries[c.name]["status"] == "finished" for c in cells) else 1
