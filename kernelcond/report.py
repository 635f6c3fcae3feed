"""The results report: results.json records -> markdown tables and figures.

Every result is read through ONE reader, `load_record(path)`, which returns the
shared results schema of `kernelcond.experiment` (`schema`, `experiment`,
`config`, `dataset`, `evaluations`, `run`, `environment`). Files written before
that schema (by the old distill, evaluate, krr_baseline and prune scripts) are
converted on reading; the rest of this module knows only the shared schema.

Evaluations that describe one subset of a sweep carry a `subset` entry next to
the `evaluate_support` keys: `{'ipc', 'seed'}` for a natural subset
(krr_baseline) and `{'method', 'fraction', 'n_kept'}` for a pruned training set.

`render(roots, out_path, figures_dir)` builds the markdown of docs/results.md
and writes its PNG figures. Standard deviations are over seeds with `ddof=0`;
accuracies are shown in percent.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Iterable, Optional

import numpy as np

from kernelcond import metrics as kmetrics
from kernelcond import sweep as ksweep

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
    {"dataset": "cifar10", "method": "RFAD", "setting": "ConvNet NNGP random features; "
     "finite ConvNet trained on the set", "paper": "Loo, Hasani, Amini, Rus, NeurIPS 2022",
     "arxiv": "2210.12067", "accuracy": {1: 53.6, 10: 66.3}},
    {"dataset": "cifar10", "method": "FRePo", "setting": "ConvNet feature regression; "
     "finite ConvNet trained on the set", "paper": "Zhou, Nezhadarya, Ba, NeurIPS 2022",
     "arxiv": "2206.00719", "accuracy": {1: 46.8, 10: 65.5, 50: 71.7}},
    {"dataset": "cifar10", "method": "random real subset", "setting": "`dc` protocol, ConvNet",
     "paper": "Zhao, Mopuri, Bilen, ICLR 2021 (Table 2, random selection)", "arxiv": "2006.05929",
     "accuracy": {1: 14.4, 10: 26.0, 50: 43.4}},
)

DATASET_NAMES = {"digits": "digits (scikit-learn 8x8)", "fashion_mnist": "Fashion-MNIST",
                 "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "svhn": "SVHN"}
# Trees read as a 'folder' dataset, by the tree's directory name: (the name shown,
# the dataset id whose papers' rows apply). The one place that knows that a folder
# `cifar10` is the JPEG copy of CIFAR-10 (`shown_dataset`, `paper_dataset`).
FOLDER_DATASETS = {"cifar10": ("CIFAR-10 (JPEG copy)", "cifar10")}
METHOD_ORDER = ("natural", "KIP", "Label Solve")
PRUNE_ORDER = ("random", "el2n", "grand", "forgetting", "herding", "kcenter")
VERSION_KEYS = ("python", "jax", "jaxlib", "flax", "optax", "numpy", "scipy",
                "neural-tangents", "scikit-learn", "kernelcond")
LEGACY_SCHEMA = 1


# ----------------------------------------------------------------------------
# Reading: one reader, legacy files converted to the shared schema.


def _krr(accuracy, kernel, kernel_type, backend, reg=None) -> dict:
  return {"accuracy": accuracy, "kernel": kernel, "kernel_type": kernel_type,
          "backend": backend, "reg": reg}


def _network(accuracies, description: Optional[str] = None, **extra) -> dict:
  """A `networks` entry of `evaluate_support` from per-network accuracies."""
  accs = [float(a) for a in accuracies]
  return {"mean": float(np.mean(accs)) if accs else None,
          "std": float(np.std(accs)) if accs else None, "accuracies": accs,
          "config": {"description": description} if description else {}, "loss": None,
          **extra}


def _evaluation(krr: Optional[dict], networks: dict, support_size=None, **extra) -> dict:
  return {"krr": krr, "networks": networks, "slapknn": None, "support_size": support_size,
          "label_kind": None, **extra}


def _legacy_dataset(r: dict, config: dict) -> dict:
  dataset = r.get("dataset")
  if isinstance(dataset, dict):
    return dict(dataset)
  return {"name": config.get("dataset") or dataset, "n_train": r.get("n_train"),
          "n_test": r.get("n_test")}


def _legacy_distill_protocol(config: dict) -> str:
  """The finite-network protocol of an old distill.py run (older runs: SGD on raw targets)."""
  if config.get("transfer_optimizer"):
    return f"{config['transfer_optimizer']} lr {config.get('transfer_lr')}, rescaled targets"
  return f"sgd lr {config.get('transfer_lr')}, raw targets"


def _from_distill(r: dict, config: dict) -> tuple[dict, dict]:
  backend = r.get("kernel_backend") or config.get("kernel_backend")
  kind = r.get("eval_kernel") or config.get("kernel_type", "ntk")
  model, protocol = config.get("transfer_model"), _legacy_distill_protocol(config)

  def evaluation(krr_accuracy, net_accuracy):
    nets = {} if net_accuracy is None else {model: _network([net_accuracy], protocol)}
    return _evaluation(_krr(krr_accuracy, config.get("kernel"), kind, backend, config.get("reg")),
                       nets, r.get("support_size"))

  evaluations = {}
  if (r.get("natural_test_accuracy") is not None
      or r.get("natural_transfer_test_accuracy") is not None):
    evaluations["natural"] = evaluation(r.get("natural_test_accuracy"),
                                        r.get("natural_transfer_test_accuracy"))
  if r.get("test_accuracy") is not None:
    evaluations["distilled"] = evaluation(r["test_accuracy"], r.get("transfer_test_accuracy"))
  run = {k: r.get(k) for k in ("steps", "seconds_per_step", "wall_time_s", "resumed_from_step",
                               "final_loss", "transfer_error")}
  run["kernel_backend"] = backend
  return evaluations, run


def _from_evaluate(r: dict, config: dict) -> tuple[dict, dict]:
  protocol = f"{config.get('optimizer', 'sgd')} lr {config.get('lr')}, rescaled targets"
  nets = {}
  if r.get("network_test_accuracy") is not None:
    nets[config.get("model")] = _network([r["network_test_accuracy"]], protocol,
                                         seeds=[config.get("seed")])
  krr = _krr(r.get("krr_test_accuracy"), config.get("kernel"), config.get("kernel_type", "ntk"),
             r.get("kernel_backend"), config.get("reg"))
  config.update(support=r.get("support"), images_per_class=r.get("images_per_class"))
  return ({"support": _evaluation(krr, nets, r.get("support_size"))},
          {"support_size": r.get("support_size"), "wall_time_s": r.get("wall_time_s")})


def _from_krr_baseline(r: dict, config: dict) -> tuple[dict, dict]:
  evaluations = {}
  for ipc, cell in (r.get("results") or {}).items():
    for seed, acc in zip(cell.get("seeds", []), cell.get("test_accuracy", [])):
      krr = _krr(acc, config.get("kernel"), config.get("kernel_type", "ntk"),
                 config.get("kernel_backend"), config.get("reg"))
      evaluations[f"ipc{ipc}/seed{seed}"] = _evaluation(
          krr, {}, subset={"ipc": int(ipc), "seed": int(seed)}, label_kind="hard")
  return evaluations, {"wall_time_s": r.get("wall_time_s")}


def _from_prune(r: dict, config: dict) -> tuple[dict, dict]:
  model = (config.get("train") or {}).get("model")
  evaluations = {}
  for method, by_fraction in (r.get("results") or {}).items():
    for fraction, cell in by_fraction.items():
      seeds = [int(s) for s in cell.get("seeds", [])]
      net = _network(cell.get("test_accuracy", [])[:len(seeds)], seeds=seeds,
                     wall_time_s=list(cell.get("wall_time_s") or []))
      evaluations[f"{method}/{fraction}"] = _evaluation(
          None, {model: net}, cell.get("n_kept"), label_kind="hard",
          subset={"method": method, "fraction": float(fraction), "n_kept": cell.get("n_kept")})
  return evaluations, {k: r.get(k) for k in ("n_train", "n_test", "full_steps", "wall_time_s")}


_LEGACY = {"distill": _from_distill, "evaluate": _from_evaluate,
           "krr_baseline": _from_krr_baseline, "prune": _from_prune}


def convert_legacy(r: dict) -> dict:
  """A results dict of the old per-script schemas in the shared schema.

  Raises:
    ValueError: for a record of no known experiment.
  """
  config = dict(r.get("config") or {})
  experiment = config.get("experiment")
  if experiment not in _LEGACY:
    raise ValueError(f"unknown results schema (experiment {experiment!r})")
  evaluations, run = _LEGACY[experiment](r, config)
  devices = r.get("devices")
  return {"schema": LEGACY_SCHEMA, "experiment": experiment, "config": config,
          "dataset": _legacy_dataset(r, config), "evaluations": evaluations, "run": run,
          "environment": {"versions": r.get("versions") or {},
                          "devices": devices if isinstance(devices, str) else None}}


def as_record(r: dict) -> dict:
  """`r` in the shared schema: as it is when it is, converted when it is a legacy one."""
  if isinstance(r.get("schema"), int) and r["schema"] >= 2:
    return r
  return convert_legacy(r)


def load_record(path: str) -> dict:
  """Reads one results.json into the shared schema (see the module docstring).

  Raises:
    OSError, ValueError: unreadable file or unknown schema.
  """
  with open(path) as f:
    return as_record(json.load(f))


def find_records(roots) -> list[tuple[str, str, dict]]:
  """(root, path, record) for every readable results.json under the roots.

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
          found.append((root, path, load_record(path)))
        except (OSError, ValueError) as e:
          print(f"warning: skipping unreadable {path}: {e}", file=sys.stderr)
  return found


