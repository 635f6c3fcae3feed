"""Soft-label prototype k-nearest neighbours (SLaPkNN).

Sucholutsky & Schonlau, "'Less Than One'-Shot Learning: Learning N Classes From
M < N Samples", AAAI 2021, arXiv:2009.08449 (the classifier also used by their
follow-ups on prototype design, arXiv:2011.00228 and arXiv:2102.07834).

Each prototype `p_j` carries a soft label `y_j` (a distribution over c classes).
A test point x is scored from its k nearest prototypes N_k(x), each weighted by
the inverse of its Euclidean distance:

    score_c(x) = sum_{j in N_k(x)} y_{j,c} / ||x - p_j||_2,
    prediction(x) = argmax_c score_c(x).

With one-hot labels this is the distance-weighted kNN (and k=1 is 1-NN). Soft
labels let M prototypes separate more than M classes: two prototypes at 0 and 3
on a line with labels (0.6, 0.4, 0) and (0, 0.4, 0.6) give class 0 on (0, 1),
class 1 on (1, 2) and class 2 on (2, 3) (the paper's Figure 1 setting).

A test point at distance 0 from some of its k nearest prototypes takes the sum of
those prototypes' labels alone (the limit of the weights; scikit-learn's rule for
`weights='distance'`). Ties among equally distant k-th neighbours are broken by
prototype index.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np


def _as_matrix(x) -> jax.Array:
  """`(n, ...)` -> `(n, d)` float32."""
  x = jnp.asarray(x, jnp.float32)
  return x.reshape(x.shape[0], -1)


def _label_matrix(y_support, num_classes: Optional[int]) -> jax.Array:
  """Soft labels `(m, c)` as given, or integer labels `(m,)` as one-hot rows."""
  y = np.asarray(y_support)
  if y.ndim == 2:
    return jnp.asarray(y, jnp.float32)
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError("y_support must be integer labels (m,) or soft labels (m, c); "
                     f"got shape {y.shape} and dtype {y.dtype}")
  c = int(y.max()) + 1 if num_classes is None else int(num_classes)
  return jax.nn.one_hot(y, c, dtype=jnp.float32)


@functools.partial(jax.jit, static_argnames="k")
def _batch_scores(x_support: jax.Array, y_support: jax.Array, x_batch: jax.Array,
                  k: Optional[int]) -> jax.Array:
  """SLaPkNN scores `(b, c)` of a test batch `(b, d)` against `(m, d)` prototypes."""
  sq = (jnp.sum(x_batch**2, axis=1)[:, None] + jnp.sum(x_support**2, axis=1)[None, :]
        - 2 * jnp.matmul(x_batch, x_support.T, precision=jax.lax.Precision.HIGHEST))
  dist = jnp.sqrt(jnp.maximum(sq, 0.0))  # (b, m)
  if k is not None:
    neg_dist, idx = jax.lax.top_k(-dist, k)
    dist = -neg_dist  # (b, k)
  exact = dist == 0
  weights = jnp.where(exact.any(axis=1, keepdims=True), exact.astype(jnp.float32),
                      1.0 / jnp.where(exact, 1.0, dist))
  if k is None:
    return jnp.matmul(weights, y_support, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum("bk,bkc->bc", weights, y_support[idx],
                    precision=jax.lax.Precision.HIGHEST)


def slapknn_predict(x_support, y_support, x_test, k: Optional[int] = None,
                    batch_size: int = 1024, *, num_classes: Optional[int] = None) -> np.ndarray:
  """SLaPkNN class scores (arXiv:2009.08449): inverse-distance sums of soft labels.

  Args:
    x_support: prototypes `(m, ...)` (flattened to `(m, d)`).
    y_support: soft labels `(m, c)`, or integer labels `(m,)` (one-hot).
    x_test: test points `(n_test, ...)` with the prototypes' feature shape.
    k: number of nearest prototypes used; None (or k >= m) uses all of them.
    batch_size: test points scored per device call (the result does not depend
      on it).
    num_classes: c for integer `y_support` (default: its largest label + 1).

  Returns:
    `(n_test, c)` scores `sum_{j in N_k(x)} y_{j,c} / ||x - p_j||`; argmax over c
    is the prediction. Not normalised.

  Raises:
    ValueError: for k < 1, batch_size < 1, or inconsistent shapes.
  """
  xs = _as_matrix(x_support)
  ys = _label_matrix(y_support, num_classes)
  xt = _as_matrix(x_test)
  m = xs.shape[0]
  if ys.shape[0] != m:
    raise ValueError(f"{m} prototypes but {ys.shape[0]} labels")
  if xt.shape[1] != xs.shape[1]:
    raise ValueError(f"test points have {xt.shape[1]} features, prototypes {xs.shape[1]}")
  if k is not None and k < 1:
    raise ValueError(f"k must be positive or None, got {k}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  k = None if k is None or k >= m else int(k)
  # Centring on the prototypes' mean leaves distances unchanged and reduces the
  # cancellation in ||a||^2 + ||b||^2 - 2 a.b.
  centre = xs.mean(axis=0)
  xs, xt = xs - centre, xt - centre
  n = xt.shape[0]
  b = max(1, min(batch_size, n))
  padded = jnp.concatenate([xt, jnp.zeros(((-n) % b, xt.shape[1]), xt.dtype)])
  scores = [np.asarray(_batch_scores(xs, ys, padded[i:i + b], k))
            for i in range(0, padded.shape[0], b)]
  if not scores:
    return np.zeros((0, ys.shape[1]), np.float32)
  return np.concatenate(scores)[:n]


def slapknn_accuracy(x_support, y_support, x_test, y_test, k: Optional[int] = None,
                     batch_size: int = 1024) -> float:
  """Fraction of test points whose SLaPkNN prediction is their class.

  Args:
    x_support, y_support, x_test, k, batch_size: as in `slapknn_predict`.
    y_test: integer labels `(n_test,)` or one-hot / soft targets `(n_test, c)`
      (their argmax is the class).

  Returns:
    Accuracy in [0, 1].

  Raises:
    ValueError: as `slapknn_predict`, or for an empty test set.
  """
  y_test = np.asarray(y_test)
  labels = y_test.argmax(axis=1) if y_test.ndim == 2 else y_test
  if labels.size == 0:
    raise ValueError("no test points")
  num_classes = None
  if np.ndim(y_support) == 1:
    num_classes = int(max(np.max(y_support), labels.max())) + 1
  scores = slapknn_predict(x_support, y_support, x_test, k, batch_size,
                           num_classes=num_classes)
  return float(np.mean(scores.argmax(axis=1) == labels))
