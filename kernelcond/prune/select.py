"""Choosing which fraction of a training set to keep.

Every selector returns sorted int64 indices into the original example order
and keeps `max(1, round(fraction * n))` examples (rounding half up), with
`fraction` in (0, 1].

* `keep_by_score`: the highest scores (hardest first, Data Diet,
  arXiv:2107.07075), optionally skipping the very hardest `offset` fraction.
* `random_subset`: uniform, by default stratified by class.
* `herding`: per class, greedily matches the class mean of the features
  (herding, Welling 2009, in the mean-matching form of Chen, Welling, Smola,
  "Super-samples from kernel herding", arXiv:1203.3472).
* `k_center_greedy`: the greedy 2-approximation of the k-center problem
  (farthest-point traversal), Sener & Savarese, arXiv:1708.00489; global, or
  per class when labels are given.

"Stratified by class" means every class keeps its share of the kept examples:
class `c` of size `n_c` gets `floor(k * n_c / n)` plus one for the classes with
the largest remainders (ties to the lower class id), so the total is exactly `k`.

`select(method, ...)` picks a selector by name ('random', 'score', 'herding',
'kcenter').
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from kernelcond.registry import Registry



def _check_fraction(fraction: float) -> None:
  if not (isinstance(fraction, (int, float, np.number)) and 0 < fraction <= 1):
    raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")


def num_kept(n: int, fraction: float) -> int:
  """`max(1, round(fraction * n))` with halves rounded up."""
  _check_fraction(fraction)
  if n < 1:
    raise ValueError("cannot select from an empty set")
  return min(n, max(1, int(math.floor(fraction * n + 0.5))))


def _check_labels(labels, n: Optional[int] = None) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
    raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} "
                     f"and dtype {labels.dtype}")
  if n is not None and labels.shape[0] != n:
    raise ValueError(f"labels has {labels.shape[0]} entries, expected {n}")
  return labels


def _check_features(features) -> np.ndarray:
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 1:
    raise ValueError(f"features must have shape (n >= 1, d), got {features.shape}")
  if not np.isfinite(features).all():
    raise ValueError("features contain NaN or inf")
  return features


def stratified_counts(labels, k: int) -> dict[int, int]:
  """How many of `k` kept examples each class gets (largest-remainder rounding).

  Args:
    labels: `(n,)` integer labels.
    k: total to keep, `1 <= k <= n`.

  Returns:
    `{class: count}` for every class present, counts summing to `k`, each at
    most the class size.
  """
  labels = _check_labels(labels)
  classes, sizes = np.unique(labels, return_counts=True)
  quota = k * sizes / labels.shape[0]
  counts = np.floor(quota).astype(np.int64)
  remainder = quota - counts
  order = sorted(range(len(classes)), key=lambda i: (-remainder[i], classes[i]))
  for i in order[: k - int(counts.sum())]:
    counts[i] += 1
  return {int(c): int(m) for c, m in zip(classes, counts)}


def keep_by_score(scores, fraction: float, offset: float = 0.0) -> np.ndarray:
  """Keeps the highest-scoring examples, optionally skipping the very highest.

  Examples are ranked by decreasing score (ties: lower index first); the first
  `round(offset * n)` are dropped and the next `num_kept(n, fraction)` kept.
  Data Diet's offset experiment (arXiv:2107.07075, Sec. 5) drops the hardest
  examples, which are often mislabelled or ambiguous, at small fractions.

  Args:
    scores: `(n,)` finite scores, higher = harder.
    fraction: fraction to keep, in (0, 1].
    offset: fraction of hardest examples to skip, in [0, 1); `offset + fraction`
      must not exceed 1.

  Returns:
    Sorted int64 indices of the kept examples.
  """
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 1:
    raise ValueError(f"scores must be a vector, got shape {scores.shape}")
  if not np.isfinite(scores).all():
    raise ValueError("scores contain NaN or inf")
  n = scores.shape[0]
  k = num_kept(n, fraction)
  if not 0 <= offset < 1:
    raise ValueError(f"offset must lie in [0, 1), got {offset!r}")
  start = int(math.floor(offset * n + 0.5))
  if start + k > n:
    raise ValueError(f"offset {offset} + fraction {fraction} keeps examples past the end "
                     f"({start} skipped + {k} kept > {n})")
  order = np.argsort(-scores, kind="stable")
  return np.sort(order[start:start + k]).astype(np.int64)


def random_subset(labels, fraction: float, seed: int, class_balanced: bool = True) -> np.ndarray:
  """A uniformly random subset, stratified by class by default.

  Args:
    labels: `(n,)` integer labels.
    fraction: fraction to keep, in (0, 1].
    seed: seed of `np.random.default_rng`.
    class_balanced: keep each class's share (see the module docstring);
      otherwise draw `k` examples uniformly from all.

  Returns:
    Sorted int64 indices.
  """
  labels = _check_labels(labels)
  k = num_kept(labels.shape[0], fraction)
  rng = np.random.default_rng(seed)
  if not class_balanced:
    return np.sort(rng.choice(labels.shape[0], size=k, replace=False)).astype(np.int64)
  chosen = [rng.choice(np.flatnonzero(labels == c), size=m, replace=False)
            for c, m in stratified_counts(labels, k).items()]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def _herd(x: np.ndarray, k: int) -> np.ndarray:
  """Greedy mean matching: `k` row indices of `x` whose running mean tracks `mean(x)`.

  At step t the chosen row minimises `||mean(x) - (s + x_j) / (t + 1)||`, with `s`
  the sum of the rows chosen so far (ties: lowest index).
  """
  mu = x.mean(axis=0)
  sq_norms = np.sum(x * x, axis=1)
  total = np.zeros_like(mu)
  available = np.ones(x.shape[0], bool)
  chosen = np.empty(k, np.int64)
  for t in range(k):
    # ||(t+1) mu - s - x_j||^2 = ||x_j||^2 - 2 <x_j, (t+1) mu - s> + const.
    cost = sq_norms - 2.0 * (x @ ((t + 1) * mu - total))
    cost[~available] = np.inf
    j = int(np.argmin(cost))
    chosen[t], available[j] = j, False
    total += x[j]
  return chosen


def herding(features, labels, fraction: float) -> np.ndarray:
  """Per-class herding on features (greedy mean matching).

  In each class, examples are added one at a time so that the mean of the
  chosen features stays as close as possible to the class mean (Welling 2009;
  Chen, Welling, Smola, arXiv:1203.3472). Deterministic.

  Args:
    features: `(n, d)` features, e.g. penultimate activations
      (`scores.compute_features`).
    labels: `(n,)` integer labels; None treats all examples as one class.
    fraction: fraction to keep, in (0, 1]; classes keep their share.

  Returns:
    Sorted int64 indices.
  """
  features = _check_features(features)
  n = features.shape[0]
  labels = np.zeros(n, np.int64) if labels is None else _check_labels(labels, n)
  k = num_kept(n, fraction)
  chosen = []
  for c, m in stratified_counts(labels, k).items():
    members = np.flatnonzero(labels == c)
    if m:
      chosen.append(members[_herd(features[members], m)])
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def _k_center(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """Farthest-point traversal from a random first center: `k` row indices of `x`."""
  sq_norms = np.sum(x * x, axis=1)

  def sq_dist_to(j):
    return np.maximum(sq_norms - 2.0 * (x @ x[j]) + sq_norms[j], 0.0)

  first = int(rng.integers(x.shape[0]))
  chosen = [first]
  min_dist = sq_dist_to(first)
  min_dist[first] = -np.inf
  for _ in range(k - 1):
    j = int(np.argmax(min_dist))
    chosen.append(j)
    min_dist = np.minimum(min_dist, sq_dist_to(j))
    min_dist[chosen] = -np.inf
  return np.asarray(chosen, np.int64)


def k_center_greedy(features, fraction: float, seed: int, labels=None) -> np.ndarray:
  """Greedy k-center (core-set) selection on features.

  Starting from a random example, repeatedly adds the example farthest (in
  Euclidean distance) from its nearest chosen center: the 2-approximation of
  the k-center problem used as the core-set of Sener & Savarese,
  arXiv:1708.00489.

  Args:
    features: `(n, d)` features.
    fraction: fraction to keep, in (0, 1].
    seed: seed of `np.random.default_rng`, which draws the first center (of each
      class, in increasing class order).
    labels: None for one global run over all examples (as in the paper); `(n,)`
      integer labels to run separately in each class, each keeping its share.

  Returns:
    Sorted int64 indices.
  """
  features = _check_features(features)
  n = features.shape[0]
  k = num_kept(n, fraction)
  rng = np.random.default_rng(seed)
  if labels is None:
    return np.sort(_k_center(features, k, rng))
  labels = _check_labels(labels, n)
  chosen = []
  for c, m in stratified_counts(labels, k).items():
    members = np.flatnonzero(labels == c)
    if m:
      chosen.append(members[_k_center(features[members], m, rng)])
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def select(method: str, fraction: float, *, labels=None, scores=None, features=None,
           seed: int = 0, offset: float = 0.0, per_class: bool = True) -> np.ndarray:
  """Runs a selector by name.

  Args:
    method: 'random' (needs `labels`), 'score' (needs `scores`; `offset`),
      'herding' (needs `features`, `labels`) or 'kcenter' (needs `features`;
      per class when `per_class` and `labels` is given).
    fraction: fraction to keep, in (0, 1].
    labels: `(n,)` integer labels.
    scores: `(n,)` difficulty scores.
    features: `(n, d)` features.
    seed: seed of random and k-center.
    offset: fraction of highest scores skipped ('score').
    per_class: stratify 'random' and 'kcenter' by class.

  Returns:
    Sorted int64 indices.

  Raises:
    ValueError: for an unknown method (listing valid names), a missing input,
      or a fraction outside (0, 1].
  """
  needs, run = SELECTORS.get(method)
  _check_fraction(fraction)
  given = {"labels": labels, "scores": scores, "features": features}
  missing = [name for name in needs if given[name] is None]
  if missing:
    raise ValueError(f"selection method {method!r} needs {', '.join(missing)}")
  return run(fraction, labels=labels, scores=scores, features=features, seed=seed,
             offset=offset, per_class=per_class)


# name -> (inputs it needs, `run(fraction, **inputs) -> indices`).
SELECTORS: Registry = Registry("selection method")
SELECTORS.register("random", (("labels",), lambda f, labels, seed, per_class, **_:
                              random_subset(labels, f, seed, class_balanced=per_class)))
SELECTORS.register("score", (("scores",), lambda f, scores, offset, **_:
                             keep_by_score(scores, f, offset)))
SELECTORS.register("herding", (("features", "labels"), lambda f, features, labels, **_:
                               herding(features, labels, f)))
SELECTORS.register("kcenter", (("features",), lambda f, features, labels, seed, per_class, **_:
                               k_center_greedy(features, f, seed,
                                               labels if per_class else None)))