# ----------------------------------------------------------------------------
# Formatting.


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


def ordered(mapping, order, skip=()) -> list:
  """Keys of `mapping`: those in `order` first (in that order), then the rest sorted."""
  known = [k for k in order if k in mapping and k not in skip]
  return known + sorted(k for k in mapping if k not in order and k not in skip)


def table(header, rows) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


# ----------------------------------------------------------------------------
# Grouping records (shared schema only).


def distill_label(config: dict) -> str:
  label = {"kip": "KIP", "ls": "Label Solve"}.get(config.get("method"), config.get("method"))
  if config.get("init_npz"):
    label += " (on given images)"
  elif config.get("init") == "noise":
    label += " (noise init)"
  if config.get("method") == "kip" and config.get("learn_labels") is False:
    label += " (fixed labels)"
  if config.get("method") in ("rfad", "frepo"):  # their kernel is part of the method
    label += f" ({config.get('kernel')}" + (", learned labels)" if config.get("learn_labels")
                                            else ")")
  return label


def protocol_description(network: dict) -> str:
  """How a finite network was trained, from its `networks` entry."""
  cfg = network.get("config") or {}
  if cfg.get("description"):
    return cfg["description"]
  text = f"{cfg.get('optimizer', '?')} lr {cfg.get('lr')}"
  if cfg.get("epochs") is not None:
    text += f", {cfg['epochs']} epochs"
  if network.get("loss"):
    text += f", {network['loss']} loss"
  return text + f", {len(network.get('accuracies') or [])} net(s)"


