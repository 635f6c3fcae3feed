"""Choosing which fraction of a training set to keep.

Every selector returns sorted int64 indices into the original example order
and keeps `max(1, round(fraction * n))` examples (rounding half up), with
`fraction` in (0, 1].

* `keep_by_score`: the highest scores (hardest first, Data Diet,
  arXiv:2107.07075), optionally skipping the very hardest `offset` fraction.
* `keep_easiest`: the lowest scores (easy first).
* `coverage_centric`: coverage-centric selection (CCS, Zheng et al.,
  arXiv:2210.15809, Algorithm 1), per class: drop the hardest `beta` fraction,
  cut the rest into score strata of equal width and spread the budget evenly
  over the strata (the smallest strata are taken whole first).
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

`select(method, ...)` picks a selector of `SELECTORS` by name: the score
strategies 'hardest', 'easiest' and 'ccs' (`SCORE_STRATEGIES`), and 'random',
'herding', 'kcenter', which use no score.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
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
  scores = _check_scores(scores)
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


def _check_scores(scores) -> np.ndarray:
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 1:
    raise ValueError(f"scores must be a vector, got shape {scores.shape}")
  if not np.isfinite(scores).all():
    raise ValueError("scores contain NaN or inf")
  return scores


def keep_easiest(scores, fraction: float) -> np.ndarray:
  """Keeps the lowest-scoring examples (easy first; ties: lower index first).

  Args:
    scores: `(n,)` finite scores, higher = harder.
    fraction: fraction to keep, in (0, 1].

  Returns:
    Sorted int64 indices of the kept examples.
  """
  scores = _check_scores(scores)
  k = num_kept(scores.shape[0], fraction)
  return np.sort(np.argsort(scores, kind="stable")[:k]).astype(np.int64)


CCS_STRATA = 50  # strata per class (the authors' code uses 50)


def ccs_beta(fraction: float) -> float:
  """The hard-cutoff rate `beta` CCS uses when none is given, by pruning rate `1 - fraction`.

  A stated rule, not a search: `beta = 0` up to 50% pruned (CCS is then plain
  stratified sampling) and rising linearly to `beta = 0.3` at 90% pruned, the
  value of the authors' CIFAR-10 90% command (arXiv:2210.15809; their README):
  `beta = clip(0.75 * (rate - 0.5), 0, 0.3)`.
  """
  _check_fraction(fraction)
  return float(np.clip(0.75 * ((1.0 - fraction) - 0.5), 0.0, 0.3))


def allocate_budget(sizes, budget: int) -> np.ndarray:
  """Spreads `budget` picks over strata of `sizes` as evenly as they allow.

  Strata are visited from the smallest (ties: lower index); each gets
  `min(size, remaining // strata_left)`, so a stratum smaller than its fair share
  is taken whole and its unused share passes to the larger ones
  (arXiv:2210.15809, Algorithm 1). The result sums to `budget` whenever
  `budget <= sum(sizes)`.

  Args:
    sizes: `(s,)` non-negative stratum sizes.
    budget: picks to allocate, `0 <= budget <= sum(sizes)`.

  Returns:
    `(s,)` int64 picks per stratum, each at most its size.
  """
  sizes = np.asarray(sizes, np.int64)
  if budget < 0 or budget > sizes.sum():
    raise ValueError(f"budget {budget} must lie in [0, {int(sizes.sum())}]")
  picks = np.zeros_like(sizes)
  left = int(budget)
  order = np.argsort(sizes, kind="stable")
  for i, s in enumerate(order):
    picks[s] = min(int(sizes[s]), left // (len(order) - i))
    left -= int(picks[s])
  return picks


def strata(scores, num_strata: int = CCS_STRATA) -> np.ndarray:
  """`(n,)` stratum ids in `[0, num_strata)`: equal-width score ranges from min to max."""
  scores = _check_scores(scores)
  low, high = scores.min(), scores.max()
  if high == low:
    return np.zeros(scores.shape[0], np.int64)
  ids = np.floor((scores - low) / (high - low) * num_strata).astype(np.int64)
  return np.minimum(ids, num_strata - 1)


def coverage_centric(scores, labels, fraction: float, seed: int, beta: Optional[float] = None,
                     num_strata: int = CCS_STRATA) -> np.ndarray:
  """Coverage-centric coreset selection (CCS, Zheng et al., arXiv:2210.15809).

  Per class (each keeping its share of `num_kept(n, fraction)`, see the module
  docstring): the hardest `round(beta * n_c)` examples are dropped (possibly
  mislabelled; fewer when the class would not keep its share otherwise); the
  rest are cut into `num_strata` equal-width score ranges (`strata`); the class
  budget is spread over them by `allocate_budget`; each stratum's picks are drawn
  uniformly at random. Unlike the authors' code the strata are per class, so
  every class keeps its share.

  Args:
    scores: `(n,)` finite scores, higher = harder.
    labels: `(n,)` integer labels (None: one class).
    fraction: fraction to keep, in (0, 1].
    seed: seed of `np.random.default_rng`.
    beta: hard-cutoff rate in [0, 1); None: `ccs_beta(fraction)`.
    num_strata: strata per class.

  Returns:
    Sorted int64 indices.
  """
  scores = _check_scores(scores)
  n = scores.shape[0]
  labels = np.zeros(n, np.int64) if labels is None else _check_labels(labels, n)
  beta = ccs_beta(fraction) if beta is None else float(beta)
  if not 0 <= beta < 1:
    raise ValueError(f"CCS beta must lie in [0, 1), got {beta}")
  rng = np.random.default_rng(seed)
  chosen = []
  for c, budget in stratified_counts(labels, num_kept(n, fraction)).items():
    members = np.flatnonzero(labels == c)
    by_hardness = members[np.argsort(-scores[members], kind="stable")]
    cut = min(int(math.floor(beta * len(members) + 0.5)), len(members) - budget)
    pool = by_hardness[cut:]
    ids = strata(scores[pool], num_strata)
    picks = allocate_budget(np.bincount(ids, minlength=num_strata), budget)
    for s in np.flatnonzero(picks):
      chosen.append(rng.choice(np.sort(pool[ids == s]), size=picks[s], replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int64)


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


@jax.jit
def _herd_chosen(x: jax.Array, k) -> jax.Array:
  """`(m,)` int32: the first `k` entries are the rows chosen by greedy mean matching."""
  mu = jnp.mean(x, axis=0)
  sq_norms = jnp.sum(x * x, axis=1)

  def step(t, carry):
    total, available, chosen = carry
    # ||(t+1) mu - s - x_j||^2 = ||x_j||^2 - 2 <x_j, (t+1) mu - s> + const.
    cost = sq_norms - 2.0 * (x @ ((t + 1) * mu - total))
    j = jnp.argmin(jnp.where(available, cost, jnp.inf))
    return total + x[j], available.at[j].set(False), chosen.at[t].set(j)

  init = (jnp.zeros_like(mu), jnp.ones(x.shape[0], bool), jnp.zeros(x.shape[0], jnp.int32))
  return jax.lax.fori_loop(0, k, step, init)[2]


def _herd(x: np.ndarray, k: int) -> np.ndarray:
  """Greedy mean matching: `k` row indices of `x` whose running mean tracks `mean(x)`.

  At step t the chosen row minimises `||mean(x) - (s + x_j) / (t + 1)||`, with `s`
  the sum of the rows chosen so far (ties: lowest index). One compiled loop
  (float32) per class size.
  """
  return np.asarray(_herd_chosen(jnp.asarray(x, jnp.float32), k))[:k].astype(np.int64)


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


@jax.jit
def _k_center_chosen(x: jax.Array, k, first) -> jax.Array:
  """`(m,)` int32: the first `k` entries are the farthest-point traversal from `first`."""
  sq_norms = jnp.sum(x * x, axis=1)

  def sq_dist_to(j):
    return jnp.maximum(sq_norms - 2.0 * (x @ x[j]) + sq_norms[j], 0.0)

  def step(t, carry):
    min_dist, chosen = carry
    j = jnp.argmax(min_dist)
    return (jnp.minimum(min_dist, sq_dist_to(j)).at[j].set(-jnp.inf), chosen.at[t].set(j))

  init = (sq_dist_to(first).at[first].set(-jnp.inf),
          jnp.zeros(x.shape[0], jnp.int32).at[0].set(first))
  return jax.lax.fori_loop(1, k, step, init)[1]


def _k_center(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """Farthest-point traversal from a random first center: `k` row indices of `x`
  (one compiled loop, float32, per class size)."""
  first = int(rng.integers(x.shape[0]))
  chosen = _k_center_chosen(jnp.asarray(x, jnp.float32), k, first)
  return np.asarray(chosen)[:k].astype(np.int64)


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
           seed: int = 0, offset: float = 0.0, beta: Optional[float] = None,
           per_class: bool = True) -> np.ndarray:
  """Runs a selector by name.

  Args:
    method: 'hardest' (needs `scores`; `offset`), 'easiest' (`scores`), 'ccs'
      (`scores`, `labels`; `beta`, `seed`), 'random' (`labels`), 'herding'
      (`features`, `labels`) or 'kcenter' (`features`; per class when
      `per_class` and `labels` is given).
    fraction: fraction to keep, in (0, 1].
    labels: `(n,)` integer labels.
    scores: `(n,)` difficulty scores.
    features: `(n, d)` features.
    seed: seed of random, CCS and k-center.
    offset: fraction of highest scores skipped ('hardest').
    beta: CCS hard-cutoff rate (None: `ccs_beta(fraction)`).
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
             offset=offset, beta=beta, per_class=per_class)


# name -> (inputs it needs, `run(fraction, **inputs) -> indices`).
SELECTORS: Registry = Registry("selection method")
SELECTORS.register("hardest", (("scores",), lambda f, scores, offset, **_:
                               keep_by_score(scores, f, offset)))
SELECTORS.register("easiest", (("scores",), lambda f, scores, **_: keep_easiest(scores, f)))
SELECTORS.register("ccs", (("scores", "labels"), lambda f, scores, labels, seed, beta, **_:
                           coverage_centric(scores, labels, f, seed, beta)))
SELECTORS.register("random", (("labels",), lambda f, labels, seed, per_class, **_:
                              random_subset(labels, f, seed, class_balanced=per_class)))
SELECTORS.register("herding", (("features", "labels"), lambda f, features, labels, **_:
                               herding(features, labels, f)))
SELECTORS.register("kcenter", (("features",), lambda f, features, labels, seed, per_class, **_:
                               k_center_greedy(features, f, seed,
                                               labels if per_class else None)))
# The selectors that rank by a difficulty score (`prune.py --strategy`).
SCORE_STRATEGIES = ("hardest", "easiest", "ccs")
