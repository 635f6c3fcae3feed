"""Synthetic label noise with a seed and a saved ground-truth mask.

A noise model is a column-stochastic noise matrix `T` of shape `(c, c)`,

    T[i, j] = P(given label = i | true label = j),      columns sum to 1,

the convention of Confident Learning (Northcutt, Jiang & Chuang, JAIR 2021,
arXiv:1911.00068, section 2) and of cleanlab's `noise_matrix`. Kinds, parsed
from a spec string by `parse_spec` (no `eval`):

* `none`: `T = I` (real data; no ground truth is claimed).
* `symmetric:R`: every label moves with rate `R` to one of the other `c - 1`
  classes chosen uniformly, `T = (1 - R) I + R / (c - 1) (1 - I)`, so a
  fraction `R` of the labels is wrong (flips to the same class are not counted
  as noise, unlike the "uniform" convention where the wrong fraction is
  `R (c - 1) / c`).
* `pairs:R`: class `j` moves to class `(j + 1) mod c` with rate `R` ("pair
  flip", Han et al., Co-teaching, arXiv:1804.06872).
* `classcond:R` or `classcond:R:S`: the class-conditional setting of the
  Confident Learning paper's CIFAR-10 benchmark (section 5): the mean noise
  rate is `R` (trace of `T` = `c (1 - R)`) and a fraction `S` ("sparsity", the
  paper uses 0, 0.2, 0.4, 0.6) of the off-diagonal entries of each column is
  zero. Here every diagonal entry is exactly `1 - R` (the paper draws the
  diagonal at random under the trace constraint) and each column's off-diagonal
  mass `R` is spread over its `round((1 - S)(c - 1))` (at least one) non-zero
  entries with Dirichlet(1) weights; the entries that are zero are drawn
  uniformly. The matrix depends on the seed.
* a path to a `.npy`, `.csv` or `.txt` file holding `T` (`(c, c)`,
  non-negative, columns summing to 1; comma- or whitespace-separated text).

Labels are moved by `apply_noise(labels, T, seed)` with exact counts, as the
paper's `generate_noisy_labels` does: of the `n_j` examples of class `j`, a
random set of `round(T[i, j] n_j)` (largest-remainder rounding, so counts sum to
`n_j`) is given label `i`. The result keeps the true labels and the mask
`given != true`; `save_noise` / `load_noise` store them with the dataset
fingerprint so a later run cannot pair them with other data.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple, Optional

import numpy as np

from kernelcond import io

KINDS = ("none", "symmetric", "pairs", "classcond")
MATRIX_SUFFIXES = (".npy", ".csv", ".txt")
_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
  """A parsed noise spec (see the module docstring).

  Attributes:
    kind: one of `KINDS`, or 'file' for a noise-matrix file.
    rate: the noise rate `R` (0 for 'none' and 'file').
    sparsity: fraction of zero off-diagonal entries per column ('classcond').
    path: the noise-matrix file ('file').
  """
  kind: str
  rate: float = 0.0
  sparsity: float = 0.0
  path: Optional[str] = None

  def __str__(self) -> str:
    if self.kind == "file":
      return str(self.path)
    if self.kind == "none":
      return "none"
    if self.kind == "classcond":
      return f"classcond:{self.rate:g}:{self.sparsity:g}"
    return f"{self.kind}:{self.rate:g}"

  @property
  def has_ground_truth(self) -> bool:
    """Whether labels are corrupted here (so flips are known); False for 'none'."""
    return self.kind != "none"


def _is_path(text: str) -> bool:
  return text.endswith(MATRIX_SUFFIXES) or os.sep in text


def _fraction(text: str, what: str, spec: str, high_open: bool) -> float:
  try:
    value = float(text)
  except ValueError:
    raise ValueError(f"noise spec {spec!r}: {what} must be a number, got {text!r}") from None
  ok = 0 <= value < 1 if high_open else 0 <= value <= 1
  if not ok:
    raise ValueError(f"noise spec {spec!r}: {what} must lie in [0, 1{')' if high_open else ']'},"
                     f" got {value}")
  return value


def parse_spec(spec: str) -> NoiseSpec:
  """Parses 'none', 'symmetric:0.2', 'pairs:0.4', 'classcond:0.4:0.2' or a matrix file path.

  Raises:
    ValueError: for an unknown kind (listing the valid ones), a malformed rate
      or a file path with another suffix.
  """
  spec = str(spec).strip()
  if _is_path(spec):
    if not spec.endswith(MATRIX_SUFFIXES):
      raise ValueError(f"noise-matrix file {spec!r} must end in {', '.join(MATRIX_SUFFIXES)}")
    return NoiseSpec("file", path=spec)
  kind, *args = spec.split(":")
  if kind not in KINDS:
    raise ValueError(f"Unknown noise kind {kind!r} in {spec!r}; valid: {', '.join(KINDS)} "
                     "(e.g. symmetric:0.2, pairs:0.4, classcond:0.4:0.2) or a noise-matrix "
                     f"file ({', '.join(MATRIX_SUFFIXES)})")
  wanted = {"none": (0, 0), "symmetric": (1, 1), "pairs": (1, 1), "classcond": (1, 2)}[kind]
  if not wanted[0] <= len(args) <= wanted[1]:
    raise ValueError(f"noise spec {spec!r}: {kind} takes {wanted[0]}-{wanted[1]} ':'-separated "
                     f"value(s), got {len(args)}")
  if kind == "none":
    return NoiseSpec("none")
  rate = _fraction(args[0], "the noise rate", spec, high_open=True)
  sparsity = _fraction(args[1], "the sparsity", spec, high_open=False) if len(args) > 1 else 0.0
  return NoiseSpec(kind, rate=rate, sparsity=sparsity)


def check_matrix(matrix, num_classes: Optional[int] = None, where: str = "noise matrix"):
  """`matrix` as float64 `(c, c)` after checking it is column-stochastic.

  Raises:
    ValueError: naming `where` for a wrong shape, negative or non-finite
      entries, or columns that do not sum to 1.
  """
  t = np.asarray(matrix, np.float64)
  if t.ndim != 2 or t.shape[0] != t.shape[1]:
    raise ValueError(f"{where} must be square (c, c), got shape {t.shape}")
  if num_classes is not None and t.shape[0] != num_classes:
    raise ValueError(f"{where} is {t.shape[0]}x{t.shape[0]} but the dataset has "
                     f"{num_classes} classes")
  if not np.all(np.isfinite(t)) or np.any(t < 0):
    raise ValueError(f"{where} must hold finite non-negative probabilities")
  sums = t.sum(axis=0)
  if np.any(np.abs(sums - 1) > 1e-4):
    raise ValueError(f"{where}: columns must sum to 1 (T[i, j] = P(given i | true j)); "
                     f"column sums {np.round(sums, 4).tolist()}")
  return t / sums


def read_matrix(path: str, num_classes: Optional[int] = None) -> np.ndarray:
  """Reads a noise matrix from a `.npy`, `.csv` or `.txt` file and checks it."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"No such noise-matrix file: {path}")
  try:
    if path.endswith(".npy"):
      t = np.load(path, allow_pickle=False)
    else:
      with open(path) as f:
        text = f.read().replace(",", " ")
      t = np.array([[float(v) for v in line.split()] for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")])
  except ValueError as e:
    raise ValueError(f"noise-matrix file {path} is not a numeric matrix: {e}") from None
  return check_matrix(t, num_classes, f"noise-matrix file {path}")


def symmetric_matrix(num_classes: int, rate: float) -> np.ndarray:
  """`(1 - R) I + R / (c - 1) (1 - I)`: flips to each other class alike."""
  c = int(num_classes)
  off = rate / (c - 1)
  return (1 - rate - off) * np.eye(c) + off * np.ones((c, c))


def pairs_matrix(num_classes: int, rate: float) -> np.ndarray:
  """Class `j` keeps its label with `1 - R` and moves to `(j + 1) mod c` with `R`."""
  c = int(num_classes)
  return (1 - rate) * np.eye(c) + rate * np.roll(np.eye(c), 1, axis=0)


def classcond_matrix(num_classes: int, rate: float, sparsity: float, seed: int) -> np.ndarray:
  """A random class-conditional matrix of mean noise `rate` and off-diagonal `sparsity`.

  Diagonal `1 - rate`; in each column `round((1 - sparsity)(c - 1))` (at least
  one) off-diagonal entries, chosen uniformly, share `rate` with Dirichlet(1)
  weights; the others are 0 (module docstring).
  """
  c = int(num_classes)
  rng = np.random.default_rng([int(seed), 11])
  t = (1 - rate) * np.eye(c)
  nonzero = max(1, int(round((1 - sparsity) * (c - 1))))
  for j in range(c):
    others = np.delete(np.arange(c), j)
    chosen = rng.choice(others, size=nonzero, replace=False)
    t[chosen, j] = rate * rng.dirichlet(np.ones(nonzero))
  return t


def noise_matrix(spec, num_classes: int, seed: int = 0) -> np.ndarray:
  """The `(c, c)` noise matrix of `spec` (a `NoiseSpec` or spec string)."""
  spec = parse_spec(spec) if isinstance(spec, str) else spec
  c = int(num_classes)
  if c < 2:
    raise ValueError(f"label noise needs at least 2 classes, got {c}")
  if spec.kind == "none":
    return np.eye(c)
  if spec.kind == "symmetric":
    return symmetric_matrix(c, spec.rate)
  if spec.kind == "pairs":
    return pairs_matrix(c, spec.rate)
  if spec.kind == "classcond":
    return classcond_matrix(c, spec.rate, spec.sparsity, seed)
  return read_matrix(spec.path, c)


class NoisyLabels(NamedTuple):
  """Labels after noise, with the ground truth.

  Attributes:
    given: `(n,)` int32 labels after noise (what a learner sees).
    true: `(n,)` int32 original labels.
    mask: `(n,)` bool, `given != true`.
    matrix: `(c, c)` the noise matrix used.
  """
  given: np.ndarray
  true: np.ndarray
  mask: np.ndarray
  matrix: np.ndarray


def transition_counts(n_class: int, column) -> np.ndarray:
  """`(c,)` integer counts summing to `n_class`, closest to `column * n_class`.

  Largest-remainder rounding: floors first, then one more for the largest
  fractional parts (ties by class index).
  """
  want = np.asarray(column, np.float64) * n_class
  counts = np.floor(want + _TOL).astype(np.int64)
  short = int(n_class - counts.sum())
  if short > 0:
    order = np.argsort(-(want - counts), kind="stable")
    counts[order[:short]] += 1
  return counts


def apply_noise(labels, matrix, seed: int = 0) -> NoisyLabels:
  """Moves exactly `round(T[i, j] n_j)` examples of each class `j` to label `i`.

  Args:
    labels: `(n,)` integer true labels in `[0, c)`.
    matrix: `(c, c)` column-stochastic noise matrix.
    seed: which examples move (`np.random.default_rng([seed, j])` for class `j`).

  Returns:
    `NoisyLabels(given, true, mask, matrix)`.
  """
  true = np.asarray(labels)
  if true.ndim != 1 or not np.issubdtype(true.dtype, np.integer):
    raise ValueError(f"labels must be (n,) integers, got {true.shape} {true.dtype}")
  t = check_matrix(matrix)
  c = t.shape[0]
  if true.size and (true.min() < 0 or true.max() >= c):
    raise ValueError(f"labels must lie in [0, {c}) for a {c}x{c} noise matrix")
  true = true.astype(np.int32)
  given = true.copy()
  for j in range(c):
    members = np.flatnonzero(true == j)
    order = np.random.default_rng([int(seed), j]).permutation(members)
    counts = transition_counts(len(members), t[:, j])
    targets = np.repeat(np.arange(c, dtype=np.int32), counts)
    given[order] = targets
  return NoisyLabels(given, true, given != true, t)


def corrupt(labels, spec, num_classes: int, seed: int = 0) -> NoisyLabels:
  """`apply_noise(labels, noise_matrix(spec, num_classes, seed), seed)`."""
  return apply_noise(labels, noise_matrix(spec, num_classes, seed), seed)


def save_noise(path: str, noisy: NoisyLabels, *, spec: str, seed: int, fingerprint: str) -> None:
  """Stores the given and true labels, the mask, the matrix and what made them."""
  io.save_npz(path, given=noisy.given, true=noisy.true, mask=noisy.mask, matrix=noisy.matrix,
              spec=str(spec), seed=np.asarray(int(seed)), fingerprint=fingerprint)


def load_noise(path: str, fingerprint: Optional[str] = None) -> tuple[NoisyLabels, dict]:
  """Reads a `save_noise` file; refuses one made for another dataset.

  Returns:
    `(NoisyLabels, {'spec', 'seed', 'fingerprint'})`.
  """
  import json

  data = io.load_npz(path)
  missing = {"given", "true", "mask", "matrix", "spec", "seed", "fingerprint"} - set(data)
  if missing:
    raise ValueError(f"{path} is not a label-noise file (lacks {sorted(missing)})")
  meta = {"spec": json.loads(str(data["spec"])), "seed": int(data["seed"]),
          "fingerprint": json.loads(str(data["fingerprint"]))}
  if fingerprint is not None and meta["fingerprint"] != fingerprint:
    raise ValueError(f"label-noise file {path} was made for dataset {meta['fingerprint']}, "
                     f"not {fingerprint}")
  noisy = NoisyLabels(data["given"].astype(np.int32), data["true"].astype(np.int32),
                      data["mask"].astype(bool), data["matrix"])
  return noisy, meta