def _krr_key(record: dict, evaluation: dict) -> tuple:
  krr = evaluation.get("krr") or {}
  return (shown_dataset(record), krr.get("kernel"), krr.get("kernel_type") or "ntk")


def collect_condensation(records) -> dict:
  """Groups distill, krr_baseline and evaluate records by (dataset, kernel, kernel type).

  An `evaluate` record in `<run>/transfer/` re-evaluates the finite network of the
  distill run `<run>` (it replaces that run's network accuracy); one whose support
  is a class-balanced index set counts as the natural subset of its seed.

  Returns:
    {key: {'krr': {label: {ipc: {seed: acc}}}, 'transfer': {label: {ipc: {seed: acc}}},
    'transfer_model': str or None, 'protocol': {label: {(ipc, seed): str}},
    'cost': {(label, ipc): [records]}, 'backends': set, 'devices': set,
    'shared_networks': True when a network row comes from a shared-schema record}}.
  """
  groups = {}
  by_dir = {os.path.dirname(path): r for _, path, r in records}

  def group(key):
    return groups.setdefault(key, {"krr": {}, "transfer": {}, "transfer_model": None,
                                   "protocol": {}, "cost": {}, "backends": set(),
                                   "devices": set(), "shared_networks": False})

  def add_networks(g, label, ipc, seed, evaluation):
    for model, net in (evaluation.get("networks") or {}).items():
      if net.get("mean") is None:
        continue
      g["transfer_model"] = model
      g["transfer"].setdefault(label, {}).setdefault(ipc, {})[seed] = net["mean"]
      g["protocol"].setdefault(label, {})[(ipc, seed)] = protocol_description(net)
      g["shared_networks"] |= not (net.get("config") or {}).get("description")

  evaluations = []
  for _, path, r in records:
    config, evs = r.get("config") or {}, r.get("evaluations") or {}
    if r["experiment"] == "evaluate":
      evaluations.append((path, r))
    elif r["experiment"] == "distill" and ((evs.get("distilled") or {}).get("krr") or {}).get(
        "accuracy") is not None:
      distilled, natural = evs["distilled"], evs.get("natural") or {}
      g = group(_krr_key(r, distilled))
      label, ipc, seed = distill_label(config), int(config["ipc"]), int(config["seed"])
      g["krr"].setdefault(label, {}).setdefault(ipc, {})[seed] = distilled["krr"]["accuracy"]
      if (natural.get("krr") or {}).get("accuracy") is not None:  # its initial real subset
        g["krr"].setdefault("natural", {}).setdefault(ipc, {}).setdefault(
            seed, natural["krr"]["accuracy"])
      add_networks(g, label, ipc, seed, distilled)
      add_networks(g, "natural", ipc, seed, natural)
      g["cost"].setdefault((label, ipc), []).append(r)
      g["backends"].add((r.get("run") or {}).get("kernel_backend") or distilled["krr"].get(
          "backend"))
      if (r.get("environment") or {}).get("devices"):
        g["devices"].add(r["environment"]["devices"])
    elif r["experiment"] == "krr_baseline":
      ipcs = []
      for evaluation in evs.values():
        subset = evaluation.get("subset") or {}
        g = group(_krr_key(r, evaluation))
        g["backends"].add(evaluation["krr"].get("backend"))
        ipc = int(subset["ipc"])
        g["krr"].setdefault("natural", {}).setdefault(ipc, {})[int(subset["seed"])] = (
            evaluation["krr"]["accuracy"])
        if (g, ipc) not in ipcs:
          ipcs.append((g, ipc))
      for g, ipc in ipcs:
        g["cost"].setdefault(("natural", ipc), []).append(r)
  # Re-evaluations last, so they replace the network numbers of their runs.
  for path, r in evaluations:
    config, evaluation = r["config"], (r.get("evaluations") or {}).get("support") or {}
    if not any(n.get("mean") is not None for n in (evaluation.get("networks") or {}).values()):
      continue
    run_config = (by_dir.get(os.path.dirname(os.path.dirname(path))) or {}).get("config") or {}
    if run_config.get("experiment") == "distill":
      label, ipc = distill_label(run_config), int(run_config["ipc"])
      seed = int(run_config["seed"])
    elif str(config.get("support", "")).endswith("indices.npz") and config.get(
        "images_per_class"):
      label, ipc, seed = "natural", int(config["images_per_class"]), int(config["seed"])
    else:
      continue
    add_networks(group(_krr_key(r, evaluation)), label, ipc, seed, evaluation)
  return groups


