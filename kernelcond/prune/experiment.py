"""A pruning run as a function: `run(config, dataset, workdir)` (what `experiments/prune.py` calls).

For every method, fraction kept and seed, select a subset of the training set,
train a network from scratch on it (`nets.train.train_and_evaluate`) and test it
on the full test set. Methods: 'random' (class-stratified); every name of
`scores.SCORES` (EL2N, GraNd, forgetting, curvature, the kernel scores), each
under every selection strategy of `strategy` ('hardest': keep the highest
scores after skipping the `offset` hardest fraction, Data Diet,
arXiv:2107.07075; 'easiest'; 'ccs': coverage-centric selection,
arXiv:2210.15809); the feature selectors 'herding' and 'kcenter' (Sener &
Savarese, arXiv:1708.00489) on penultimate features; and 'dynamic'
(`prune.dynamic`: the kept set is redrawn during training by forgetting).
Fraction 1.0 is the full training set, one cell ('full') shared by all methods.

Scores are computed by the scoring network: the target model (`train`) trained
`score_epochs` epochs, or a proxy (Coleman et al., "Selection via Proxy",
arXiv:1906.11829): `proxy_model` / `proxy_epochs`, named in the results and in
the cell names ('el2n@proxy').

Outputs in the workdir: `config.json`; `results.json` after every finished cell
(`results[cell][fraction]` = {seeds, test_accuracy per seed, mean, std, n_kept,
steps, wall_time_s; for dynamic also ever_active per seed, the fraction of the
training set that was ever in the kept set, and refreshes}, cells named `cell_name(method, strategy, proxy)`; a re-run
skips finished cells); per-cell checkpoints under `checkpoints/`; cached scores
and features under `scores/`; `accuracy_vs_fraction.png`; with two scores or
more, their Spearman correlations in `results.json` (`score_correlations`) and
`score_correlations.png`.
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
from kernelcond.prune import dynamic as kdynamic
from kernelcond.prune import scores as kscores
from kernelcond.prune import select as kselect

FEATURE_METHODS = ("herding", "kcenter")
BUDGETS = ("steps", "epochs")
# Settings added after the first runs: recorded in config.json only when not at
# their default, so workdirs of earlier runs still resume.
_LATER_FIELDS = ("ccs_beta", "proxy_model", "proxy_model_kwargs", "proxy_epochs", "kernel",
                 "kernel_reg", "dynamic_every", "dynamic_restore", "val_size")


def methods() -> tuple[str, ...]:
  """Every valid pruning method name."""
  return ("random",) + kscores.SCORES.names() + FEATURE_METHODS + ("dynamic",)


@dataclasses.dataclass(frozen=True)
class PruneConfig:
  """One pruning experiment.

  Attributes:
    train: the network and its training (`nets.train.TrainConfig`; its seed is
      replaced by each cell's seed).
    methods: methods to compare: random, the scores (el2n, grand, forgetting,
      curvature, krr_loo, krr_el2n), herding, kcenter, dynamic.
    fractions: fractions of the training set kept, each in (0, 1].
    seeds: training seeds (and seeds of random, CCS, k-center, dynamic).
    strategy: how score methods select, one or more of hardest (keep the highest
      scores), easiest, ccs (coverage-centric: drop the hardest ccs_beta, then
      sample evenly across score strata per class); random, herding, kcenter and
      dynamic ignore it.
    budget: 'steps' (as many steps as `train.epochs` epochs of the full set,
      Data Diet's protocol) or 'epochs' (that many passes over each subset).
    score_epochs: epochs of training before scoring / embedding.
    score_inits: initialisations the scores are averaged over.
    score_seed: seed of the first scoring network.
    last_layer_only: GraNd with the classifier's gradient only.
    offset: hardest-first skips this fraction of the hardest examples.
    ccs_beta: CCS hard-cutoff rate in [0, 1); unset: the rule
      `select.ccs_beta(fraction)` (0 up to 50% pruned, linear to 0.3 at 90%).
    proxy_model: score with this smaller model instead of the trained one
      (selection via proxy, arXiv:1906.11829): mlp, convnet, resnet18 or spec_net.
    proxy_model_kwargs: the proxy's attributes, e.g. 'width=16,depth=2'.
    proxy_epochs: epochs the scoring network (proxy) is trained before scoring;
      unset: score_epochs.
    kernel: kernel spec of krr_loo / krr_el2n (its NTK), e.g. fc3.
    kernel_reg: their relative ridge; unset: chosen by exact leave-one-out error.
    dynamic_every: dynamic: epochs of the budget between redraws of the kept set.
    dynamic_restore: dynamic: share of each class's places redrawn at random.
    scores_dir: read `scores_<method>.npz` (experiments/score.py) from here.
    checkpoint_every: steps between checkpoints of a cell.
    val_size: training examples held out (a stratified draw, `data.stratified_split`
      seed 0) before anything is scored, selected or trained; every cell then also
      records its accuracy on them (`val_accuracy`), so settings such as
      `ccs_beta` are chosen on them, not on the test set. 0: none held out.
    data: the data settings, recorded as given.
  """
  train: Any
  methods: tuple[str, ...] = ("random", "el2n", "grand", "forgetting", "herding", "kcenter")
  fractions: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4, 0.2)
  seeds: tuple[int, ...] = (0, 1)
  strategy: tuple[str, ...] = ("hardest",)
  budget: str = "steps"
  score_epochs: int = 5
  score_inits: int = 2
  score_seed: int = 100
  last_layer_only: bool = False
  offset: float = 0.0
  ccs_beta: Optional[float] = None
  proxy_model: Optional[str] = None
  proxy_model_kwargs: str = ""
  proxy_epochs: Optional[int] = None
  kernel: str = "fc3"
  kernel_reg: Optional[float] = None
  dynamic_every: int = 1
  dynamic_restore: float = 0.2
  scores_dir: Optional[str] = None
  checkpoint_every: int = 1000
  val_size: int = 0
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
    bad = sorted(set(self.strategy) - set(kselect.SCORE_STRATEGIES))
    if bad or not self.strategy:
      raise ValueError(f"Unknown --strategy {bad}; valid: {', '.join(kselect.SCORE_STRATEGIES)}")
    if self.budget not in BUDGETS:
      raise ValueError(f"Unknown --budget {self.budget!r}; valid: {', '.join(BUDGETS)}")
    if not 0 <= self.offset < 1:
      raise ValueError(f"--offset must lie in [0, 1), got {self.offset}")
    if self.ccs_beta is not None and not 0 <= self.ccs_beta < 1:
      raise ValueError(f"--ccs_beta must lie in [0, 1), got {self.ccs_beta}")
    if self.val_size < 0:
      raise ValueError(f"--val_size must be >= 0, got {self.val_size}")
    if self.score_inits < 1 or self.checkpoint_every < 1:
      raise ValueError("--score_inits and --checkpoint_every must be >= 1")
    if self.kernel_reg is not None and not self.kernel_reg > 0:
      raise ValueError(f"--kernel_reg must be > 0, got {self.kernel_reg}")
    if any(m in kscores.KERNEL_SCORES for m in self.methods):
      from kernelcond import kernels
      try:
        kernels.get_spec(self.kernel)
      except ValueError as e:
        raise ValueError(f"--kernel: {e}") from None
    kdynamic.DynamicConfig(self.dynamic_every, self.dynamic_restore)
    if self.proxy_epochs is not None and self.proxy_epochs < 0:
      raise ValueError(f"--proxy_epochs must be >= 0, got {self.proxy_epochs}")
    if self.scores_dir and self.uses_proxy:
      raise ValueError("--proxy_model / --proxy_epochs do not apply with --scores_dir (the "
                       "scores are read from files; score them with experiments/score.py)")
    scorer = self.scorer()  # validates the proxy model
    for name in self.methods:
      if name in kscores.SCORES and not self.scores_dir:
        min_epochs = kscores.SCORES.get(name).min_epochs
        if scorer[1] < min_epochs:
          raise ValueError(f"{name} needs --score_epochs (or --proxy_epochs) >= {min_epochs}")
    object.__setattr__(self, "fractions", tuple(sorted(set(map(float, self.fractions)),
                                                       reverse=True)))
    object.__setattr__(self, "data", dict(self.data))

  @property
  def uses_proxy(self) -> bool:
    return self.proxy_model is not None or self.proxy_epochs is not None

  def scorer(self) -> tuple[train.TrainConfig, int]:
    """`(config, epochs)` of the network that computes the scores (the proxy, if any).

    Raises:
      ValueError: for an unknown proxy model or bad attributes.
    """
    config = self.train
    if self.proxy_model is not None:
      try:
        config = dataclasses.replace(
            config, model=self.proxy_model,
            model_kwargs=train.parse_model_kwargs(self.proxy_model_kwargs))
      except ValueError as e:
        raise ValueError(f"--proxy_model / --proxy_model_kwargs: {e}") from None
    epochs = self.score_epochs if self.proxy_epochs is None else self.proxy_epochs
    return config, int(epochs)

  def record(self) -> dict:
    """The config.json record (methods, fractions, seeds, strategy may grow between sessions)."""
    later = {name: getattr(self, name) for name in _LATER_FIELDS
             if getattr(self, name) != PruneConfig.__dataclass_fields__[name].default}
    return {"experiment": "prune", **self.data, "methods": list(self.methods),
            "fractions": list(self.fractions), "seeds": list(self.seeds), "budget": self.budget,
            "train": self.train.to_dict(), "score_epochs": self.score_epochs,
            "score_inits": self.score_inits, "score_seed": self.score_seed,
            "last_layer_only": self.last_layer_only, "offset": self.offset,
            "scores_dir": self.scores_dir, "strategy": list(self.strategy), **later}


def cell_name(method: str, strategy: str = "hardest", proxy: bool = False) -> str:
  """The results key of a method: 'el2n', 'el2n-ccs', 'el2n-easiest@proxy', 'random'."""
  if method not in kscores.SCORES:
    return method
  name = method if strategy == "hardest" else f"{method}-{strategy}"
  return name + ("@proxy" if proxy and method not in kscores.KERNEL_SCORES else "")


def cells(config: PruneConfig) -> list[tuple[str, str, str]]:
  """`(cell name, method, strategy)` of every pruned cell, in run order."""
  out = []
  for method in config.methods:
    strategies = config.strategy if method in kscores.SCORES else ("hardest",)
    out += [(cell_name(method, s, config.uses_proxy and not config.scores_dir), method, s)
            for s in strategies]
  return out


def load_or_compute_scores(config: PruneConfig, method: str, dataset, workdir: str):
  """`(scores, meta)`: read from `scores_dir`, the workdir cache, or computed and cached."""
  fingerprint = dataset.fingerprint()
  if config.scores_dir:
    path = os.path.join(config.scores_dir, f"scores_{method}.npz")
    values, meta = kscores.load_scores(path, fingerprint, method)
    return values, {"path": path, **meta["config"]}
  path = os.path.join(workdir, "scores", f"scores_{method}.npz")
  scorer, epochs = config.scorer()
  if method in kscores.KERNEL_SCORES:
    meta = {"method": method, "kernel": config.kernel, "kernel_reg": config.kernel_reg,
            "num_inits": config.score_inits, "seed": config.score_seed}
  else:
    meta = {"method": method, "epochs": epochs, "num_inits": config.score_inits,
            "seed": config.score_seed, "last_layer_only": config.last_layer_only,
            "scorer": {"model": scorer.model, "model_kwargs": scorer.to_dict()["model_kwargs"],
                       "epochs": epochs, "proxy": config.uses_proxy}}
  if os.path.exists(path):
    values, _ = kscores.load_scores(path, fingerprint, method)
  else:
    t0 = time.time()
    values = kscores.compute_scores(method, dataset.x_train, dataset.y_train, scorer,
                                    config.score_inits, epochs, config.score_seed,
                                    num_classes=dataset.num_classes,
                                    last_layer_only=config.last_layer_only,
                                    kernel=config.kernel, kernel_reg=config.kernel_reg)
    meta["wall_time_s"] = time.time() - t0
    kscores.save_scores(path, values, method=method, fingerprint=fingerprint,
                        config={**meta, "train": scorer.to_dict()})
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


def select_subset(config: PruneConfig, method: str, strategy: str, fraction: float, seed: int,
                  labels, scores: dict, features) -> np.ndarray:
  """Indices kept by `method` under `strategy` (or all for 'full')."""
  if method == "full":
    return np.arange(len(labels))
  if method in kscores.SCORES:
    return kselect.select(strategy, fraction, scores=scores[method], labels=labels, seed=seed,
                          offset=config.offset, beta=config.ccs_beta)
  return kselect.select(method, fraction, labels=labels, features=features, seed=seed)


def cell(results: dict, name: str, fraction: float) -> Optional[dict]:
  """The finished cell `name` at `fraction` (the shared 'full' cell at 1.0)."""
  return (results.get("full", {}).get("1") if fraction == 1.0
          else results.get(name, {}).get(f"{fraction:g}"))


def _planned(config: PruneConfig) -> list[tuple[float, str, str, str]]:
  """`(fraction, cell name, method, strategy)` of every cell, in run order."""
  out = []
  for fraction in config.fractions:
    out += ([(fraction, "full", "full", "hardest")] if fraction == 1.0
            else [(fraction, *c) for c in cells(config)])
  return out


def finished(config: PruneConfig, workdir: str) -> Optional[dict]:
  """The stored results if every cell and seed of `config` is done in `workdir`, else None.

  Writes nothing. Raises ValueError if the workdir holds another configuration.
  """
  path, config_path = os.path.join(workdir, "results.json"), os.path.join(workdir, "config.json")
  if not (os.path.exists(path) and os.path.exists(config_path)):
    return None
  io.check_run_config(workdir, config.record(), ignore=("methods", "fractions", "seeds",
                                                        "strategy"))
  results = io.load_json(path)
  done = results.get("results", {})
  for fraction, name, _, _ in _planned(config):
    c = cell(done, name, fraction)
    if not c or not set(config.seeds) <= set(c.get("seeds", [])):
      return None
  if sum(m in kscores.SCORES for m in config.methods) >= 2 and "score_correlations" not in results:
    return None
  return results


def hold_out(dataset, val_size: int):
  """`(dataset without the held-out examples, x_val, y_val)`; no split for `val_size=0`."""
  if not val_size:
    return dataset, None, None
  from kernelcond import data as kdata  # local: data pulls in the loaders

  keep, val = kdata.stratified_split(dataset.y_train, val_size, seed=0)
  rest = dataclasses.replace(dataset, x_train=dataset.x_train[keep],
                             y_train=dataset.y_train[keep])
  return rest, dataset.x_train[val], dataset.y_train[val]


def _train_cell(config: PruneConfig, method: str, fraction: float, seed: int, dataset, idx,
                full_steps: int, ckpt: str, val=(None, None)) -> dict:
  steps = full_steps if config.budget == "steps" else None
  cell_config = dataclasses.replace(config.train, steps=steps, seed=seed)
  if method == "dynamic":
    k = kselect.num_kept(dataset.num_train, fraction)
    total = full_steps if steps else train.schedule_steps(config.train, k)[0]
    state, metrics = kdynamic.train_dynamic(
        cell_config, kdynamic.DynamicConfig(config.dynamic_every, config.dynamic_restore),
        fraction, dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test,
        num_classes=dataset.num_classes, total_steps=total, checkpoint_dir=ckpt)
  else:
    state, metrics = train.train_and_evaluate(
        cell_config, dataset.x_train[idx], dataset.y_train[idx], dataset.x_test, dataset.y_test,
        num_classes=dataset.num_classes, checkpoint_dir=ckpt,
        checkpoint_every=config.checkpoint_every)
  if val[0] is not None:
    metrics = {**metrics, "val_accuracy": train.evaluate(state, *val)["accuracy"]}
  return metrics


def run(config: PruneConfig, dataset, workdir: str, log=lambda *a: None) -> dict:
  """Runs (or resumes) every cell of `config`; returns the results.json record.

  `log(name, fraction_key, seed, n_kept, metrics)` is called after each cell;
  for a cell finished earlier, with `n_kept=None` and its test accuracy.

  Raises:
    ValueError: a workdir of another configuration, or one that another process is
      running in (`io.exclusive_workdir`), before anything is written.
  """
  start = time.time()
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir {workdir} exists and is not a directory")
  if config.val_size >= dataset.num_train:
    raise ValueError(f"--val_size={config.val_size} leaves no training examples "
                     f"({dataset.name} has {dataset.num_train})")
  os.makedirs(workdir, exist_ok=True)
  with io.exclusive_workdir(workdir):
    return _run(config, dataset, workdir, log, start)


def _run(config: PruneConfig, dataset, workdir: str, log, start: float) -> dict:
  """`run` below the workdir's lock (`io.exclusive_workdir`)."""
  io.check_run_config(workdir, config.record(), ignore=("methods", "fractions", "seeds",
                                                        "strategy"))
  dataset, x_val, y_val = hold_out(dataset, config.val_size)
  full_steps, _, _ = train.schedule_steps(config.train, dataset.num_train)
  path = os.path.join(workdir, "results.json")
  results = io.load_json(path) if os.path.exists(path) else {}
  done = results.setdefault("results", {})
  elapsed_before = results.get("wall_time_s", 0.0)
  score_values, score_meta, features = {}, results.get("scores", {}), None

  def save():
    scorer, epochs = config.scorer()
    results.update(config=config.record(), dataset=dataset.name,
                   fingerprint=dataset.fingerprint(), n_train=dataset.num_train,
                   n_val=config.val_size,
                   n_test=dataset.num_test, full_steps=full_steps, scores=score_meta,
                   proxy=({"model": scorer.model, "model_kwargs": config.proxy_model_kwargs,
                           "epochs": epochs} if config.uses_proxy else None),
                   wall_time_s=elapsed_before + time.time() - start,
                   versions=io.environment()["versions"])
    io.save_json(path, results)

  def scores_of(method):
    if method not in score_values:
      score_values[method], score_meta[method] = load_or_compute_scores(
          config, method, dataset, workdir)
    return score_values

  for fraction, name, method, strategy in _planned(config):
    key = f"{fraction:g}"
    entry = done.setdefault(name, {}).setdefault(
        key, {"seeds": [], "test_accuracy": [], "wall_time_s": []})
    for seed in config.seeds:
      if seed in entry["seeds"]:
        log(name, key, seed, None, entry["test_accuracy"][entry["seeds"].index(seed)])
        continue
      if method in kscores.SCORES:
        scores_of(method)
      if method in FEATURE_METHODS and features is None:
        features = load_or_compute_features(config, dataset, workdir)
      t0 = time.time()
      idx = (None if method == "dynamic" else
             select_subset(config, method, strategy, fraction, seed, dataset.y_train,
                           score_values, features))
      ckpt = os.path.join(workdir, "checkpoints", f"{name}_{key}_seed{seed}")
      metrics = _train_cell(config, method, fraction, seed, dataset, idx, full_steps, ckpt,
                            (x_val, y_val))
      n_kept = int(metrics["n_kept"] if idx is None else len(idx))
      log(name, key, seed, n_kept, metrics)
      entry["seeds"].append(seed)
      entry["test_accuracy"].append(metrics["test_accuracy"])
      entry["wall_time_s"].append(time.time() - t0)
      if "val_accuracy" in metrics:
        entry.setdefault("val_accuracy", []).append(float(metrics["val_accuracy"]))
      if method == "dynamic":  # how much of the training set the changing kept set touched
        entry.setdefault("ever_active", []).append(metrics["ever_active"])
        entry["refreshes"] = metrics["refreshes"]
      entry.update(n_kept=n_kept, steps=int(metrics["steps"]), epochs=float(metrics["epochs"]),
                   method=method, strategy=strategy if method in kscores.SCORES else None,
                   test_accuracy_mean=float(np.mean(entry["test_accuracy"])),
                   test_accuracy_std=float(np.std(entry["test_accuracy"])))
      save()
  score_methods = [m for m in config.methods if m in kscores.SCORES]
  if len(score_methods) >= 2:
    for method in score_methods:
      scores_of(method)
    names, rho = kscores.spearman_matrix({m: score_values[m] for m in score_methods})
    results["score_correlations"] = {"methods": names, "spearman": rho.tolist()}
    correlation_figure(os.path.join(workdir, "score_correlations.png"), names, rho,
                       f"{dataset.name}: Spearman correlation of scores")
  save()
  accuracy_figure(os.path.join(workdir, "accuracy_vs_fraction.png"), done, config,
                  f"{config.data.get('dataset', dataset.name)}: {config.train.model}, "
                  f"budget={config.budget}")
  return results


def accuracy_figure(path: str, results: dict, config: PruneConfig, title: str) -> None:
  """Mean test accuracy (std error bars) against the fraction kept, one line per cell name
  (hardest-first solid, CCS dashed, easy-first dotted)."""
  from kernelcond import plots

  def draw(ax):
    for name, method, strategy in cells(config):  # one colour per method, a style per strategy
      points = [(f, c) for f in config.fractions
                if (c := cell(results, name, f)) and c.get("test_accuracy")]
      if points:
        ax.errorbar([f for f, _ in points], [c["test_accuracy_mean"] for _, c in points],
                    yerr=[c["test_accuracy_std"] for _, c in points], marker="o", capsize=3,
                    label=name, color=f"C{config.methods.index(method) % 10}",
                    linestyle={"ccs": "--", "easiest": ":"}.get(strategy, "-"))

  plots.curves_figure(path, draw, xlabel="fraction of training set kept",
                      ylabel="test accuracy", title=title, title_size=9, invert_x=True, dpi=90)


def correlation_figure(path: str, names, rho, title: str) -> None:
  """The Spearman correlation matrix of scores as an annotated heat map."""
  from kernelcond import plots

  plt = plots.pyplot()
  m = len(names)
  fig, ax = plt.subplots(figsize=(1.0 + 0.9 * m, 0.8 + 0.8 * m))
  image = ax.imshow(np.asarray(rho), vmin=-1, vmax=1, cmap="RdBu_r")
  ax.set_xticks(range(m))
  ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
  ax.set_yticks(range(m))
  ax.set_yticklabels(names, fontsize=8)
  for i in range(m):
    for j in range(m):
      ax.text(j, i, f"{rho[i][j]:.2f}", ha="center", va="center", fontsize=7)
  fig.colorbar(image, ax=ax, fraction=0.046)
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=90)
