r"""Regenerate docs/results.md and its figures from sweep outputs.

    python experiments/report.py --roots=runs/sweep_fmnist,runs/sweep_prune_fmnist \
        --out=docs/results.md

Reads every `results.json` under each root (written by `experiments/distill.py`,
`experiments/krr_baseline.py` and `experiments/prune.py`, e.g. through
`experiments/sweep.py`) and each root's `sweep.json` (machine and command), and
writes a markdown report with

* condensation tables: KRR test accuracy of natural subsets, KIP and Label Solve
  per images-per-class budget (mean ± std over seeds, number of seeds), the test
  accuracy of a finite network trained on each set, and the cost (KIP steps,
  seconds per step, wall time, kernel backend, devices);
* pruning tables: test accuracy per selection method and fraction kept;
* the papers' numbers next to ours, labelled with the paper and its setting, which
  differs from ours;
* the machine (CPU model and core count) and library versions of the runs;

and PNG figures in `--figures_dir` (default: `figures/` next to `--out`): accuracy
vs images per class, and accuracy vs fraction kept with error bars.

Every number of the report comes from a `results.json` it reads, except the
papers' numbers, which live in `PAPER_RESULTS` below with their citations.
Standard deviations are over seeds with `ddof=0` (as the experiments compute
them); accuracies are in percent.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from typing import Iterable, Optional

import numpy as np

# The papers' numbers (test accuracy, %), from their tables. Their settings differ from
# ours (kernels, preprocessing, number of steps, label learning): they are shown next to
# our numbers for orientation, never as the same experiment.
PAPER_RESULTS = (
    {"dataset": "mnist", "method": "KIP", "setting": "FC NTK kernel, KRR",
     "paper": "Nguyen, Chen, Lee, ICLR 2021", "arxiv": "2011.00050",
     "accuracy": {1: 85.5, 10: 97.2, 50: 98.4}},
    {"dataset": "cifar10", "method": "KIP", "setting": "FC NTK kernel, KRR",
     "paper": "Nguyen, Chen, Lee, ICLR 2021", "arxiv": "2011.00050",
     "accuracy": {1: 40.5, 10: 53.1, 50: 58.6}},
    {"dataset": "fashion_mnist", "method": "KIP", "setting": "ConvNet NTK kernel, KRR",
     "paper": "Nguyen, Novak, Xiao, Lee, NeurIPS 2021", "arxiv": "2107.13034",
     "accuracy": {1: 76.7, 10: 88.8, 50: 91.0}},
    {"dataset": "fashion_mnist", "method": "Label Solve", "setting": "ConvNet NTK kernel, KRR",
     "paper": "Nguyen, Novak, Xiao, Lee, NeurIPS 2021", "arxiv": "2107.13034",
     "accuracy": {1: 65.3, 10: 80.8, 50: 86.9}},
)

DATASET_NAMES = {"digits": "digits (scikit-learn 8x8)", "fashion_mnist": "Fashion-MNIST",
                 "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "svhn": "SVHN"}
_METHOD_ORDER = ("natural", "KIP", "Label Solve")
_PRUNE_ORDER = ("random", "el2n", "grand", "forgetting", "herding", "kcenter")
_VERSION_KEYS = ("python", "jax", "jaxlib", "flax", "optax", "numpy", "scipy",
                 "neural-tangents", "scikit-learn", "kernelcond")


def machine_info() -> dict:
  """CPU model (from /proc/cpuinfo where there is one), core count, OS and Python."""
  model = None
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:  # no /proc/cpuinfo: not Linux
    model = None
  return {"cpu_model": model or platform.processor() or platform.machine(),
          "cpu_cores": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version()}


def pretty_dataset(name: str) -> str:
  return DATASET_NAMES.get(name, name)


def slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def stats(values: Iterable[float]) -> tuple[float, float, int]:
  """(mean, std with ddof=0, count) of a non-empty sequence."""
  v = np.asarray(list(values), np.float64)
  return float(v.mean()), float(v.std()), int(v.size)


def fmt_acc(values) -> str:
  """Accuracies in [0, 1] as '85.52 ± 0.31 (n=3)' (percent; '–' when empty)."""
  values = list(values)
  if not values:
    return "–"
  mean, std, n = stats(values)
  return f"{100 * mean:.2f} ± {100 * std:.2f} (n={n})"


def fmt_seconds(s: Optional[float]) -> str:
  if s is None:
    return "–"
  if s < 1:
    return f"{s * 1e3:.1f} ms"
  if s < 120:
    return f"{s:.1f} s"
  if s < 7200:
    return f"{s / 60:.1f} min"
  return f"{s / 3600:.2f} h"


# ----------------------------------------------------------------------------
# Reading.


def find_results(roots) -> list[tuple[str, str, dict]]:
  """(root, path, results) for every readable results.json under the roots.

  Raises:
    FileNotFoundError: for a root that does not exist.
  """
  found = []
  for root in roots:
    if not os.path.isdir(root):
      raise FileNotFoundError(f"Sweep root {root} does not exist")
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames[:] = sorted(d for d in dirnames if d not in ("checkpoints", "logs"))
      if "results.json" in filenames:
        path = os.path.join(dirpath, "results.json")
        try:
          with open(path) as f:
            found.append((root, path, json.load(f)))
        except (OSError, ValueError) as e:
          print(f"warning: skipping unreadable {path}: {e}", file=sys.stderr)
  return found


def read_sweep(root: str) -> Optional[dict]:
  path = os.path.join(root, "sweep.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _distill_label(config: dict) -> str:
  label = {"kip": "KIP", "ls": "Label Solve"}.get(config.get("method"), config.get("method"))
  if config.get("init_npz"):
    label += " (on given images)"
  elif config.get("init") == "noise":
    label += " (noise init)"
  if config.get("method") == "kip" and config.get("learn_labels") is False:
    label += " (fixed labels)"
  return label


def _distill_protocol(config: dict) -> str:
  """The finite-network protocol of a distill.py run (older runs: SGD on raw targets)."""
  if config.get("transfer_optimizer"):
    return f"{config['transfer_optimizer']} lr {config.get('transfer_lr')}, rescaled targets"
  return f"sgd lr {config.get('transfer_lr')}, raw targets"


def collect_condensation(records) -> dict:
  """Groups distill.py, krr_baseline.py and evaluate.py results by (dataset, kernel, kind).

  An `evaluate.py` result in `<run>/transfer/` re-evaluates the finite network of
  the distill run `<run>` (it replaces that run's transfer accuracy); one whose
  support is a class-balanced index set counts as the natural subset of its seed.

  Returns:
    {group key: {'krr': {label: {ipc: {seed: acc}}}, 'transfer': {label: {ipc: {seed:
    acc}}}, 'transfer_model': str or None, 'protocol': {label: set of str},
    'cost': {(label, ipc): [results]}, 'backends': set, 'devices': set}}.
  """
  groups = {}
  by_dir = {os.path.dirname(path): r for _, path, r in records}

  def group(dataset, kernel, kind):
    return groups.setdefault((dataset, kernel, kind), {
        "krr": {}, "transfer": {}, "transfer_model": None, "protocol": {}, "cost": {},
        "backends": set(), "devices": set()})

  def add_transfer(g, label, ipc, seed, acc, model, protocol):
    g["transfer_model"] = model
    g["transfer"].setdefault(label, {}).setdefault(ipc, {})[seed] = acc
    g["protocol"].setdefault(label, {})[(ipc, seed)] = protocol

  evaluations = []
  for _, path, r in records:
    config = r.get("config") or {}
    experiment = config.get("experiment")
    if experiment == "evaluate":
      evaluations.append((path, r))
    elif experiment == "distill" and r.get("test_accuracy") is not None:
      kind = r.get("eval_kernel") or config.get("kernel_type", "ntk")
      g = group(config["dataset"], config["kernel"], kind)
      label, ipc, seed = _distill_label(config), int(config["ipc"]), int(config["seed"])
      g["krr"].setdefault(label, {}).setdefault(ipc, {})[seed] = r["test_accuracy"]
      if r.get("natural_test_accuracy") is not None:  # the run's initial real subset
        g["krr"].setdefault("natural", {}).setdefault(ipc, {}).setdefault(
            seed, r["natural_test_accuracy"])
      protocol = _distill_protocol(config)
      if r.get("transfer_test_accuracy") is not None:
        add_transfer(g, label, ipc, seed, r["transfer_test_accuracy"],
                     config.get("transfer_model"), protocol)
      if r.get("natural_transfer_test_accuracy") is not None:
        add_transfer(g, "natural", ipc, seed, r["natural_transfer_test_accuracy"],
                     config.get("transfer_model"), protocol)
      g["cost"].setdefault((label, ipc), []).append(r)
      g["backends"].add(r.get("kernel_backend") or config.get("kernel_backend"))
      if r.get("devices"):
        g["devices"].add(r["devices"])
    elif experiment == "krr_baseline":
      g = group(config["dataset"], config["kernel"], config.get("kernel_type", "ntk"))
      g["backends"].add(config.get("kernel_backend"))
      for ipc, cell in (r.get("results") or {}).items():
        for seed, acc in zip(cell.get("seeds", []), cell.get("test_accuracy", [])):
          g["krr"].setdefault("natural", {}).setdefault(int(ipc), {})[int(seed)] = acc
        g["cost"].setdefault(("natural", int(ipc)), []).append(r)
  # Re-evaluations last, so they replace the transfer numbers of their runs.
  for path, r in evaluations:
    config = r["config"]
    if r.get("network_test_accuracy") is None:
      continue
    protocol = f"{config.get('optimizer', 'sgd')} lr {config.get('lr')}, rescaled targets"
    run = by_dir.get(os.path.dirname(os.path.dirname(path)))
    run_config = (run or {}).get("config") or {}
    if run_config.get("experiment") == "distill":
      label, ipc = _distill_label(run_config), int(run_config["ipc"])
      seed = int(run_config["seed"])
    elif str(r.get("support", "")).endswith("indices.npz") and r.get("images_per_class"):
      label, ipc, seed = "natural", int(r["images_per_class"]), int(config["seed"])
    else:
      continue
    g = group(config["dataset"], config["kernel"], config.get("kernel_type", "ntk"))
    add_transfer(g, label, ipc, seed, r["network_test_accuracy"], config.get("model"),
                 protocol)
  return groups


def collect_pruning(records) -> dict:
  """Groups prune.py results by (dataset, model, model kwargs, budget, epochs).

  Returns:
    {group key: {'acc': {method: {fraction: {seed: acc}}}, 'wall': {method: seconds},
    'n_kept': {(method, fraction): n}, 'meta': {...}}}.
  """
  groups = {}
  for _, _, r in records:
    config = r.get("config") or {}
    if config.get("experiment") != "prune":
      continue
    train = config.get("train") or {}
    key = (config["dataset"], train.get("model"),
           json.dumps(train.get("model_kwargs") or {}, sort_keys=True), config.get("budget"),
           train.get("epochs"))
    g = groups.setdefault(key, {"acc": {}, "wall": {}, "n_kept": {}, "meta": {}})
    g["meta"].update(score_epochs=config.get("score_epochs"),
                     score_inits=config.get("score_inits"), offset=config.get("offset"),
                     n_train=r.get("n_train"), n_test=r.get("n_test"),
                     full_steps=r.get("full_steps"))
    for method, by_fraction in (r.get("results") or {}).items():
      for fraction, cell in by_fraction.items():
        f = float(fraction)
        seeds = cell.get("seeds", [])
        for seed, acc in zip(seeds, cell.get("test_accuracy", [])):
          g["acc"].setdefault(method, {}).setdefault(f, {})[int(seed)] = acc
        g["wall"][method] = g["wall"].get(method, 0.0) + float(
            np.sum(cell.get("wall_time_s") or [0.0]))
        if cell.get("n_kept") is not None:
          g["n_kept"][(method, f)] = cell["n_kept"]
  return groups


# ----------------------------------------------------------------------------
# Figures.


def _savefig(fig, path: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  fig.savefig(tmp, format="png", dpi=100)
  os.replace(tmp, path)


def condensation_figure(key, g, path: str) -> None:
  """Accuracy (%) vs images per class: KRR (solid) and finite network (dashed)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  colors = {}
  for label in _ordered(g["krr"], _METHOD_ORDER):
    ipcs = sorted(g["krr"][label])
    m = [100 * stats(g["krr"][label][i].values())[0] for i in ipcs]
    s = [100 * stats(g["krr"][label][i].values())[1] for i in ipcs]
    line = ax.errorbar(ipcs, m, yerr=s, marker="o", capsize=3, label=f"{label} (KRR)")
    colors[label] = line[0].get_color()
  for label in _ordered(g["transfer"], _METHOD_ORDER):
    ipcs = sorted(g["transfer"][label])
    m = [100 * stats(g["transfer"][label][i].values())[0] for i in ipcs]
    s = [100 * stats(g["transfer"][label][i].values())[1] for i in ipcs]
    ax.errorbar(ipcs, m, yerr=s, marker="s", ls="--", capsize=3, color=colors.get(label),
                alpha=0.7, label=f"{label} → {g['transfer_model']}")
  ax.set_xscale("log")
  ipcs = sorted({i for part in ("krr", "transfer") for by_ipc in g[part].values() for i in by_ipc})
  ax.set_xticks(ipcs)
  ax.set_xticklabels([str(i) for i in ipcs])
  ax.minorticks_off()
  _finish_accuracy_figure(fig, ax, "images per class",
                          f"{pretty_dataset(key[0])}: {key[1]} {key[2].upper()}", path)


def pruning_figure(key, g, path: str) -> None:
  """Test accuracy (%) vs fraction kept per method, mean with std error bars."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  full = g["acc"].get("full", {}).get(1.0)
  for method in _ordered(g["acc"], _PRUNE_ORDER, skip=("full",)):
    points = dict(g["acc"][method])
    if full:
      points[1.0] = full
    fs = sorted(points, reverse=True)
    m = [100 * stats(points[f].values())[0] for f in fs]
    s = [100 * stats(points[f].values())[1] for f in fs]
    ax.errorbar(fs, m, yerr=s, marker="o", capsize=3, label=method)
  ax.invert_xaxis()
  _finish_accuracy_figure(fig, ax, "fraction of the training set kept",
                          f"{pretty_dataset(key[0])}: {key[1]}, budget={key[3]}", path)


def _finish_accuracy_figure(fig, ax, xlabel: str, title: str, path: str) -> None:
  """Labels, grid and legend of an accuracy plot; saves it to `path` and closes it."""
  import matplotlib.pyplot as plt

  ax.set_xlabel(xlabel)
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  _savefig(fig, path)
  plt.close(fig)


# ----------------------------------------------------------------------------
# Markdown.


def _ordered(mapping, order, skip=()) -> list:
  known = [k for k in order if k in mapping and k not in skip]
  return known + sorted(k for k in mapping if k not in order and k not in skip)


def _table(header, rows) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines


def _paper_label(p) -> str:
  return (f"*paper: {p['method']}, {p['setting']} ({p['paper']}, arXiv:{p['arxiv']})*")


def _condensation_section(key, g, figure_rel) -> list[str]:
  dataset, kernel, kind = key
  ipcs = sorted({i for by_ipc in g["krr"].values() for i in by_ipc}
                | {i for by_ipc in g["transfer"].values() for i in by_ipc})
  header = ["support set"] + [f"{i} img/class" for i in ipcs]
  out = [f"### {pretty_dataset(dataset)}: `{kernel}` {kind.upper()} kernel", ""]
  out += [f"KRR test accuracy (%) on the full test set, mean ± std over seeds (n seeds). "
          f"Kernel backend(s): {', '.join(sorted(b for b in g['backends'] if b))}.", ""]
  rows = [[label] + [fmt_acc(g["krr"][label].get(i, {}).values()) for i in ipcs]
          for label in _ordered(g["krr"], _METHOD_ORDER)]
  papers = [p for p in PAPER_RESULTS if p["dataset"] == dataset]
  rows += [[_paper_label(p)] + [f"*{p['accuracy'][i]}*" if i in p["accuracy"] else "–"
                                for i in ipcs] for p in papers]
  out += _table(header, rows) + [""]
  if papers:
    out += ["Rows in italics are the papers' numbers in the papers' setting (other kernels, "
            "preprocessing and training lengths), not runs of this project.", ""]
  if g["transfer"]:
    out += [f"Test accuracy (%) of a finite `{g['transfer_model']}` trained from scratch on "
            "each set (`train.train_and_evaluate`, MSE on the set's labels; the protocol "
            "of each row in brackets: optimizer, learning rate, and whether the labels were "
            "rescaled to the RMS of one-hot labels first):", ""]
    rows = [[f"{label} → {g['transfer_model']} "
             f"({'; '.join(sorted(set(g['protocol'][label].values())))})"] + [
        fmt_acc(g["transfer"][label].get(i, {}).values()) for i in ipcs]
        for label in _ordered(g["transfer"], _METHOD_ORDER)]
    out += _table(header, rows) + [""]
  out += ["Cost per run (mean over seeds):", ""]
  rows = []
  for label in _ordered({k[0]: 1 for k in g["cost"]}, _METHOD_ORDER):
    for ipc in ipcs:
      runs = g["cost"].get((label, ipc))
      if not runs:
        continue
      if label == "natural":  # one krr_baseline results.json per workdir: seconds per file
        rows.append([label, ipc, len(g["krr"].get("natural", {}).get(ipc, {})), "–", "–",
                     fmt_seconds(float(np.mean([r.get("wall_time_s", 0.0) for r in runs]))),
                     "–"])
        continue
      steps = sorted({int(r.get("steps", 0)) for r in runs})
      per_step = [r["seconds_per_step"] for r in runs if r.get("seconds_per_step") is not None]
      rows.append([label, ipc, len(runs), "/".join(map(str, steps)),
                   fmt_seconds(float(np.mean(per_step))) if per_step else "–",
                   fmt_seconds(float(np.mean([r.get("wall_time_s", 0.0) for r in runs]))),
                   ", ".join(sorted({r.get("devices") or "?" for r in runs}))])
  out += _table(["support set", "img/class", "runs", "steps", "time per step",
                 "wall time per run", "devices"], rows) + [""]
  out += [f"![{pretty_dataset(dataset)} {kernel}: accuracy vs images per class]"
          f"({figure_rel})", ""]
  return out


def _pruning_section(key, g, figure_rel) -> list[str]:
  dataset, model, kwargs, budget, epochs = key
  fractions = sorted({f for by_f in g["acc"].values() for f in by_f} | {1.0}, reverse=True)
  meta = g["meta"]
  out = [f"### {pretty_dataset(dataset)}: `{model}` {kwargs if kwargs != '{}' else ''}".rstrip(),
         ""]
  out += [f"Test accuracy (%) after training from scratch on the kept examples, mean ± std "
          f"over seeds (n seeds). Budget `{budget}`: "
          + (f"every subset trains {meta.get('full_steps')} SGD steps, as many as {epochs} "
             "epochs of the full set." if budget == "steps" else
             f"{epochs} epochs of each subset.")
          + f" Scores from {meta.get('score_inits')} network(s) trained "
          f"{meta.get('score_epochs')} epoch(s); training set of {meta.get('n_train')}, "
          f"test set of {meta.get('n_test')}.", ""]
  header = ["method"] + [f"keep {100 * f:g}%" for f in fractions] + ["wall time (all runs)"]
  rows = []
  if "full" in g["acc"]:
    rows.append(["full training set"] + [
        fmt_acc(g["acc"]["full"].get(1.0, {}).values()) if f == 1.0 else "" for f in fractions]
        + [fmt_seconds(g["wall"].get("full"))])
  for method in _ordered(g["acc"], _PRUNE_ORDER, skip=("full",)):
    rows.append([method] + [fmt_acc(g["acc"][method].get(f, {}).values()) if f < 1.0 else ""
                            for f in fractions] + [fmt_seconds(g["wall"].get(method))])
  out += _table(header, rows) + [""]
  full = g["acc"].get("full", {}).get(1.0)
  half = {m: g["acc"][m][0.5] for m in ("el2n", "random") if 0.5 in g["acc"].get(m, {})}
  if full and "el2n" in half:
    f_mean = stats(full.values())[0]
    e_mean = stats(half["el2n"].values())[0]
    text = (f"At 50% kept, EL2N reaches {100 * e_mean:.2f}% against {100 * f_mean:.2f}% for "
            f"the full training set ({100 * (e_mean - f_mean):+.2f} points)")
    if "random" in half:
      r_mean = stats(half["random"].values())[0]
      text += f"; a random half reaches {100 * r_mean:.2f}% ({100 * (r_mean - f_mean):+.2f})"
    out += [text + ".", ""]
  out += [f"![{pretty_dataset(dataset)} {model}: accuracy vs fraction kept]({figure_rel})", ""]
  return out


def _versions_section(records) -> list[str]:
  seen = {}
  for _, _, r in records:
    for name, version in (r.get("versions") or {}).items():
      seen.setdefault(name, set()).add("not installed" if version is None else str(version))
  if not seen:
    return ["No library versions were recorded in the results.", ""]
  rows = [[name, ", ".join(sorted(seen[name]))] for name in _ordered(seen, _VERSION_KEYS)]
  return _table(["library", "version(s) in the results"], rows) + [""]


def render(roots, out_path: str, figures_dir: Optional[str] = None) -> str:
  """Builds the markdown report and writes its figures; returns the markdown.

  Raises:
    FileNotFoundError: for a missing root.
    ValueError: if the roots hold no results at all.
  """
  figures_dir = figures_dir or os.path.join(os.path.dirname(os.path.abspath(out_path)),
                                            "figures")
  records = find_results(roots)
  if not records:
    raise ValueError(f"No results.json under {', '.join(roots)}")
  rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(out_path)))
  condensation = collect_condensation(records)
  pruning = collect_pruning(records)

  lines = ["# Results", "",
           "Generated by `python experiments/report.py --roots=" + ",".join(roots)
           + f" --out={out_path}` from the `results.json` files of the sweeps "
           "(`experiments/sweep.py`); do not edit by hand. Accuracies are in percent, "
           "± is the standard deviation over seeds (ddof=0), n is the number of seeds.", ""]

  lines += ["## Runs and machines", ""]
  rows = []
  for root in roots:
    sweep = read_sweep(root)
    n = sum(1 for r, _, _ in records if r == root)
    if sweep:
      m = sweep.get("machine") or {}
      counts = ", ".join(f"{v} {k}" for k, v in sorted((sweep.get("counts") or {}).items()))
      rows.append([f"`{root}`", sweep.get("sweep", "?"), n, counts or "–",
                   f"{m.get('cpu_model', '?')}, {m.get('cpu_cores', '?')} cores"])
    else:
      m = machine_info()
      rows.append([f"`{root}`", "–", n, "no sweep.json",
                   f"not recorded (this report's machine: {m['cpu_model']}, "
                   f"{m['cpu_cores']} cores)"])
  lines += _table(["root", "sweep", "results.json read", "cells", "machine (CPU, cores)"],
                  rows) + [""]
  lines += _versions_section(records)

  if condensation:
    lines += ["## Dataset condensation: KIP and Label Solve", "",
              "KIP (Nguyen, Chen, Lee, arXiv:2011.00050) learns the images and labels of a "
              "support set by differentiating kernel ridge regression; Label Solve (Nguyen, "
              "Novak, Xiao, Lee, arXiv:2107.13034) keeps real images and solves for their "
              "labels in closed form. *natural* is a class-balanced random subset of real "
              "images with one-hot labels (`experiments/krr_baseline.py`).", ""]
    for key in sorted(condensation):
      g = condensation[key]
      fig = os.path.join(figures_dir, f"kip_{slug('_'.join(key))}.png")
      condensation_figure(key, g, fig)
      lines += _condensation_section(key, g, rel(fig))

  lines += ["## The papers' numbers (their settings)", "",
            "Test accuracy (%) reported by the papers, for orientation. Their settings differ "
            "from ours: the KIP papers train for many more steps, with ZCA preprocessing for "
            "some datasets, and the NeurIPS 2021 numbers use ConvNet kernels where ours use "
            "FC kernels on CPUs.", ""]
  paper_ipcs = sorted({i for p in PAPER_RESULTS for i in p["accuracy"]})
  lines += _table(["dataset", "method", "setting", "paper"]
                  + [f"{i} img/class" for i in paper_ipcs],
                  [[pretty_dataset(p["dataset"]), p["method"], p["setting"],
                    f"{p['paper']}, arXiv:{p['arxiv']}"]
                   + [p["accuracy"].get(i, "–") for i in paper_ipcs] for p in PAPER_RESULTS])
  lines += [""]

  if pruning:
    lines += ["## Data pruning: EL2N, GraNd, forgetting and baselines", "",
              "Paul, Ganguli and Dziugaite (NeurIPS 2021, arXiv:2107.07075) report that EL2N "
              "scores computed early in training identify examples that can be removed: on "
              "CIFAR-10 with ResNet-18, half of the training set can be pruned by EL2N without "
              "loss of test accuracy. Toneva et al. (ICLR 2019, arXiv:1812.05159) find that many "
              "examples are never forgotten during training and can be removed with little "
              "loss. Our settings (datasets, networks, training lengths) are smaller; the "
              "tables below are our runs only.", ""]
    for key in sorted(pruning, key=lambda k: tuple(str(x) for x in k)):
      g = pruning[key]
      fig = os.path.join(figures_dir,
                         f"prune_{slug('_'.join(str(x) for x in key if x not in ('{}',)))}.png")
      pruning_figure(key, g, fig)
      lines += _pruning_section(key, g, rel(fig))

  text = "\n".join(lines).rstrip() + "\n"
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  tmp = out_path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, out_path)
  return text


def _define_flags():
  from absl import flags
  flags.DEFINE_list("roots", None, "Sweep output directories (comma-separated).")
  flags.DEFINE_string("out", "docs/results.md", "Markdown file to write.")
  flags.DEFINE_string("figures_dir", None, "Where the PNGs go (default: figures/ next to "
                      "--out).")
  flags.mark_flag_as_required("roots")


def main(argv):
  from absl import app
  from absl import flags

  import _common

  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS
  with _common.user_errors():
    roots = [r for r in FLAGS.roots if r.strip()]
    render(roots, FLAGS.out, FLAGS.figures_dir)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  from absl import app as _app
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  _define_flags()
  _app.run(main)