def collect_pruning(records) -> dict:
  """Groups prune records by (dataset, model, model kwargs, budget, epochs).

  Returns:
    {key: {'acc': {method: {fraction: {seed: acc}}}, 'wall': {method: seconds},
    'n_kept': {(method, fraction): n}, 'meta': {...}}}.
  """
  groups = {}
  for _, _, r in records:
    if r["experiment"] != "prune":
      continue
    config, run = r.get("config") or {}, r.get("run") or {}
    train = config.get("train") or {}
    key = (shown_dataset(r), train.get("model"),
           json.dumps(train.get("model_kwargs") or {}, sort_keys=True), config.get("budget"),
           train.get("epochs"))
    g = groups.setdefault(key, {"acc": {}, "wall": {}, "n_kept": {}, "meta": {}})
    g["meta"].update(score_epochs=config.get("score_epochs"),
                     score_inits=config.get("score_inits"), offset=config.get("offset"),
                     n_train=run.get("n_train", r["dataset"].get("n_train")),
                     n_test=run.get("n_test", r["dataset"].get("n_test")),
                     full_steps=run.get("full_steps"))
    for evaluation in (r.get("evaluations") or {}).values():
      subset = evaluation.get("subset") or {}
      if "method" not in subset:
        continue
      method, f = subset["method"], float(subset["fraction"])
      for net in (evaluation.get("networks") or {}).values():
        for seed, acc in zip(net.get("seeds") or [], net.get("accuracies") or []):
          g["acc"].setdefault(method, {}).setdefault(f, {})[int(seed)] = acc
        g["wall"][method] = g["wall"].get(method, 0.0) + float(
            np.sum(net.get("wall_time_s") or [0.0]))
      if subset.get("n_kept") is not None:
        g["n_kept"][(method, f)] = subset["n_kept"]
  return groups


# ----------------------------------------------------------------------------
# Figures.


def condensation_curves(g) -> list[dict]:
  """Figure data: one curve per support set and evaluation (KRR, then networks)."""
  curves = []
  for part, marker in (("krr", "o"), ("transfer", "s")):
    for label in ordered(g[part], METHOD_ORDER):
      ipcs = sorted(g[part][label])
      st = [stats(g[part][label][i].values()) for i in ipcs]
      curves.append({"label": label, "part": part, "marker": marker, "x": ipcs,
                     "mean": [100 * s[0] for s in st], "std": [100 * s[1] for s in st]})
  return curves


def pruning_curves(g) -> list[dict]:
  """Figure data: accuracy vs fraction kept per method (the full set at fraction 1)."""
  full = g["acc"].get("full", {}).get(1.0)
  curves = []
  for method in ordered(g["acc"], PRUNE_ORDER, skip=("full",)):
    points = dict(g["acc"][method])
    if full:
      points[1.0] = full
    fs = sorted(points, reverse=True)
    st = [stats(points[f].values()) for f in fs]
    curves.append({"label": method, "x": fs, "mean": [100 * s[0] for s in st],
                   "std": [100 * s[1] for s in st]})
  return curves


def _accuracy_figure(path: str, xlabel: str, title: str, draw) -> None:
  from kernelcond import plots
  plots.curves_figure(path, draw, xlabel=xlabel, ylabel="test accuracy (%)", title=title)


def condensation_figure(key, g, path: str) -> None:
  """Accuracy (%) vs images per class: KRR (solid) and finite network (dashed)."""

  def draw(ax):
    colors = {}
    for c in condensation_curves(g):
      if c["part"] == "krr":
        line = ax.errorbar(c["x"], c["mean"], yerr=c["std"], marker="o", capsize=3,
                           label=f"{c['label']} (KRR)")
        colors[c["label"]] = line[0].get_color()
      else:
        ax.errorbar(c["x"], c["mean"], yerr=c["std"], marker="s", ls="--", capsize=3,
                    color=colors.get(c["label"]), alpha=0.7,
                    label=f"{c['label']} → {g['transfer_model']}")
    ax.set_xscale("log")
    ipcs = sorted({i for p in ("krr", "transfer") for by_ipc in g[p].values() for i in by_ipc})
    ax.set_xticks(ipcs)
    ax.set_xticklabels([str(i) for i in ipcs])
    ax.minorticks_off()

  _accuracy_figure(path, "images per class",
                   f"{pretty_dataset(key[0])}: {key[1]} {key[2].upper()}", draw)


def pruning_figure(key, g, path: str) -> None:
  """Test accuracy (%) vs fraction kept per method, mean with std error bars."""

  def draw(ax):
    for c in pruning_curves(g):
      ax.errorbar(c["x"], c["mean"], yerr=c["std"], marker="o", capsize=3, label=c["label"])
    ax.invert_xaxis()

  _accuracy_figure(path, "fraction of the training set kept",
                   f"{pretty_dataset(key[0])}: {key[1]}, budget={key[3]}", draw)


# ----------------------------------------------------------------------------
# Markdown.


def _paper_label(p) -> str:
  return f"*paper: {p['method']}, {p['setting']} ({p['paper']}, arXiv:{p['arxiv']})*"


