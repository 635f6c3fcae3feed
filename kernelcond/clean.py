"""Finding mislabelled examples: out-of-sample probabilities -> cleanlab -> flags and metrics.

Confident Learning (Northcutt, Jiang & Chuang, JAIR 2021, arXiv:1911.00068)
needs out-of-sample predicted probabilities of every training example. Two
sources here:

* `krr_loo_outputs`: exact kernel ridge regression leave-one-out predictions
  of the centred one-hot given labels (`kernelcond.loo`, one factorisation; a
  Nystrom or random-feature kernel for large sets, stated in the result);
* `cross_val_outputs`: K-fold cross-validated finite networks (a protocol of
  `nets.protocols`; each fold's network never sees the fold it predicts).

Both give real-valued class outputs `z`; probabilities are `softmax(z / T)` with
one temperature `T` fitted by minimising the negative log-likelihood of the
given labels on these held-out outputs (`fit_temperature`; Guo et al.,
arXiv:1706.04599). cleanlab (a dependency, not re-implemented) then ranks and
flags: `cleanlab.rank.get_label_quality_scores` (self-confidence) and
`cleanlab.filter.find_label_issues`.

Detectors (`DETECTORS`, higher score = more suspicious):

* 'krr_loo', 'cv_net': cleanlab on the KRR leave-one-out / cross-validated
  network probabilities; flags are cleanlab's issues.
* 'krr_residual': the KRR leave-one-out residual `||t_i - f_{-i}(x_i)||`;
  'el2n' and 'forgetting': the scores of `prune.scores.SCORES` of a network
  trained on the given labels (in-sample; arXiv:2107.07075, arXiv:1812.05159).
  These rank only: each flags its top `k`, with `k` cleanlab's estimate of the
  number of label issues (`cleanlab.count.num_label_issues`) from the first
  probability detector of the run.

`detection_metrics` scores flags and scores against a ground-truth mask
(precision, recall, F1, AUROC, average precision). `run(config, dataset,
workdir)` is a whole cleaning experiment (`experiments/clean.py`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from kernelcond import io
from kernelcond import loo
from kernelcond import noise as knoise
from kernelcond import preprocess
from kernelcond.registry import Registry

# Relative ridges the KRR detectors choose from (`choose_reg`).
REGS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given")
CONDITIONS = ("noisy", "cleaned", "oracle", "true_labels", "label_smoothing", "mixup")


# ----------------------------------------------------------------------------
# Calibration.


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
  """Row-wise `softmax(z / T)`, float64, `(n, c)`."""
  z = np.asarray(logits, np.float64) / float(temperature)
  z = z - z.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def nll(logits, labels, temperature: float = 1.0) -> float:
  """Mean negative log-likelihood of integer `labels` under `softmax(z / T)`."""
  z = np.asarray(logits, np.float64) / float(temperature)
  zmax = z.max(axis=1)
  lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
  return float(np.mean(lse - z[np.arange(len(z)), np.asarray(labels)]))


def fit_temperature(logits, labels, low: float = 1e-4, high: float = 1e4) -> float:
  """The `T` in `[low, high]` minimising `nll(logits, labels, T)` (temperature scaling).

  The NLL is convex in `1 / T`, so a bounded scalar search over `log T` finds
  its minimum (arXiv:1706.04599, section 4.2).
  """
  from scipy import optimize

  labels = np.asarray(labels)
  res = optimize.minimize_scalar(lambda s: nll(logits, labels, np.exp(s)),
                                 bounds=(np.log(low), np.log(high)), method="bounded",
                                 options={"xatol": 1e-5})
  return float(np.exp(res.x))


# ----------------------------------------------------------------------------
# Out-of-sample outputs.


def choose_reg(loo_fn: Callable[[float], np.ndarray], labels, regs=REGS) -> tuple[float, dict]:
  """The ridge of `regs` whose leave-one-out predictions disagree least with `labels`.

  The validation rule of the KRR detectors: leave-one-out error against the
  given (possibly noisy) labels, ties to the smaller ridge; no ground truth is
  read. A ridge with a non-finite solve is skipped.

  Returns:
    `(reg, {str(reg): error})`.
  """
  labels = np.asarray(labels)
  errors = {}
  for reg in regs:
    try:
      pred = loo_fn(reg)
    except ValueError:
      continue
    errors[f"{reg:g}"] = float(np.mean(np.argmax(pred, axis=1) != labels))
  if not errors:
    raise ValueError(f"leave-one-out KRR is not finite for any ridge in {list(regs)}")
  best = min(errors, key=lambda k: (errors[k], float(k)))
  return float(best), errors


def krr_loo_outputs(loo_fn: Callable[[float], np.ndarray], labels, num_classes: int,
                    reg: Optional[float] = None) -> tuple[np.ndarray, dict]:
  """KRR leave-one-out outputs `(n, c)` of centred one-hot `labels` and how they were made.

  Args:
    loo_fn: `loo_fn(reg)` from `loo.make_loo_fn` / `loo.make_feature_loo_fn`,
      built on the centred one-hot targets of `labels`.
    labels: `(n,)` given labels.
    num_classes: `c`.
    reg: relative ridge; None: `choose_reg` over `REGS`.
  """
  info = {"method": getattr(loo_fn, "method", "features")}
  if reg is None:
    reg, info["loo_error_by_reg"] = choose_reg(loo_fn, labels)
  info["reg"] = float(reg)
  return np.asarray(loo_fn(reg)), info


def kfold(labels, folds: int, seed: int = 0) -> np.ndarray:
  """`(n,)` fold of each example: class-stratified, each class dealt round-robin after a shuffle."""
  labels = np.asarray(labels)
  if folds < 2:
    raise ValueError(f"folds must be >= 2, got {folds}")
  out = np.empty(len(labels), np.int32)
  rng = np.random.default_rng([int(seed), 5])
  offset = 0
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    out[members] = (offset + np.arange(len(members))) % folds
    offset += len(members)
  return out


def _protocol_spec(protocol, spec=None):
  """The `ArchSpec` a SpecNet protocol trains (None for ConvNet protocols)."""
  from kernelcond import kernels

  if protocol.model != "spec_net":
    return None
  return kernels.get_spec(spec if spec is not None else protocol.spec)


def cross_val_outputs(protocol, x, labels, num_classes: int, folds: int = 5, seed: int = 0,
                      spec=None) -> np.ndarray:
  """K-fold cross-validated network outputs `(n, c)`: each row from a network not trained on it.

  For every fold, one network of `protocol` (`nets.protocols`, a `Protocol`
  with a fixed learning rate) is trained on the other folds' examples and
  given labels (the protocol's targets and loss), then predicts the fold
  (inference mode; `f - f0` when the protocol centres its output).
  """
  from kernelcond.nets import protocols as kprotocols
  from kernelcond.nets import train

  if protocol.lr_rule != "fixed":
    raise ValueError(f"cross-validation needs a protocol with a fixed learning rate; "
                     f"{protocol.name!r} uses {protocol.lr_rule!r}")
  x = np.asarray(x, np.float32)
  labels = np.asarray(labels, np.int32)
  fold = kfold(labels, folds, seed)
  resolved = _protocol_spec(protocol, spec)
  loss = protocol.hard_loss
  targets = kprotocols.protocol_targets(protocol, labels, num_classes)
  out = np.zeros((len(x), num_classes), np.float32)
  for k in range(folds):
    held = fold == k
    config = protocol.train_config(x.shape[1:], loss=loss, spec=resolved, seed=seed + k)
    state, _ = train.train_and_evaluate(config, x[~held], targets[~held],
                                        num_classes=num_classes)
    out[held] = train.predict(state, x[held])
  return out


# ----------------------------------------------------------------------------
# Detection.


class Detection(NamedTuple):
  """One detector's verdict on every example.

  Attributes:
    scores: `(n,)` higher = more likely mislabelled.
    flags: `(n,)` bool, the flagged examples.
    suggested: `(n,)` int, the label the detector believes (argmax of its
      probabilities; the given label for score-only detectors without them).
  """
  scores: np.ndarray
  flags: np.ndarray
  suggested: np.ndarray


def cleanlab_detection(probs, labels, filter_by: str = "prune_by_noise_rate") -> Detection:
  """cleanlab's issues and self-confidence quality scores (`1 - quality` as the score)."""
  from cleanlab import filter as cl_filter
  from cleanlab import rank as cl_rank

  if filter_by not in FILTERS:
    raise ValueError(f"Unknown cleanlab filter {filter_by!r}; valid: {', '.join(FILTERS)}")
  labels = np.asarray(labels)
  probs = np.asarray(probs, np.float64)
  flags = cl_filter.find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
  quality = cl_rank.get_label_quality_scores(labels, probs, method="self_confidence")
  return Detection(1.0 - np.asarray(quality, np.float64), np.asarray(flags, bool),
                   probs.argmax(axis=1).astype(np.int32))


def num_label_issues(probs, labels) -> int:
  """cleanlab's estimate of how many labels are wrong (`cleanlab.count.num_label_issues`)."""
  from cleanlab import count

  return int(count.num_label_issues(np.asarray(labels), np.asarray(probs, np.float64)))


def top_k_detection(scores, count: int, suggested) -> Detection:
  """Flags the `count` highest `scores` (ties by index)."""
  scores = np.asarray(scores, np.float64)
  flags = np.zeros(len(scores), bool)
  flags[np.argsort(-scores, kind="stable")[:int(count)]] = True
  return Detection(scores, flags, np.asarray(suggested, np.int32))


def detection_metrics(flags, scores, mask) -> dict:
  """Precision, recall, F1 of `flags` and AUROC / average precision of `scores` against `mask`.

  Args:
    flags: `(n,)` bool flagged examples.
    scores: `(n,)` higher = more suspicious.
    mask: `(n,)` bool, truly mislabelled.
  """
  from sklearn import metrics

  flags, mask = np.asarray(flags, bool), np.asarray(mask, bool)
  tp = int(np.sum(flags & mask))
  precision = tp / max(int(flags.sum()), 1)
  recall = tp / max(int(mask.sum()), 1)
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  both = 0 < mask.sum() < len(mask)
  return {"precision": precision, "recall": recall, "f1": f1,
          "auroc": float(metrics.roc_auc_score(mask, scores)) if both else None,
          "average_precision": (float(metrics.average_precision_score(mask, scores))
                                if both else None),
          "n_flagged": int(flags.sum()), "n_noisy": int(mask.sum()), "true_positives": tp}


# ----------------------------------------------------------------------------
# A cleaning experiment.


@dataclasses.dataclass(frozen=True)
class CleanConfig:
  """One label-cleaning experiment.

  Attributes:
    noise: label noise to inject: none, symmetric:R, pairs:R, classcond:R[:S]
      or a noise-matrix file (kernelcond.noise).
    noise_seed: seed of the noise (which labels flip; classcond's matrix).
    subset: use a random class-stratified subset of this many training
      examples (0: all); flagged indices still refer to the full set.
    detectors: detectors to run and score, the first decides what is cleaned:
      krr_loo, krr_residual, cv_net, el2n, forgetting.
    kernel: kernel spec of the KRR detectors (its kernel_type kernel).
    kernel_backend: auto, native or nt.
    kernel_type: ntk or nngp.
    reg: KRR relative ridge; unset: the one of clean.REGS with the lowest
      leave-one-out error against the given labels.
    loo_method: exact, nystrom, or auto (exact up to loo.EXACT_AUTO_MAX_N).
    landmarks: Nystrom landmarks.
    rf_models: > 0: the kernel is the random-feature kernel of this many
      random networks of `kernel` (leave-one-out in feature space).
    rf_width: width of those networks (unset: the spec's).
    block_size: kernel block edge.
    filter_by: cleanlab's find_label_issues rule.
    folds: folds of the cv_net detector.
    cv_protocol: protocol of the cv_net, el2n and forgetting networks.
    cv_epochs: their epochs (0: the protocol's).
    protocol: evaluation protocol of the networks trained on noisy, cleaned
      and oracle data.
    net_epochs: its epochs (0: the protocol's).
    net_seeds: one evaluation network per seed and condition.
    conditions: training sets to evaluate: noisy, cleaned, oracle (flipped
      examples removed), true_labels (every example, original label),
      label_smoothing and mixup (noisy labels, the protocol with these).
    label_smoothing: the label_smoothing condition's weight.
    mixup_alpha: the mixup condition's Beta parameter.
    grid: images in flagged.png, the most suspicious first.
    data: the data settings, recorded as given.
  """
  noise: str = "symmetric:0.2"
  noise_seed: int = 0
  subset: int = 0
  detectors: tuple[str, ...] = ("krr_loo",)
  kernel: str = "fc3"
  kernel_backend: str = "auto"
  kernel_type: str = "ntk"
  reg: Optional[float] = None
  loo_method: str = "auto"
  landmarks: int = 4000
  rf_models: int = 0
  rf_width: Optional[int] = None
  block_size: int = 512
  filter_by: str = "prune_by_noise_rate"
  folds: int = 5
  cv_protocol: str = "mlp"
  cv_epochs: int = 0
  protocol: str = "mlp"
  net_epochs: int = 0
  net_seeds: tuple[int, ...] = (0,)
  conditions: tuple[str, ...] = CONDITIONS
  label_smoothing: float = 0.1
  mixup_alpha: float = 0.2
  grid: int = 32
  data: Any = ()

  def __post_init__(self):
    from kernelcond import kernels
    from kernelcond.nets import protocols

    spec = knoise.parse_spec(self.noise)
    object.__setattr__(self, "detectors", tuple(d for d in self.detectors if d))
    object.__setattr__(self, "conditions", tuple(c for c in self.conditions if c))
    object.__setattr__(self, "net_seeds", tuple(int(s) for s in self.net_seeds))
    object.__setattr__(self, "data", dict(self.data))
    if not self.detectors:
      raise ValueError("--detectors is empty")
    for name in self.detectors:
      DETECTORS.get(name)
    if not any(DETECTORS.get(d).probabilistic for d in self.detectors):
      raise ValueError("--detectors needs krr_loo or cv_net: the others flag as many examples "
                       "as cleanlab estimates from a probability detector")
    bad = sorted(set(self.conditions) - set(CONDITIONS))
    if bad:
      raise ValueError(f"Unknown --conditions {bad}; valid: {', '.join(CONDITIONS)}")
    if not spec.has_ground_truth:
      object.__setattr__(self, "conditions", tuple(
          c for c in self.conditions if c not in ("oracle", "true_labels")))
    try:
      kernels.get_spec(self.kernel)
    except ValueError as e:
      raise ValueError(f"--kernel: {e}") from None
    kernels.resolve_backend(self.kernel_backend, self.kernel)
    if self.kernel_type not in kernels.KERNEL_KINDS:
      raise ValueError(f"Unknown --kernel_type {self.kernel_type!r}; valid: "
                       f"{', '.join(kernels.KERNEL_KINDS)}")
    if self.reg is not None and not self.reg > 0:
      raise ValueError(f"--reg must be > 0, got {self.reg}")
    if self.loo_method not in ("auto",) + loo.LOO_METHODS:
      raise ValueError(f"Unknown --loo_method {self.loo_method!r}; valid: auto, "
                       f"{', '.join(loo.LOO_METHODS)}")
    for name in ("landmarks", "block_size", "grid"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
    if self.folds < 2:
      raise ValueError(f"--folds must be >= 2, got {self.folds}")
    for name in ("rf_models", "cv_epochs", "net_epochs", "subset", "noise_seed"):
      if getattr(self, name) < 0:
        raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
    if self.filter_by not in FILTERS:
      raise ValueError(f"Unknown --filter_by {self.filter_by!r}; valid: {', '.join(FILTERS)}")
    if self.conditions and not self.net_seeds:
      raise ValueError("--net_seeds is empty")
    self.eval_protocol("noisy")
    if self.cv_protocol_obj().lr_rule != "fixed":
      raise ValueError(f"--cv_protocol {self.cv_protocol!r} sets its learning rate from the NTK; "
                       f"use one with a fixed rate ({', '.join(_fixed_protocols())})")
    if not 0 <= self.label_smoothing < 1 or self.mixup_alpha < 0:
      raise ValueError("--label_smoothing must lie in [0, 1) and --mixup_alpha be >= 0")
    protocols.PROTOCOLS.get(self.protocol)

  def cv_protocol_obj(self):
    """The protocol of the cross-validated (and el2n / forgetting) networks."""
    from kernelcond.nets import protocols

    overrides = {"epochs": self.cv_epochs} if self.cv_epochs else {}
    return protocols.get_protocol(self.cv_protocol, **overrides)

  def eval_protocol(self, condition: str):
    """The evaluation protocol of one training condition."""
    from kernelcond.nets import protocols

    overrides = {"epochs": self.net_epochs} if self.net_epochs else {}
    if condition == "label_smoothing":
      overrides["label_smoothing"] = self.label_smoothing
    if condition == "mixup":
      overrides["mixup_alpha"] = self.mixup_alpha
    return protocols.get_protocol(self.protocol, **overrides)

  def record(self) -> dict:
    """The config.json record (conditions and net_seeds may grow between sessions)."""
    d = dataclasses.asdict(self)
    d["noise"] = str(knoise.parse_spec(self.noise))
    return {"experiment": "clean", **d}


def _fixed_protocols() -> list[str]:
  from kernelcond.nets import protocols
  return [n for n in protocols.PROTOCOLS.names() if protocols.PROTOCOLS.get(n).lr_rule == "fixed"]


class Detector(NamedTuple):
  """A registered detector: `compute(ctx) -> (Detection, probs or None, info)`."""
  compute: Callable
  probabilistic: bool


DETECTORS: Registry[Detector] = Registry("label-issue detector")


class _Context:
  """What detectors of one run share: data, labels, the config and cached KRR outputs."""

  def __init__(self, config: CleanConfig, x, given, num_classes: int):
    self.config, self.x, self.given, self.num_classes = config, x, given, num_classes
    self._krr = None
    self.count: Optional[int] = None  # cleanlab's issue count of the first probability detector

  def krr(self) -> tuple[np.ndarray, np.ndarray, dict]:
    """`(outputs, targets, info)` of KRR leave-one-out, computed once per run."""
    if self._krr is None:
      t0 = time.time()
      c = self.config
      targets = preprocess.one_hot(self.given, self.num_classes, center=True)
      loo_fn = make_krr_loo_fn(c, self.x, targets)
      outputs, info = krr_loo_outputs(loo_fn, self.given, self.num_classes, c.reg)
      info.update(kernel=c.kernel, kernel_type=c.kernel_type, rf_models=c.rf_models,
                  landmarks=c.landmarks if info["method"] == "nystrom" else None,
                  seconds=time.time() - t0)
      self._krr = (outputs, targets, info)
    return self._krr


def make_krr_loo_fn(config: CleanConfig, x, targets) -> Callable[[float], np.ndarray]:
  """`loo_fn(reg)` of the run's kernel: exact / Nystrom (`loo.make_loo_fn`) or random features."""
  from kernelcond import kernels

  if config.rf_models:
    import jax

    features = kernels.random_feature_fn(config.kernel, config.rf_models, config.rf_width,
                                         config.kernel_type)
    key = jax.random.PRNGKey(0)
    phi = np.concatenate([np.asarray(features(key, x[a:a + config.block_size]))
                          for a in range(0, len(x), config.block_size)])
    fn = loo.make_feature_loo_fn(phi, targets)
    fn.method = f"random_features(M={config.rf_models}, D={phi.shape[1]})"
    return fn
  kernel_fn = kernels.make_kernel_fn(config.kernel, config.kernel_backend)
  return loo.make_loo_fn(kernel_fn, x, targets, get=config.kernel_type,
                         block_size=config.block_size, method=config.loo_method,
                         num_landmarks=config.landmarks)


def _calibrated(outputs, given) -> tuple[np.ndarray, float]:
  temperature = fit_temperature(outputs, given)
  return softmax(outputs, temperature), temperature


def _probability_detector(outputs_fn):
  def compute(ctx: _Context):
    outputs, info = outputs_fn(ctx)
    probs, temperature = _calibrated(outputs, ctx.given)
    info = {**info, "temperature": temperature, "nll": nll(outputs, ctx.given, temperature),
            "filter_by": ctx.config.filter_by}
    detection = cleanlab_detection(probs, ctx.given, ctx.config.filter_by)
    if ctx.count is None:
      ctx.count = num_label_issues(probs, ctx.given)
    return detection, probs, info
  return compute


def _krr_outputs(ctx: _Context):
  outputs, _, info = ctx.krr()
  return outputs, dict(info)


def _cv_outputs(ctx: _Context):
  t0 = time.time()
  c = ctx.config
  protocol = c.cv_protocol_obj()
  outputs = cross_val_outputs(protocol, ctx.x, ctx.given, ctx.num_classes, c.folds)
  return outputs, {"protocol": protocol.to_dict(), "folds": c.folds, "seconds": time.time() - t0}


def _ranked_detector(score_fn):
  def compute(ctx: _Context):
    scores, suggested, info = score_fn(ctx)
    return top_k_detection(scores, ctx.count, suggested), None, {**info, "flag_count": ctx.count}
  return compute


def _krr_residual(ctx: _Context):
  outputs, targets, info = ctx.krr()
  return np.linalg.norm(targets - outputs, axis=1), outputs.argmax(axis=1), dict(info)


def _network_score(method: str):
  def score_fn(ctx: _Context):
    from kernelcond.prune import scores as kscores

    t0 = time.time()
    protocol = ctx.config.cv_protocol_obj()
    config = protocol.train_config(ctx.x.shape[1:], loss=protocol.hard_loss,
                                   spec=_protocol_spec(protocol, None))
    values = kscores.compute_scores(method, ctx.x, ctx.given, config, 1, config.epochs, 0,
                                    num_classes=ctx.num_classes)
    return values, ctx.given, {"protocol": protocol.to_dict(), "seconds": time.time() - t0}
  return score_fn


DETECTORS.register("krr_loo", Detector(_probability_detector(_krr_outputs), True))
DETECTORS.register("cv_net", Detector(_probability_detector(_cv_outputs), True))
DETECTORS.register("krr_residual", Detector(_ranked_detector(_krr_residual), False))
DETECTORS.register("el2n", Detector(_ranked_detector(_network_score("el2n")), False))
DETECTORS.register("forgetting", Detector(_ranked_detector(_network_score("forgetting")), False))


def subset_indices(labels, size: int, seed: int = 0) -> np.ndarray:
  """Sorted indices of a class-stratified random subset of `size` examples (0: all)."""
  n = len(labels)
  if size == 0 or size >= n:
    return np.arange(n)
  from kernelcond.prune import select

  return np.sort(select.random_subset(np.asarray(labels), size / n, seed))


def check_dataset(config: CleanConfig, dataset) -> None:
  """Refuses, before anything is written, what this dataset cannot run."""
  spec = knoise.parse_spec(config.noise)
  knoise.noise_matrix(spec, dataset.num_classes, config.noise_seed)
  if config.subset > dataset.num_train:
    raise ValueError(f"--subset={config.subset} exceeds the {dataset.num_train} training "
                     f"examples of {dataset.name}")
  n = config.subset or dataset.num_train
  if config.loo_method == "exact" and n > 40000 and not config.rf_models:
    raise ValueError(f"--loo_method=exact holds an (n, n) kernel and three n^2 factors: "
                     f"n={n} needs > {3 * 4 * n * n / 2**30:.0f} GB; use --loo_method=nystrom")


def _detection_path(workdir: str, name: str) -> str:
  return os.path.join(workdir, "detectors", f"{name}.npz")


def _load_or_detect(name: str, ctx: _Context, workdir: str, fingerprint: str):
  path = _detection_path(workdir, name)
  if os.path.exists(path):
    d = io.load_npz(path)
    import json
    if json.loads(str(d["fingerprint"])) != fingerprint:
      raise ValueError(f"{path} belongs to other data; use a new --workdir")
    probs = d["probs"] if d["probs"].ndim == 2 else None
    info = json.loads(str(d["info"]))
    if DETECTORS.get(name).probabilistic and ctx.count is None:
      ctx.count = num_label_issues(probs, ctx.given)
    return Detection(d["scores"], d["flags"], d["suggested"]), probs, info
  detection, probs, info = DETECTORS.get(name).compute(ctx)
  io.save_npz(path, scores=detection.scores, flags=detection.flags,
              suggested=detection.suggested,
              probs=probs if probs is not None else np.zeros(0), info=info,
              fingerprint=fingerprint)
  return detection, probs, info


def finished(config: CleanConfig, workdir: str) -> Optional[dict]:
  """The stored results if `config` is done in `workdir`, else None (writes nothing)."""
  path = os.path.join(workdir, "results.json")
  if not (os.path.exists(path) and os.path.exists(os.path.join(workdir, "config.json"))):
    return None
  io.check_run_config(workdir, config.record(), ignore=("conditions", "net_seeds"))
  results = io.load_json(path)
  evaluations = results.get("evaluations", {})
  for condition in config.conditions:
    done = evaluations.get(condition, {}).get("networks", {}).get(config.protocol, {})
    if not set(config.net_seeds) <= set(done.get("seeds", [])):
      return None
  return results if results.get("run", {}).get("complete") else None


def run(config: CleanConfig, dataset, workdir: str, log=lambda *a: None) -> dict:
  """Injects (or reads) noise, detects, flags, trains on noisy / cleaned / oracle sets.

  Writes in `workdir`: `config.json`; `noise.npz` (given and true labels of the
  used examples, the mask, the matrix, the dataset fingerprint); one
  `detectors/<name>.npz` per detector (scores, flags, suggested labels,
  calibrated probabilities); `results.json` (the shared schema: `evaluations`
  per training condition, `run` with `detection` metrics per detector, the
  flagged indices in the dataset's original order and its fingerprint);
  `pr_curve.png` (with ground truth) and `flagged.png` (the `grid` most suspicious
  examples by the first detector's score, flagged or not). A re-run reuses every
  stored part; another configuration in the workdir is refused.

  `log(message)` receives progress lines.
  """
  from kernelcond import experiment
  from kernelcond.nets import protocols

  start = time.time()
  check_dataset(config, dataset)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir {workdir} exists and is not a directory")
  os.makedirs(workdir, exist_ok=True)
  with io.exclusive_workdir(workdir):  # one writer at a time
    io.check_run_config(workdir, config.record(), ignore=("conditions", "net_seeds"))
    fingerprint = dataset.fingerprint()
    spec = knoise.parse_spec(config.noise)
    idx = subset_indices(dataset.y_train, config.subset)
    x = dataset.x_train[idx]
    noise_path = os.path.join(workdir, "noise.npz")
    if os.path.exists(noise_path):
      noisy, _ = knoise.load_noise(noise_path, fingerprint)
    else:
      noisy = knoise.corrupt(dataset.y_train[idx], spec, dataset.num_classes, config.noise_seed)
      knoise.save_noise(noise_path, noisy, spec=str(spec), seed=config.noise_seed,
                        fingerprint=fingerprint)
    log(f"noise {spec}: {int(noisy.mask.sum())} of {len(idx)} labels flipped")

    ctx = _Context(config, x, noisy.given, dataset.num_classes)
    detections, detection_record = {}, {}
    # Probability detectors first: the ranked ones flag as many as cleanlab counts from them.
    for name in sorted(config.detectors, key=lambda d: not DETECTORS.get(d).probabilistic):
      detection, _, info = _load_or_detect(name, ctx, workdir, fingerprint)
      detections[name] = detection
      entry = {"info": info, "n_flagged": int(detection.flags.sum())}
      if spec.has_ground_truth:
        entry.update(detection_metrics(detection.flags, detection.scores, noisy.mask))
      detection_record[name] = entry
      log(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                  if isinstance(v, float)))
    detections = {d: detections[d] for d in config.detectors}
    detection_record = {d: detection_record[d] for d in config.detectors}
    primary = config.detectors[0]
    flags = detections[primary].flags
    order = np.argsort(-detections[primary].scores, kind="stable")
    flagged_ranked = [int(i) for i in order if flags[i]]

    path = os.path.join(workdir, "results.json")
    stored = io.load_json(path) if os.path.exists(path) else {}
    evaluations = stored.get("evaluations", {})
    run_record = {
        "noise": str(spec), "noise_seed": config.noise_seed, "n_used": int(len(idx)),
        "n_noisy": int(noisy.mask.sum()), "noise_matrix": noisy.matrix.tolist(),
        "primary_detector": primary, "detection": detection_record,
        "flagged": {"indices": [int(idx[i]) for i in flagged_ranked],
                    "given_labels": [int(noisy.given[i]) for i in flagged_ranked],
                    "suggested_labels": [int(detections[primary].suggested[i])
                                         for i in flagged_ranked],
                    "order": f"most suspicious first by {primary}; indices into the dataset's "
                             "training set in its original order",
                    "dataset_fingerprint": fingerprint},
        "subset_indices": None if config.subset == 0 else [int(i) for i in idx]}
    if spec.has_ground_truth:
      run_record.update(detection_record[primary])
      pr_figure(os.path.join(workdir, "pr_curve.png"), detections, noisy.mask,
                f"{dataset.name}: {spec}, n={len(idx)}")
    flagged_figure(os.path.join(workdir, "flagged.png"), x, noisy, detections[primary],
                   order[:config.grid], dataset.class_names, spec.has_ground_truth,
                   f"{dataset.name}: most suspicious labels by {primary} ({spec}; "
                   f"* flagged)")

    def save(complete: bool):
      record = experiment.results_record("clean", config.record(), dataset, evaluations,
                                         {**run_record, "complete": complete,
                                          "wall_time_s": time.time() - start})
      io.save_json(path, record)
      return record

    save(False)
    keep_of = {"noisy": np.ones(len(idx), bool), "cleaned": ~flags, "oracle": ~noisy.mask,
               "true_labels": np.ones(len(idx), bool), "label_smoothing": np.ones(len(idx), bool),
               "mixup": np.ones(len(idx), bool)}
    for condition in config.conditions:
      protocol = config.eval_protocol(condition)
      done = evaluations.get(condition, {}).get("networks", {}).get(protocol.name, {})
      seeds = [s for s in config.net_seeds if s not in done.get("seeds", [])]
      if not seeds:
        continue
      keep = keep_of[condition]
      labels = noisy.true if condition == "true_labels" else noisy.given
      t0 = time.time()
      result = protocols.evaluate_protocol(protocol, x[keep], labels[keep], dataset.x_test,
                                           dataset.y_test, num_classes=dataset.num_classes,
                                           seeds=seeds)
      if done:  # merge with the seeds of an earlier session
        for key in ("accuracies", "seeds", "lrs", "steps_run"):
          result[key] = done[key] + result[key]
        result["mean"] = float(np.mean(result["accuracies"]))
        result["std"] = float(np.std(result["accuracies"]))
      evaluations[condition] = {"krr": None, "networks": {protocol.name: result}, "slapknn": None,
                                "support_size": int(keep.sum()), "label_kind": "hard",
                                "seconds": time.time() - t0}
      log(f"{condition}: {protocol.name} {result['mean']:.4f} ± {result['std']:.4f} "
          f"({int(keep.sum())} examples)")
      save(False)
    return save(True)


def pr_figure(path: str, detections: dict, mask, title: str) -> None:
  """Precision-recall curve of each detector's scores, its flagged operating point marked."""
  from sklearn import metrics
  from kernelcond import plots

  def draw(ax):
    for name, d in detections.items():
      precision, recall, _ = metrics.precision_recall_curve(mask, d.scores)
      line, = ax.plot(recall, precision, label=name)
      m = detection_metrics(d.flags, d.scores, mask)
      ax.plot([m["recall"]], [m["precision"]], "o", color=line.get_color())

  plots.curves_figure(path, draw, xlabel="recall (flipped labels found)",
                      ylabel="precision", title=title, title_size=9)


def flagged_figure(path: str, x, noisy: knoise.NoisyLabels, detection: Detection, rows,
                   class_names, known: bool, title: str) -> None:
  """A grid of the images `rows` titled with given and suggested labels (and the true label
  when known); flagged ones are starred, truly flipped ones red."""
  from kernelcond import plots

  plt = plots.pyplot()
  count = max(len(rows), 1)
  cols = min(8, count)
  nrows = -(-count // cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(1.6 * cols, 2.15 * nrows), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for ax, i in zip(axes.ravel(), rows):
    img = np.asarray(x[i], np.float32)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img[..., :3],
              cmap="gray" if img.shape[-1] == 1 else None)
    text = (f"{'*' if detection.flags[i] else ''}given {class_names[noisy.given[i]][:10]}\n"
            f"sugg. {class_names[detection.suggested[i]][:10]}")
    if known:
      text += f"\ntrue {class_names[noisy.true[i]][:10]}"
    ax.set_title(text, fontsize=6, color=("red" if known and noisy.mask[i] else "black"))
  fig.suptitle(title + (" (red: truly flipped)" if known else ""), fontsize=8)
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=90)
