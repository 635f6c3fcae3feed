"""Exact leave-one-out predictions of kernel ridge regression.

For KRR with kernelcond's regulariser, `K_reg = K + lam I` with
`lam = reg * trace(K) / n` (`krr.regularized`), the fitted values are `H y` with
`H = K K_reg^{-1} = I - lam K_reg^{-1}`. Leaving example `i` out of the fit
changes its prediction to the closed form (the classical PRESS identity)

    y_i - yhat_(-i) = (y_i - yhat_i) / (1 - H_ii) = alpha_i / [K_reg^{-1}]_ii,

with `alpha = K_reg^{-1} y`. One factorisation gives all `n` leave-one-out
predictions; no model is refitted. (`lam` is computed once from the full `K`;
the leave-one-out fits keep that ridge.)

For large `n` (`loo_predictions_blocked`, the entry point from inputs): the
kernel is computed in blocks (`kernels.kernel_matrix`), and above
`EXACT_AUTO_MAX_N` examples it is replaced by a Nystrom approximation
`K ~ Phi Phi^T` (Williams & Seeger, NIPS 2000) whose leave-one-out predictions
are exact in feature space: with `A = Phi^T Phi + lam I`,
`h_ii = phi_i^T A^{-1} phi_i` (`make_feature_loo_fn`). Random-feature kernels
(`kernels.random_feature_fn`, arXiv:2210.12067) go through the same function.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

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


# ----------------------------------------------------------------------------
# Large n: blocked kernels, and the feature-space form for approximate kernels.

LOO_METHODS = ("exact", "nystrom")
# Above this many examples `method='auto'` uses Nystrom: the exact form holds the
# (n, n) kernel, its Cholesky factor and the inverse factor (3 n^2 floats: 7 GB
# at n = 25,000) and costs about (2/3) n^3 flops per ridge.
EXACT_AUTO_MAX_N = 15000


def _solve_loo(y: np.ndarray, fitted: np.ndarray, leverage: np.ndarray) -> np.ndarray:
  """PRESS: `y - (y - yhat) / (1 - h)` row-wise, refusing leverages of 1."""
  slack = 1.0 - leverage
  if not np.all(np.isfinite(slack)) or np.any(slack <= 0):
    raise ValueError("leave-one-out KRR: a leverage h_ii reached 1 (ridge too small for this "
                     "precision); increase reg.")
  return y - (y - fitted) / slack[:, None]


def make_feature_loo_fn(phi, y_train, block_size: int = 8192) -> Callable[[float], np.ndarray]:
  """Leave-one-out KRR predictions for the kernel `K = Phi Phi^T`, any ridge after one eigh.

  With `A = Phi^T Phi = V D V^T` (`(m, m)`, float64) and `P = Phi V`, ridge
  `lam = reg * trace(K) / n` (`trace(K) = trace(A)`, the one convention of
  `krr.regularized`), the hat matrix `H = Phi (A + lam I)^{-1} Phi^T` has

      h_ii = phi_i^T (A + lam I)^{-1} phi_i = sum_k P_ik^2 / (d_k + lam),
      yhat = P diag(1 / (d + lam)) P^T y,

  and the leave-one-out prediction is `y_i - (y_i - yhat_i) / (1 - h_ii)`
  (the PRESS identity of the module docstring, in feature space). After the
  `O(n m^2)` set-up every ridge costs `O(n m c)`, so ridge sweeps are cheap.
  Exact for the linear kernel of `Phi`; for Nystrom or random features it is
  the exact leave-one-out of the approximate kernel.

  Args:
    phi: `(n, m)` features, `m <= n` for a useful factorisation.
    y_train: `(n, c)` targets.
    block_size: rows of `Phi` per product (memory).

  Returns:
    `loo_fn(reg) -> (n, c)` float64 leave-one-out predictions.
  """
  phi = np.asarray(phi, np.float32)
  y = np.asarray(y_train, np.float64)
  if phi.ndim != 2 or y.ndim != 2 or y.shape[0] != phi.shape[0]:
    raise ValueError(f"phi must be (n, m) and y_train (n, c), got {phi.shape} and {y.shape}")
  if not np.all(np.isfinite(phi)):
    raise ValueError("features contain NaN or inf (for conv specs: are the images large "
                     "enough for the spec's pooling?)")
  n, m = phi.shape
  gram = np.zeros((m, m), np.float64)
  for a in range(0, n, block_size):
    block = phi[a:a + block_size].astype(np.float64)
    gram += block.T @ block
  d, v = np.linalg.eigh(gram)
  d = np.maximum(d, 0.0)
  v32 = v.astype(np.float32)
  p = np.concatenate([phi[a:a + block_size] @ v32 for a in range(0, n, block_size)])
  p_sq = np.square(p, dtype=np.float64)
  pty = p.T.astype(np.float64) @ y
  scale = float(np.sum(d)) / n

  def loo_fn(reg: float) -> np.ndarray:
    lam = float(reg) * scale
    if not lam > 0:
      raise ValueError(f"feature-space leave-one-out needs reg > 0, got {reg}")
    inv = 1.0 / (d + lam)
    leverage = p_sq @ inv
    fitted = p.astype(np.float64) @ (pty * inv[:, None])
    return _solve_loo(y, fitted, leverage)

  loo_fn.num_features = m
  return loo_fn


def loo_predictions_features(phi, y_train, reg: float) -> np.ndarray:
  """Leave-one-out KRR predictions `(n, c)` for the kernel `Phi Phi^T` (`make_feature_loo_fn`)."""
  return make_feature_loo_fn(phi, y_train)(reg)


def landmarks(n: int, num_landmarks: int, seed: int = 0) -> np.ndarray:
  """Sorted indices of `min(num_landmarks, n)` distinct examples drawn uniformly."""
  m = min(int(num_landmarks), int(n))
  if m < 1:
    raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
  return np.sort(np.random.default_rng([int(seed), 3]).choice(n, m, replace=False))


def nystrom_features(kernel_fn, x, landmark_idx, get: str = "ntk", block_size: int = 512,
                     rtol: float = 1e-7) -> np.ndarray:
  """Nystrom features `Phi = K_nm U S^{-1/2}`, so that `Phi Phi^T = K_nm K_mm^+ K_mn`.

  Williams & Seeger (NIPS 2000); the kernel is computed in blocks
  (`kernels.kernel_matrix`), `K_mm = U S U^T` in float64, and eigenvalues below
  `rtol * max(S)` are dropped (the pseudo-inverse), so no jitter is added. On
  the landmarks themselves the approximation is exact.

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)` (`kernels.make_kernel_fn`,
      `make_random_kernel_fn`).
    x: `(n, ...)` inputs.
    landmark_idx: `(m,)` indices of the landmarks in `x` (`landmarks`).
    get: 'ntk' or 'nngp'.
    block_size: kernel block edge.
    rtol: relative eigenvalue cut-off.

  Returns:
    `(n, k)` float32 features, `k <= m` the kept eigenvalues.
  """
  from kernelcond import kernels  # local: kernels pull in optional backends

  x = np.asarray(x)
  x_m = x[np.asarray(landmark_idx)]
  k_mm = np.asarray(kernels.kernel_matrix(kernel_fn, x_m, None, get, block_size), np.float64)
  s, u = np.linalg.eigh((k_mm + k_mm.T) / 2)
  keep = s > rtol * s.max()
  proj = (u[:, keep] / np.sqrt(s[keep])).astype(np.float32)
  k_nm = kernels.kernel_matrix(kernel_fn, x, x_m, get, block_size)
  return np.asarray(k_nm, np.float32) @ proj


def make_loo_fn(kernel_fn, x, y_train, *, get: str = "ntk", block_size: int = 512,
                method: str = "exact", num_landmarks: int = 4000,
                seed: int = 0) -> Callable[[float], np.ndarray]:
  """`loo_fn(reg) -> (n, c)` leave-one-out KRR predictions, the kernel computed once.

  'exact': the `(n, n)` kernel in blocks, then `loo_predictions` per ridge
  (float32 Cholesky). 'nystrom': `nystrom_features` on `num_landmarks` random
  landmarks (`seed`), then `make_feature_loo_fn` (exact leave-one-out of the
  Nystrom kernel; `O(n m)` memory, `O(n m^2)` time). 'auto': 'exact' up to
  `EXACT_AUTO_MAX_N` examples, else 'nystrom'.
  """
  if method == "auto":
    method = "exact" if len(x) <= EXACT_AUTO_MAX_N else "nystrom"
  if method not in LOO_METHODS:
    raise ValueError(f"Unknown leave-one-out method {method!r}; valid: auto, "
                     f"{', '.join(LOO_METHODS)}")
  y = np.asarray(y_train, np.float32)
  if method == "exact":
    from kernelcond import kernels  # local: kernels pull in optional backends

    k = np.asarray(kernels.kernel_matrix(kernel_fn, x, None, get, block_size), np.float32)

    def exact_fn(reg: float) -> np.ndarray:
      return np.asarray(loo_predictions(k, y, reg), np.float64)

    exact_fn.method = "exact"
    return exact_fn
  phi = nystrom_features(kernel_fn, x, landmarks(len(x), num_landmarks, seed), get, block_size)
  fn = make_feature_loo_fn(phi, y)
  fn.method = "nystrom"
  return fn


def loo_predictions_blocked(kernel_fn, x, y_train, reg: float = 1e-3, *, get: str = "ntk",
                            block_size: int = 512, method: str = "auto",
                            num_landmarks: int = 4000, seed: int = 0) -> np.ndarray:
  """Leave-one-out KRR predictions `(n, c)` from inputs, for any `n` (the large-n entry point).

  Row `i` is what KRR with `kernel_fn` fitted on every other example predicts
  for example `i`. Nothing of size `(n, n)` is built with `method='nystrom'`
  (or 'auto' above `EXACT_AUTO_MAX_N`): 60,000 Fashion-MNIST examples with 4,000
  landmarks hold a `(60000, 4000)` float32 block (1 GB) and two copies of it.

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)`, e.g. `kernels.make_kernel_fn('fc3')`.
    x: `(n, ...)` inputs.
    y_train: `(n, c)` targets (one-hot, centred or not).
    reg: relative ridge (`krr.regularized`; for Nystrom the trace is that of
      the approximate kernel).
    get: 'ntk' or 'nngp'.
    block_size: kernel block edge.
    method: 'exact', 'nystrom' or 'auto' (`make_loo_fn`).
    num_landmarks: Nystrom landmarks `m`.
    seed: Nystrom landmark draw.
  """
  return make_loo_fn(kernel_fn, x, y_train, get=get, block_size=block_size, method=method,
                     num_landmarks=num_landmarks, seed=seed)(reg)