def _cost_rows(g, ipcs) -> list:
  rows = []
  for label in ordered({k[0]: 1 for k in g["cost"]}, METHOD_ORDER):
    for ipc in ipcs:
      runs = g["cost"].get((label, ipc))
      if not runs:
        continue
      wall = fmt_seconds(float(np.mean([r["run"].get("wall_time_s") or 0.0 for r in runs])))
      if label == "natural":  # one krr_baseline results.json per workdir: seconds per file
        rows.append([label, ipc, len(g["krr"].get("natural", {}).get(ipc, {})), "–", "–", wall,
                     "–"])
        continue
      steps = sorted({int(r["run"].get("steps") or 0) for r in runs})
      per_step = [r["run"]["seconds_per_step"] for r in runs
                  if r["run"].get("seconds_per_step") is not None]
      devices = {(r.get("environment") or {}).get("devices") or "?" for r in runs}
      rows.append([label, ipc, len(runs), "/".join(map(str, steps)),
                   fmt_seconds(float(np.mean(per_step))) if per_step else "–", wall,
                   ", ".join(sorted(devices))])
  return rows


def condensation_section(key, g, figure_rel) -> list[str]:
  dataset, kernel, kind = key
  ipcs = sorted({i for by_ipc in g["krr"].values() for i in by_ipc}
                | {i for by_ipc in g["transfer"].values() for i in by_ipc})
  header = ["support set"] + [f"{i} img/class" for i in ipcs]
  out = [f"### {pretty_dataset(dataset)}: `{kernel}` {kind.upper()} kernel", "",
         f"KRR test accuracy (%) on the full test set, mean ± std over seeds (n seeds). "
         f"Kernel backend(s): {', '.join(sorted(b for b in g['backends'] if b))}.", ""]
  rows = [[label] + [fmt_acc(g["krr"][label].get(i, {}).values()) for i in ipcs]
          for label in ordered(g["krr"], METHOD_ORDER)]
  papers = [p for p in PAPER_RESULTS if p["dataset"] == paper_dataset(dataset)]
  rows += [[_paper_label(p)] + [f"*{p['accuracy'][i]}*" if i in p["accuracy"] else "–"
                                for i in ipcs] for p in papers]
  out += table(header, rows) + [""]
  if papers:
    out += ["Rows in italics are the papers' numbers in the papers' setting (other kernels, "
            "preprocessing and training lengths), not runs of this project.", ""]
  if g["transfer"]:
    model = g["transfer_model"]
    if g["shared_networks"]:
      out += [f"Test accuracy (%) of finite networks of the `{model}` protocol "
              "(`kernelcond.nets.protocols`) trained from scratch on each set, mean over "
              "each run's networks (the protocol of each row in brackets):", ""]
    else:
      out += [f"Test accuracy (%) of a finite `{model}` trained from scratch on "
              "each set (`train.train_and_evaluate`, MSE on the set's labels; the protocol "
              "of each row in brackets: optimizer, learning rate, and whether the labels "
              "were rescaled to the RMS of one-hot labels first):", ""]
    rows = [[f"{label} → {model} ({'; '.join(sorted(set(g['protocol'][label].values())))})"]
            + [fmt_acc(g["transfer"][label].get(i, {}).values()) for i in ipcs]
            for label in ordered(g["transfer"], METHOD_ORDER)]
    out += table(header, rows) + [""]
  out += ["Cost per run (mean over seeds):", ""]
  out += table(["support set", "img/class", "runs", "steps", "time per step",
                "wall time per run", "devices"], _cost_rows(g, ipcs)) + [""]
  return out + [f"![{pretty_dataset(dataset)} {kernel}: accuracy vs images per class]"
                f"({figure_rel})", ""]


def pruning_section(key, g, figure_rel) -> list[str]:
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
  for method in ordered(g["acc"], PRUNE_ORDER, skip=("full",)):
    rows.append([method] + [fmt_acc(g["acc"][method].get(f, {}).values()) if f < 1.0 else ""
                            for f in fractions] + [fmt_seconds(g["wall"].get(method))])
  out += table(header, rows) + [""]
  full = g["acc"].get("full", {}).get(1.0)
  half = {m: g["acc"][m][0.5] for m in ("el2n", "random") if 0.5 in g["acc"].get(m, {})}
  if full and "el2n" in half:
    f_mean, e_mean = stats(full.values())[0], stats(half["el2n"].values())[0]
    text = (f"At 50% kept, EL2N reaches {100 * e_mean:.2f}% against {100 * f_mean:.2f}% for "
            f"the full training set ({100 * (e_mean - f_mean):+.2f} points)")
    if "random" in half:
      r_mean = stats(half["random"].values())[0]
      text += f"; a random half reaches {100 * r_mean:.2f}% ({100 * (r_mean - f_mean):+.2f})"
    out += [text + ".", ""]
  return out + [f"![{pretty_dataset(dataset)} {model}: accuracy vs fraction kept]({figure_rel})",
                ""]


def versions_section(records) -> list[str]:
  seen = {}
  for _, _, r in records:
    for name, version in ((r.get("environment") or {}).get("versions") or {}).items():
      seen.setdefault(name, set()).add("not installed" if version is None else str(version))
  if not seen:
    return ["No library versions were recorded in the results.", ""]
  rows = [[name, ", ".join(sorted(seen[name]))] for name in ordered(seen, VERSION_KEYS)]
  return table(["library", "version(s) in the results"], rows) + [""]


