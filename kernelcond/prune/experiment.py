"""A pruning run as a function: `run(config, dataset, workdir)` (what `experiments/prune.py` calls).

For every method, fraction kept and seed, select a subset of the training set,
train a network from scratch on it (`nets.train.train_and_evaluate`) and test it
on the full test set. Methods: 'random' (class-stratified), every name of
`scores.SCORES` (keep the highest scores, hardest first, after skipping the
`offset` hardest fraction; Data Diet, arXiv:2107.07075; Toneva et al.,
arXiv:1812.05159) and the feature selectors 'herding' and 'kcenter' (Sener &
Savarese, arXiv:1708.00489) on penultimate features. Fraction 1.0 is the full
training set, one cell ('full') shared by all methods.

Outputs in the workdir: `config.json`; `results.json` after every finished cell
(`results[method][fraction]` = {seeds, test_accuracy per seed, mean, std, n_kept,
steps, wall_time_s}; a re-run skips finished cells); per-cell checkpoints
under `checkpoints/`; cached scores and features under `scores/`; and
`accuracy_vs_fraction.png`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Optional

import numpy as np

from kernelcond import io
from kernelcond.nets import train
from kernelcond.prune import scores as kscores
from kernelcond.prune import select as kselect

FEATURE_METHODS = ("herding", "kcenter")
BUDGETS = ("steps", "epochs")


def methods() -> tuple[str, ...]:
  """Every valid pruning method name."""
  return ("random",) + kscores.SCORES.names() + FEATURE_METHODS


@dataclasses.dataclass(frozen=True)
class PruneConfig:
  """One pruning experiment.

  Attributes:
    train: the network and its training (`nets.train.TrainConfig`; its seed is
      replaced by each cell's seed).
    methods: methods to compare (`methods()`).
    fractions: fractions of the training set kept, each in (0, 1].
    seeds: training seeds (and seeds of random / k-center).
    budget: 'steps' (as many steps as `train.epochs` epochs of the full set,
      Data Diet's protocol) or 'epochs' (that many passes over each subset).
    score_epochs: epochs of training before scoring / embedding.
    score_inits: initialisations the scores are averaged over.
    score_seed: seed of the first scoring network.
    last_layer_only: GraNd with the classifier's gradient only.
    offset: score methods skip this fraction of the hardest examples.
    scores_dir: read `scores_<method>.npz` (experiments/score.py) from here.
    checkpoint_every: steps between checkpoints of a cell.
    data: the data settings, recorded as given.
  """
  train: Any
  methods: tuple = ("random", "el2n", "grand", "forgetting", "herding", "kcenter")
  fractions: tuple = (1.0, 0.8, 0.6, 0.4, 0.2)
  seeds: tuple = (0, 1)
  budget: str = "steps"
  score_epochs: int = 5
  score_inits: int = 2
  score_seed: int = 100
  last_layer_only: bool = False
  offset: float = 0.0
  scores_dir: Optional[str] = None
  checkpoint_every: int = 1000
  data: Any = ()

  def __post_init__(self):
    unknown = sorted(set(self.methods) - set(methods()))
    if unknown or not self.methods:
      raise ValueError(f"Unknown method(s) {unknown} in --methods; valid: {', '.join(methods())}")
    bad = [f for f in self.fractions if not 0 < f <= 1]
    if bad or not self.fractions:
      raise ValueError(f"--fractions must lie in (0, 1], got {bad or list(self.fractions)}")
    if not self.seeds:
      raise ValueError("--seeds is empty")
    if self.budget not in BUDGETS:
      raise ValueError(f"Unknown budget {self.budget!r}; valid: {', '.join(BUDGETS)}")
    if not 0 <= self.offset < 1:
      raise ValueError(f"--offset must lie in [0, 1), got {self.offset}")
    for name in self.methods:
      if name in kscores.SCORES and not self.scores_dir:
        min_epochs = kscores.SCORES.get(name)[0]
        if self.score_epochs < min_epochs:
          raise ValueError(f"{name} needs --score_epochs >= {min_epochs}")
    object.__setattr__(self, "fractions", tuple(sorted(set(map(float, self.fractions)),
                                                       reverse=True)))
    object.__setattr__(self, "data", dict(self.data))

  def record(self) -> dict:
    """The config.json record (methods, fractions and seeds may grow between sessions)."""
    return {"experiment": "prune", **self.data, "methods": list(self.methods),
            "fractions": list(self.fractions), "seeds": list(self.seeds), "budget": self.budget,
            "train": self.train.to_dict(), "score_epochs": self.score_epochs,
            "score_inits": self.score_inits, "score_seed": self.score_seed,
            "last_layer_only": self.last_layer_only, "offset": self.offset,
            "scores_dir": self.scores_dir}


def load_or_compute_scores(config: PruneConfig, method: str, dataset, workdir: str):
  """`(scores, meta)`: read from `scores_dir`, the workdir cache, or computed and cached."""
  fingerprint = dataset.fingerprint()
  if config.scores_dir:
    path = os.path.join(config.scores_dir, f"scores_{method}.npz")
    values, meta = kscores.load_scores(path, fingerprint, method)
    return values, {"path": path, **meta["config"]}
  path = os.path.join(workdir, "scores", f"scores_{method}.npz")
  meta = {"method": method, "epochs": config.score_epochs, "num_inits": config.score_inits,
          "seed": config.score_seed, "last_layer_only": config.last_layer_only}
  if os.path.exists(path):
    values, _ = kscores.load_scores(path, fingerprint, method)
  else:
    t0 = time.time()
    values = kscores.compute_scores(method, dataset.x_train, dataset.y_train, config.train,
                                    config.score_inits, config.score_epochs, config.score_seed,
                                    num_classes=dataset.num_classes,
                                    last_layer_only=config.last_layer_only)
    kscores.save_scores(path, values, method=method, fingerprint=fingerprint,
                        config={**meta, "train": config.train.to_dict(),
                                "wall_time_s": time.time() - t0})
  return values, {"path": path, **meta}


def load_or_compute_features(config: PruneConfig, dataset, workdir: str) -> np.ndarray:
  """Penultimate features for herding / k-center, cached in the workdir."""
  fingerprint = dataset.fingerprint()
  path = os.path.join(workdir, "scores", "features.npz")
  if os.path.exists(path):
    cached = io.load_npz(path)
    if "fingerprint" in cached and json.loads(str(cached["fingerprint"])) == fingerprint:
      return cached["features"]
    raise ValueError(f"{path} was computed for another dataset; use a new --workdir")
  features = kscores.compute_features(dataset.x_train, dataset.y_train, config.train,
                                      config.score_epochs, config.score_seed,
                                      num_classes=dataset.num_classes)
  io.save_npz(path, features=features, fingerprint=fingerprint)
  return features


def select_subset(config: PruneConfig, method: str, fraction: float, seed: int, labels,
                  scores: dict, features) -> np.ndarray:
  """Indices kept by `method` (one of `methods()`, or 'full')."""
  if method == "full":
    return np.arange(len(labels))
  if method in kscores.SCORES:
    return kselect.select("score", fraction, scores=scores[method], offset=config.offset)
  return kselect.select(method, fraction, labels=labels, features=features, seed=seed)


def cell(results: dict, method: str, fraction: float) -> Optional[dict]:
  """The finished cell of `method` at `fraction` (the shared 'full' cell at 1.0)."""
  return (results.get("full", {}).get("1") if fraction == 1.0
          else results.get(method, {}).get(f"{fraction:g}"))


def run(config: PruneConfig, dataset, workdir: str, log=lambda *a: None) -> dict:
  """Runs (or resumes) every cell of `config`; returns the results.json record.

  `log(method, fraction_key, seed, n_kept, metrics)` is called after each cell;
  for a cell finished earlier, with `n_kept=None` and its test accuracy.
  """
  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  io.check_run_config(workdir, config.record(), ignore=("methods", "fractions", "seeds"))
  full_steps, _, _ = train.schedule_steps(config.train, dataset.num_train)
  path = os.path.join(workdir, "results.json")
  results = io.load_json(path) if os.path.exists(path) else {}
  cells = results.setdefault("results", {})
  elapsed_before = results.get("wall_time_s", 0.0)
  score_values, score_meta, features = {}, results.get("scores", {}), None

  def save():
    results.update(config=config.record(), dataset=dataset.name,
                   fingerprint=dataset.fingerprint(), n_train=dataset.num_train,
                   n_test=dataset.num_test, full_steps=full_steps, scores=score_meta,
                   wall_time_s=elapsed_before + time.time() - start,
                   versions=io.environment()["versions"])
    io.save_json(path, results)

  for fraction in config.fractions:
    for method in (["full"] if fraction == 1.0 else config.methods):
      key = f"{fraction:g}"
      entry = cells.setdefault(method, {}).setdefault(
          key, {"seeds": [], "test_accuracy": [], "wall_time_s": []})
      for seed in config.seeds:
        if seed in entry["seeds"]:
          log(method, key, seed, None, entry["test_accuracy"][entry["seeds"].index(seed)])
          continue
        if method in kscores.SCORES and method not in score_values:
          score_values[method], score_meta[method] = load_or_compute_scores(
              config, method, dataset, workdir)
        if method in FEATURE_METHODS and features is None:
          features = load_or_compute_features(config, dataset, workdir)
        t0 = time.time()
        idx = select_subset(config, method, fraction, seed, dataset.y_train, score_values,
                            features)
        steps = full_steps if config.budget == "steps" else None
        cell_config = dataclasses.replace(config.train, steps=steps, seed=seed)
        ckpt = os.path.join(workdir, "checkpoints", f"{method}_{key}_seed{seed}")
        _, metrics = train.train_and_evaluate(
            cell_config, dataset.x_train[idx], dataset.y_train[idx], dataset.x_test,
            dataset.y_test, num_classes=dataset.num_classes, checkpoint_dir=ckpt,
            checkpoint_every=config.checkpoint_every)
        log(method, key, seed, len(idx), metrics)
        entry["seeds"].append(seed)
        entry["test_accuracy"].append(metrics["test_accuracy"])
        entry["wall_time_s"].append(time.time() - t0)
        entry.update(n_kept=int(len(idx)), steps=int(metrics["steps"]),
                     epochs=float(metrics["epochs"]),
                     test_accuracy_mean=float(np.mean(entry["test_accuracy"])),
                     test_accuracy_std=float(np.std(entry["test_accuracy"])))
        save()
  save()
  accuracy_figure(os.path.join(workdir, "accuracy_vs_fraction.png"), cells, config,
                  f"{config.data.get('dataset', dataset.name)}: {config.train.model}, "
                  f"budget={config.budget}")
  return results


def accuracy_figure(path: str, cells: dict, config: PruneConfig, title: str) -> None:
  """Mean test accuracy (std error bars) against the fraction kept, one line per method."""
  from kernelcond import plots

  def draw(ax):
    for method in config.methods:
      points = [(f, c) for f in config.fractions
                if (c := cell(cells, method, f)) and c.get("test_accuracy")]
      if points:
        ax.errorbar([f for f, _ in points], [c["test_accuracy_mean"] for _, c in points],
                    yerr=[c["test_accuracy_std"] for _, c in points], marker="o", capsize=3,
                    label=method)

  plots.curves_figure(path, draw, xlabel="fraction of training set kept",
                      ylabel="test accuracy", title=title, title_size=9, invert_x=True, dpi=90)
