"""Exact leave-one-out predictions of kernel ridge regression.

For KRR with kernelcond's regulariser, `K_reg = K + lam I` with
`lam = reg * trace(K) / n` (`krr.regularized`), the fitted values are `H y` with
`H = K K_reg^{-1} = I - lam K_reg^{-1}`. Leaving example `i` out of the fit
changes its prediction to the closed form (the classical PRESS identity)

    y_i - yhat_(-i) = (y_i - yhat_i) / (1 - H_ii) = alpha_i / [K_reg^{-1}]_ii,

with `alpha = K_reg^{-1} y`. One factorisation gives all `n` leave-one-out
predictions; no model is refitted. (`lam` is computed once from the full `K`;
the leave-one-out fits keep that ridge.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kernelcond import krr


@jax.jit
def _loo_from_kernel(k: jax.Array, y: jax.Array, reg: float) -> jax.Array:
  k_reg = krr.regularized(k, reg)
  chol = jnp.linalg.cholesky(k_reg)
  eye = jnp.eye(k.shape[0], dtype=k.dtype)
  # K_reg^{-1} = L^{-T} L^{-1}; its diagonal is the column sums of (L^{-1})^2.
  l_inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
  inv_diag = jnp.sum(l_inv * l_inv, axis=0)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y)
  return y - alpha / inv_diag[:, None]


def loo_predictions(k_train_train, y_train, reg: float = 1e-6) -> jax.Array:
  """Exact leave-one-out KRR predictions, `(n, c)`, from the full `(n, n)` kernel.

  Row `i` is what KRR fitted on every example except `i` (same kernel, same
  ridge) predicts for example `i`.

  Args:
    k_train_train: `(n, n)` symmetric PSD kernel.
    y_train: `(n, c)` targets (one-hot, centred or not).
    reg: relative ridge (`krr.regularized`).

  Raises:
    ValueError: on mismatched shapes or a non-finite result (singular kernel at
      this `reg`).
  """
  k = jnp.asarray(k_train_train)
  y = jnp.asarray(y_train, k.dtype)
  if k.ndim != 2 or k.shape[0] != k.shape[1]:
    raise ValueError(f"k_train_train must be square, got shape {k.shape}")
  if y.ndim != 2 or y.shape[0] != k.shape[0]:
    raise ValueError(f"y_train must be (n, classes) with n={k.shape[0]}, got {y.shape}")
  out = _loo_from_kernel(k, y, reg)
  if not bool(jnp.all(jnp.isfinite(out))):
    raise ValueError(f"leave-one-out KRR is not finite with reg={reg}: the kernel is "
                     "singular or ill-conditioned at this precision; increase reg.")
  return out