def runs_section(roots, records) -> list[str]:
  """The table of sweep roots: sweep, results read, cells and machine (from sweep.json)."""
  rows = []
  for root in roots:
    sweep = ksweep.read_sweep(root)
    n = sum(1 for r, _, _ in records if r == root)
    if sweep:
      m = sweep.get("machine") or {}
      counts = ", ".join(f"{v} {k}" for k, v in sorted((sweep.get("counts") or {}).items()))
      rows.append([f"`{root}`", sweep.get("sweep", "?"), n, counts or "–",
                   f"{m.get('cpu_model', '?')}, {m.get('cpu_cores', '?')} cores"])
    else:
      m = ksweep.machine_info()
      rows.append([f"`{root}`", "–", n, "no sweep.json",
                   f"not recorded (this report's machine: {m['cpu_model']}, "
                   f"{m['cpu_cores']} cores)"])
  return ["## Runs and machines", ""] + table(
      ["root", "sweep", "results.json read", "cells", "machine (CPU, cores)"], rows) + [""]


def papers_section() -> list[str]:
  ipcs = sorted({i for p in PAPER_RESULTS for i in p["accuracy"]})
  return ["## The papers' numbers (their settings)", "",
          "Test accuracy (%) reported by the papers, for orientation. Their settings differ "
          "from ours: the KIP papers train for many more steps, with ZCA preprocessing for "
          "some datasets, the NeurIPS 2021 numbers use exact ConvNet kernels where ours use "
          "FC kernels or random-feature ConvNet kernels on CPUs, and the RFAD and FRePo "
          "numbers are finite ConvNets trained on the sets.", ""] + table(
              ["dataset", "method", "setting", "paper"] + [f"{i} img/class" for i in ipcs],
              [[pretty_dataset(p["dataset"]), p["method"], p["setting"],
                f"{p['paper']}, arXiv:{p['arxiv']}"] + [p["accuracy"].get(i, "–") for i in ipcs]
               for p in PAPER_RESULTS]) + [""]


_CONDENSATION_INTRO = (
    "KIP (Nguyen, Chen, Lee, arXiv:2011.00050) learns the images and labels of a support set "
    "by differentiating kernel ridge regression; Label Solve (Nguyen, Novak, Xiao, Lee, "
    "arXiv:2107.13034) keeps real images and solves for their labels in closed form; RFAD "
    "(Loo et al., arXiv:2210.12067) runs KIP on the empirical NNGP of random finite networks "
    "drawn every step, FRePo (Zhou et al., arXiv:2206.00719) on the last-layer features of a "
    "pool of networks trained online on the set. A `conv3_in` kernel (the DC ConvNet with "
    "instance norm) has no closed form: its KRR rows use the random-feature estimate named "
    "in the run's results.json. *natural* is a class-balanced random subset of real images "
    "with one-hot labels (`experiments/krr_baseline.py`).")
_PRUNING_INTRO = (
    "Paul, Ganguli and Dziugaite (NeurIPS 2021, arXiv:2107.07075) report that EL2N scores "
    "computed early in training identify examples that can be removed: on CIFAR-10 with "
    "ResNet-18, half of the training set can be pruned by EL2N without loss of test accuracy. "
    "Toneva et al. (ICLR 2019, arXiv:1812.05159) find that many examples are never forgotten "
    "during training and can be removed with little loss. Our settings (datasets, networks, "
    "training lengths) are smaller; the tables below are our runs only.")


def is_protocol_record(r: dict) -> bool:
  """A shared-schema record whose networks were trained under named protocols."""
  return (isinstance(r.get("schema"), int) and r["schema"] >= 2
          and any((ev.get("networks") or {}) for ev in (r.get("evaluations") or {}).values()))


_PROTOCOL_INTRO = (
    "Finite networks trained on each small set under a named protocol "
    "(`kernelcond.nets.protocols`; the protocol's full config is in each results.json), "
    "tested on the full test set. `natural` is the class-balanced random real subset of "
    "the same seed (hard labels, cross-entropy for `dc`); `KIP` the condensed set "
    "started from it. Mean ± std over the runs' seeds (one network per set and seed).")


def shown_dataset(r: dict) -> str:
  """The record's dataset name, a known 'folder' tree named as `FOLDER_DATASETS` says.

  The tree's directory is the record config's `data.data_dir` (distill, evaluate) or
  `data_dir` (prune, whose config holds the data fields at its top level).
  """
  dataset = r["dataset"]["name"]
  if dataset != "folder":
    return dataset
  config = r.get("config") or {}
  data_dir = str((config.get("data") or {}).get("data_dir") or config.get("data_dir") or "")
  return FOLDER_DATASETS.get(os.path.basename(data_dir.rstrip("/")), (dataset,))[0]


def paper_dataset(shown: str) -> str:
  """The dataset id of the papers' rows for a name `shown_dataset` returned."""
  return next((pid for name, pid in FOLDER_DATASETS.values() if name == shown), shown)


