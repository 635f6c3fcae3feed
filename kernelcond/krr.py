"""Kernel ridge regression with the relative regulariser used throughout kernelcond.

Convention (the only one in this package; KIP and Label Solve use it too):

    alpha = (K + reg * trace(K) / n * I)^{-1} y,        prediction = K_* alpha,

with `K = k_train_train` of shape `(n, n)`. `reg` is scale-free: it means the
same for an NTK and an NNGP, for any depth and for any input scale. This is the
form of Nguyen et al. (arXiv:2011.00050, KIP), written out once here.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def regularized(k_train_train: jax.Array, reg: float) -> jax.Array:
  """`K + reg * trace(K) / n * I`: the one regularisation rule of kernelcond."""
  k_train_train = jnp.asarray(k_train_train)
  n = k_train_train.shape[0]
  return k_train_train + (reg * jnp.trace(k_train_train) / n) * jnp.eye(n, dtype=k_train_train.dtype)


def solve(k_train_train: jax.Array, y_train: jax.Array, reg: float = 1e-6) -> jax.Array:
  """Returns `alpha = (K + reg tr(K)/n I)^{-1} y_train` by Cholesky. Pure and jit/grad-able.

  Args:
    k_train_train: `(n, n)` symmetric PSD kernel.
    y_train: `(n, c)` targets.
    reg: relative ridge, see module docstring.
  """
  factor = jax.scipy.linalg.cho_factor(regularized(k_train_train, reg), lower=True)
  return jax.scipy.linalg.cho_solve(factor, y_train)


def predict(k_test_train: jax.Array, k_train_train: jax.Array, y_train: jax.Array,
            reg: float = 1e-6) -> jax.Array:
  """KRR predictions `k_test_train @ alpha`, shape `(m, c)`. Pure; differentiable."""
  return k_test_train @ solve(k_train_train, y_train, reg)


def fit(k_train_train, y_train, reg: float = 1e-6) -> Callable[[jax.Array], jax.Array]:
  """Factorises once and returns `predict_fn(k_test_train) -> (m, c)` predictions.

  Raises:
    ValueError: on mismatched shapes or a non-finite kernel / factorisation
      (e.g. `reg=0` with a singular kernel), naming the cause.
  """
  k_train_train = jnp.asarray(k_train_train)
  y_train = jnp.asarray(y_train)
  if k_train_train.ndim != 2 or k_train_train.shape[0] != k_train_train.shape[1]:
    raise ValueError(f"k_train_train must be square, got shape {k_train_train.shape}")
  if y_train.ndim != 2 or y_train.shape[0] != k_train_train.shape[0]:
    raise ValueError(f"y_train must be (n, classes) with n={k_train_train.shape[0]}, "
                     f"got shape {y_train.shape}")
  if not bool(jnp.all(jnp.isfinite(k_train_train))):
    raise ValueError("k_train_train contains NaN or inf")
  alpha = jax.jit(solve)(k_train_train, y_train, reg)
  if not bool(jnp.all(jnp.isfinite(alpha))):
    raise ValueError(f"KRR solve is not finite with reg={reg}: the kernel is singular or "
                     "ill-conditioned at this precision; increase reg.")

  def predict_fn(k_test_train):
    k_test_train = jnp.asarray(k_test_train)
    if k_test_train.ndim != 2 or k_test_train.shape[1] != alpha.shape[0]:
      raise ValueError(f"k_test_train must be (m, {alpha.shape[0]}), got {k_test_train.shape}")
    return k_test_train @ alpha

  predict_fn.alpha = alpha
  return predict_fn


def fit_eigh(k_train_train, y_train) -> Callable[[jax.Array, float], jax.Array]:
  """Eigendecomposes once; returns `predict_fn(k_test_train, reg)` for cheap reg sweeps.

  Same regulariser convention: the ridge added is `reg * trace(K) / n`.
  """
  k = jnp.asarray(k_train_train)
  evals, evecs = jnp.linalg.eigh(k)
  proj = evecs.T @ jnp.asarray(y_train)
  scale = jnp.trace(k) / k.shape[0]

  def predict_fn(k_test_train, reg):
    alpha = evecs @ (proj / (evals + reg * scale)[:, None])
    return jnp.asarray(k_test_train) @ alpha

  return predict_fn


def accuracy(predictions, labels) -> float:
  """Fraction with argmax(predictions) == labels (integer labels, or one-hot rows)."""
  predictions = np.asarray(predictions)
  labels = np.asarray(labels)
  if labels.ndim == 2:
    labels = labels.argmax(-1)
  return float(np.mean(predictions.argmax(-1) == labels))


def mse(predictions, targets) -> float:
  """Mean over examples of the squared error summed over outputs."""
  predictions = np.asarray(predictions)
  targets = np.asarray(targets)
  return float(np.mean(np.sum((predictions - targets) ** 2, axis=-1)))


def evaluate(kernel_fn, x_train, y_train, x_test, y_test, reg: float = 1e-6,
             get: str = "ntk", batch_size: int = 256) -> dict[str, float]:
  """KRR protocol: fit on `(x_train, y_train)`, report test accuracy and MSE.

  Args:
    kernel_fn: from `kernels.make_kernel_fn`.
    x_train: `(n, ...)` support inputs; y_train: `(n, c)` targets (one-hot or learned).
    x_test: `(m, ...)`; y_test: `(m,)` integer labels or `(m, c)` one-hot targets.
    reg: relative ridge. get: 'ntk' or 'nngp'. batch_size: kernel block size.

  Returns:
    `{'accuracy': ..., 'mse': ...}`; MSE is against one-hot test targets built
    with the training targets' class count (uncentred).
  """
  from kernelcond import kernels

  k_tt = kernels.kernel_matrix(kernel_fn, x_train, None, get, batch_size)
  k_st = kernels.kernel_matrix(kernel_fn, x_test, x_train, get, batch_size)
  preds = np.asarray(fit(k_tt, y_train, reg)(k_st))
  y_test = np.asarray(y_test)
  onehot = y_test if y_test.ndim == 2 else np.eye(np.shape(y_train)[1])[y_test]
  return {"accuracy": accuracy(preds, y_test), "mse": mse(preds, onehot)}
