"""Training targets and per-example losses of the finite networks.

Targets are integer labels `(n,)` or float targets `(n, c)` (soft or learned
labels, e.g. the `y_support` of KIP, arXiv:2011.00050). Every loss below maps
logits `(n, c)` and float targets `(n, c)` to per-example losses `(n,)`:

* 'xent': softmax cross-entropy `-sum_k t_k log softmax(z)_k` against the
  targets as given (one-hot rows for integer labels; float targets are assumed
  to be distributions already, e.g. after label smoothing or mixup).
* 'soft_xent': 'xent' against `distribution(t)`: the targets with negative
  entries set to 0 and each row divided by its sum. Learned labels (which may
  be negative and of any scale) thus become distributions without a softmax
  temperature; a row with no positive entry has no distribution and is refused
  by `check_soft_targets`. For one-hot rows 'soft_xent' equals 'xent'.
* 'mse': `0.5 * ||z - t||^2`, summed over classes.

Training-time target transforms, applied in this order by `train.train_step`:
one-hot (integer labels), `distribution` (for 'soft_xent'), label smoothing
(Szegedy et al., arXiv:1512.00567), mixup (Zhang et al., arXiv:1710.09412).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from kernelcond.registry import Registry

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
LOSSES: Registry[LossFn] = Registry("loss")


def targets(y, num_classes: int) -> jax.Array:
  """Integer labels `(n,)` -> one-hot float32 `(n, c)`; float targets `(n, c)` as float32."""
  if jnp.issubdtype(y.dtype, jnp.integer):
    return jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
  return y.astype(jnp.float32)


def distribution(t) -> jax.Array:
  """Rows of `t` `(n, c)` with negatives set to 0, divided by their sums (see 'soft_xent')."""
  positive = jnp.maximum(t, 0.0)
  total = jnp.sum(positive, axis=-1, keepdims=True)
  return positive / jnp.where(total > 0, total, 1.0)


@LOSSES.register("xent")
def softmax_cross_entropy(logits, t) -> jax.Array:
  """`-sum_k t_k log softmax(logits)_k` per example: `(n, c), (n, c) -> (n,)`."""
  return -jnp.sum(t * jax.nn.log_softmax(logits), axis=-1)


@LOSSES.register("soft_xent")
def soft_cross_entropy(logits, t) -> jax.Array:
  """Cross-entropy against `distribution(t)`: `(n, c), (n, c) -> (n,)`."""
  return softmax_cross_entropy(logits, distribution(t))


@LOSSES.register("mse")
def squared_error(logits, t) -> jax.Array:
  """`0.5 * ||logits - t||^2` per example: `(n, c), (n, c) -> (n,)`."""
  return 0.5 * jnp.sum(jnp.square(logits - t), axis=-1)


def per_example_loss(logits, y, loss: str) -> jax.Array:
  """Loss of every example.

  Args:
    logits: `(n, c)`.
    y: `(n,)` integer labels or `(n, c)` float targets.
    loss: a name in `LOSSES` ('xent', 'soft_xent', 'mse').

  Returns:
    `(n,)` losses.
  """
  return LOSSES.get(loss)(logits, targets(y, logits.shape[-1]))


def smooth_labels(t, smoothing) -> jax.Array:
  """Label smoothing: `(1 - smoothing) * t + smoothing / c` for `t` `(n, c)`.

  `smoothing` may be a traced scalar (0 leaves `t` unchanged).
  """
  return (1.0 - smoothing) * t + smoothing / t.shape[-1]


def mixup(key, x, t, alpha):
  """Mixup (Zhang et al., arXiv:1710.09412) of a batch with a permutation of itself.

  One `lam ~ Beta(alpha, alpha)` per batch; inputs and targets become
  `lam * a + (1 - lam) * a[perm]`. `alpha` may be a traced scalar: for
  `alpha <= 0`, `lam = 1` and the batch is returned unchanged (bit for bit).

  Args:
    key: a PRNG key.
    x: `(b, ...)` inputs.
    t: `(b, c)` float targets.
    alpha: the Beta distribution's parameter.

  Returns:
    `(x_mixed, t_mixed, lam)`.
  """
  key_lam, key_perm = jax.random.split(key)
  on = alpha > 0
  lam = jax.random.beta(key_lam, jnp.where(on, alpha, 1.0), jnp.where(on, alpha, 1.0))
  lam = jnp.where(on, lam, 1.0).astype(jnp.float32)
  perm = jax.random.permutation(key_perm, x.shape[0])
  mix = lambda a: lam * a + (1.0 - lam) * a[perm]
  return mix(x), mix(t), lam


def correct(logits, y) -> jax.Array:
  """`(n,)` 1.0 where argmax(logits) equals the label (or the argmax of the target row)."""
  labels = y if jnp.issubdtype(y.dtype, jnp.integer) else jnp.argmax(y, axis=-1)
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def check_soft_targets(y, loss: str, name: str = "y_train") -> None:
  """Refuses float targets `(n, c)` that `loss` cannot use ('soft_xent': a row without a positive entry).

  Raises:
    ValueError: naming the first bad row.
  """
  y = np.asarray(y)
  if loss == "soft_xent" and y.ndim == 2:
    bad = np.flatnonzero(~(y > 0).any(axis=1))
    if bad.size:
      raise ValueError(f"{name} row {bad[0]} has no positive entry: 'soft_xent' needs targets "
                       "that normalise to a distribution (use loss='mse' for such labels)")


def rescale_targets(y) -> np.ndarray:
  """Float targets scaled by one positive factor to the RMS of centred one-hot labels.

  KIP's learned labels and Label Solve's labels have an arbitrary overall scale
  (KRR predictions, hence KRR accuracy, are linear in the labels): after long
  KIP runs their entries reach tens, and MSE training of a finite network on
  them diverges at learning rates that suit one-hot targets. Dividing by their
  root-mean-square and multiplying by `sqrt(c - 1) / c` (the RMS of centred
  one-hot rows of `c` classes) keeps every row's argmax and relative sizes.

  Args:
    y: `(n, c)` float targets with a non-zero entry.

  Returns:
    `(n, c)` float32 targets with the RMS of centred one-hot rows.
  """
  y = np.asarray(y, np.float32)
  if y.ndim != 2 or y.shape[1] < 2:
    raise ValueError(f"targets must be (n, classes >= 2), got shape {y.shape}")
  rms = float(np.sqrt(np.mean(np.square(y))))
  if not rms > 0 or not np.isfinite(rms):
    raise ValueError(f"targets have RMS {rms}; cannot rescale")
  c = y.shape[1]
  return y * np.float32(np.sqrt(c - 1) / c / rms)


def centred_one_hot(labels, num_classes: int) -> np.ndarray:
  """`(n,)` integer labels -> `(n, c)` float32 rows `onehot - 1/c` (KIP's centred labels)."""
  labels = np.asarray(labels)
  return np.eye(num_classes, dtype=np.float32)[labels] - np.float32(1.0 / num_classes)