def collect_protocols(records) -> dict:
  """{(dataset, (protocol, epochs)): {row label: {ipc: [accuracy per seed]}}} of protocol records.

  A natural subset evaluated by several runs of the same seed (a KIP and a Label
  Solve run start from the same draw) counts once. An `evaluate` record of a
  condensed set takes its label from the distill run that wrote the set (found
  among `records` by the set's folder name), else the evaluate workdir's name.
  """
  table = {}
  producers = {}
  for _, path, r in records:
    if r.get("experiment") == "distill":
      producers[(r["dataset"]["name"], os.path.basename(os.path.dirname(path)))] = r.get(
          "config") or {}

  def add(dataset, protocol, label, ipc, key, value):
    table.setdefault((dataset, protocol), {}).setdefault(label, {}).setdefault(
        ipc, {}).setdefault(key, value)

  for _, path, r in records:
    if not is_protocol_record(r):
      continue
    dataset, config = r["dataset"]["name"], r.get("config") or {}
    shown = shown_dataset(r)
    for name, ev in r["evaluations"].items():
      ipc = ev.get("support_size", 0) // max(1, r["dataset"].get("num_classes") or 10)
      key = path
      if r["experiment"] == "distill":
        label = "natural" if name == "natural" else distill_label(config)
        if name == "natural":
          key = ("natural", config.get("seed"))
      elif ev.get("label_kind") == "hard":
        label = "natural"
      else:
        run = os.path.basename(os.path.dirname(str(config.get("support", ""))))
        producer = producers.get((dataset, run))
        label = (distill_label(producer) if producer is not None
                 else os.path.basename(os.path.dirname(path)))
      for protocol, net in ev["networks"].items():
        epochs = (net.get("config") or {}).get("epochs")
        add(shown, (protocol, epochs), label, ipc, key, net["mean"])
  return {group: {label: {ipc: list(cells.values()) for ipc, cells in by_ipc.items()}
                  for label, by_ipc in rows.items()}
          for group, rows in table.items()}


def protocol_section(grouped) -> list[str]:
  lines = ["## Finite networks under named protocols", "", _PROTOCOL_INTRO, ""]
  for (dataset, protocol) in sorted(grouped):
    rows = grouped[(dataset, protocol)]
    ipcs = sorted({ipc for cells in rows.values() for ipc in cells})
    name, epochs = protocol
    lines += [f"### {pretty_dataset(dataset)}, protocol `{name}`"
              + (f" ({epochs} epochs)" if epochs else ""), ""]
    lines += table(["set"] + [f"{ipc} img/class" for ipc in ipcs],
                         [[label] + [fmt_acc(rows[label].get(ipc, [])) for ipc in ipcs]
                          for label in sorted(rows, key=lambda k: (k != "natural", k))])
    lines.append("")
  return lines


def collect_run_curves(records) -> dict:
  """{(dataset, ipc): {label: [(steps, val accuracies, seconds per step, config)]}}.

  From the `metrics.jsonl` beside each distill record's results.json: the
  running validation accuracy (`eval/val_accuracy`, on examples held out of
  the training set) against the step, one entry per seed.
  """
  curves = {}
  for _, path, r in records:
    if r.get("experiment") != "distill":
      continue
    log = os.path.join(os.path.dirname(path), "metrics.jsonl")
    if not os.path.exists(log):
      continue
    steps, accs, seconds = [], [], []
    for row in kmetrics.read_records(log):  # a torn last line is skipped
      if "eval/val_accuracy" in row:
        steps.append(int(row["step"]))
        accs.append(float(row["eval/val_accuracy"]))
      if "seconds" in row:
        seconds.append(float(row["seconds"]))
    if not steps:
      continue
    config = r.get("config") or {}
    ipc = config.get("ipc")
    curves.setdefault((shown_dataset(r), ipc), {}).setdefault(
        distill_label(config), []).append(
            (steps, accs, float(np.median(seconds)) if seconds else None, config))
  return curves


_CURVES_INTRO = (
    "The running validation accuracy of each condensation run against its step "
    "(`eval/val_accuracy` in the run's metrics.jsonl: KRR with the run's evaluation kernel, "
    "on training examples held out of the run, never the test set), so a reader sees whether "
    "a run had converged. s/step is the median wall time per step logged by the run "
    "(machine and load as in the run's folder).")


def curves_section(curves, figures_dir: str, out_dir: str) -> list[str]:
  from kernelcond import plots
  lines = ["## Condensation runs: validation accuracy against steps", "", _CURVES_INTRO, ""]
  for (dataset, ipc) in sorted(curves, key=lambda k: (k[0], k[1] or 0)):
    runs = curves[(dataset, ipc)]
    fig = os.path.join(figures_dir, f"curves_{slug(dataset)}_ipc{ipc}.png")

    def draw(ax, runs=runs):
      for i, label in enumerate(sorted(runs)):
        for j, (steps, accs, _, _) in enumerate(runs[label]):
          ax.plot(steps, [100 * a for a in accs], color=f"C{i % 10}", alpha=0.8,
                  label=label if j == 0 else None)
      ax.set_xscale("log")

    plots.curves_figure(fig, draw, xlabel="step (log scale)",
                        ylabel="validation accuracy (%)",
                        title=f"{pretty_dataset(dataset)}, {ipc} img/class")
    lines += [f"### {pretty_dataset(dataset)}, {ipc} img/class", "",
              f"![curves]({os.path.relpath(fig, out_dir)})", ""]
    # A common target: the median of the runs' best validation accuracies.
    target = float(np.median([max(accs) for label in runs for _, accs, _, _ in runs[label]]))
    rows = []
    for label in sorted(runs):
      for steps, accs, sec, config in runs[label]:
        best = int(np.argmax(accs))
        first = next((t for t, a in zip(steps, accs) if a >= target), None)
        reached = ("not reached" if first is None else f"{first}" + (
            "" if sec is None else f" ({fmt_seconds(first * sec)})"))
        rows.append([label, str(config.get("seed")), str(steps[-1]),
                     f"{100 * accs[0]:.1f} (step {steps[0]})",
                     f"{100 * accs[best]:.1f} (step {steps[best]})", f"{100 * accs[-1]:.1f}",
                     "–" if sec is None else f"{sec:.3g}", reached])
    lines += table(["set", "seed", "steps", "first val", "best val", "last val", "s/step",
                    f"steps (time) to {100 * target:.1f}"], rows)
    lines += ["", f"The last column: the first logged step at which the run's validation "
              f"accuracy reached {100 * target:.1f}% (the median of these runs' best values), "
              "and that step count times the run's s/step.", ""]
  return lines


SECTIONS = ("condensation", "protocols", "pruning")


def render(roots, out_path: str, figures_dir: Optional[str] = None,
           sections=SECTIONS, protocol_roots=(), notes_roots=()) -> str:
  """The markdown report of the results under `roots`; writes its figures.

  Args:
    roots: sweep output directories.
    out_path: where the markdown will live (figure links are relative to it).
    figures_dir: where the PNGs go (default: figures/ next to `out_path`).
    sections: which of `SECTIONS` to render ('protocols': finite networks under
      named protocols, one table per dataset and protocol).
    notes_roots: result folders whose README.md (their own tables, commands and
      machine) is listed at the end with its title and first paragraph.
    protocol_roots: roots read only by the 'protocols' section (runs whose
      networks follow the named protocols, kept out of the condensation tables).

  Raises:
    FileNotFoundError: for a missing root.
    ValueError: if the roots hold no results at all.
  """
  out_dir = os.path.dirname(os.path.abspath(out_path))
  figures_dir = figures_dir or os.path.join(out_dir, "figures")
  records = find_records(roots)
  if not records:
    raise ValueError(f"No results.json under {', '.join(roots)}")
  unknown = sorted(set(sections) - set(SECTIONS))
  if unknown:
    raise ValueError(f"Unknown report section(s) {unknown}; valid: {', '.join(SECTIONS)}")
  protocol_only = find_records(protocol_roots) if protocol_roots else []
  protocol_records = records + protocol_only
  protocols = collect_protocols(protocol_records) if "protocols" in sections else {}
  condensation = collect_condensation(records) if "condensation" in sections else {}
  pruning = collect_pruning(records) if "pruning" in sections else {}
  lines = ["# Results", "",
           "Generated by `python experiments/report.py --roots=" + ",".join(roots)
           + (" --protocol_roots=" + ",".join(protocol_roots) if protocol_roots else "")
           + (" --notes_roots=" + ",".join(notes_roots) if notes_roots else "")
           + f" --out={out_path}"
           + ("" if tuple(sections) == SECTIONS else " --sections=" + ",".join(sections))
           + "` from the `results.json` files of the sweeps "
           "(`experiments/sweep.py`); do not edit by hand. Accuracies are in percent, "
           "± is the standard deviation over seeds (ddof=0), n is the number of seeds.", ""]
  lines += runs_section(roots, records) + versions_section(records)
  if condensation:
    lines += ["## Dataset condensation: kernel methods (KIP, Label Solve, RFAD, FRePo)", "",
              _CONDENSATION_INTRO, ""]
    for key in sorted(condensation):
      fig = os.path.join(figures_dir, f"kip_{slug('_'.join(key))}.png")
      condensation_figure(key, condensation[key], fig)
      lines += condensation_section(key, condensation[key], os.path.relpath(fig, out_dir))
  if protocols:
    lines += protocol_section(protocols)
    curves = collect_run_curves(protocol_only)
    if curves:
      lines += curves_section(curves, figures_dir, out_dir)
  lines += papers_section()
  if pruning:
    lines += ["## Data pruning: EL2N, GraNd, forgetting and baselines", "", _PRUNING_INTRO, ""]
    for key in sorted(pruning, key=lambda k: tuple(str(x) for x in k)):
      name = slug("_".join(str(x) for x in key if x not in ("{}",)))
      fig = os.path.join(figures_dir, f"prune_{name}.png")
      pruning_figure(key, pruning[key], fig)
      lines += pruning_section(key, pruning[key], os.path.relpath(fig, out_dir))
  lines += notes_section(notes_roots, out_dir)
  return "\n".join(lines).rstrip() + "\n"


def notes_section(notes_roots, out_dir: str) -> list[str]:
  """Links to result folders that document themselves (README.md: title + first paragraph)."""
  if not notes_roots:
    return []
  lines = ["## Further results, documented in their folders", "",
           "Each folder's README.md holds its tables, commands and machine; its first "
           "paragraph is quoted here.", ""]
  for root in notes_roots:
    path = os.path.join(root, "README.md")
    if not os.path.exists(path):
      raise ValueError(f"--notes_roots: {path} does not exist")
    with open(path) as f:
      text = f.read().strip().splitlines()
    title = text[0].lstrip("# ").strip() if text else root
    body, started = [], False
    for line in text[1:]:
      if line.strip() and not line.startswith("#"):
        started = True
        body.append(line.strip())
      elif started:
        break
    lines += [f"- [{title}]({os.path.relpath(path, out_dir)}): " + " ".join(body), ""]
  return lines
