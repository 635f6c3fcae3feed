"""Kernel ridge regression with the relative regulariser used throughout kernelcond.

Convention (the only one in this package; KIP and Label Solve use it too):

    alpha = (K + reg * trace(K) / n * I)^{-1} y,        prediction = K_* alpha,

with `K = k_train_train` of shape `(n, n)`. `reg` is scale-free: it means the
same for an NTK and an NNGP, for any depth and for any input scale. This is the
form of Nguyen et al. (arXiv:2011.00050, KIP), written out once here.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg


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


# --- Large training sets: preconditioned conjugate gradients over a blocked kernel -----------
#
# For n in the tens of thousands the (n, n) kernel does not fit one device (60,000 x 60,000
# float32 is 14.4 GB). `block_kernel` computes it block by block and keeps only its upper
# triangle on the host in float32 (half the memory); `conjugate_gradients` solves
# `(K + ridge I) alpha = y` with matrix-vector products over those blocks, preconditioned by
# a Nystrom approximation of K (`nystrom_preconditioner`); `predict_blocked` applies
# `alpha` to test inputs block by block. `fit_cg` / `evaluate_cg` chain them.


class BlockKernel(NamedTuple):
  """The upper triangle of a symmetric `(n, n)` kernel, as float32 row blocks on the host.

  Attributes:
    rows: `rows[i]` is `K[s_i:s_i + b_i, s_i:]`, shape `(b_i, n - s_i)`.
    starts: the first row `s_i` of each block.
    n: the matrix size.
  """
  rows: tuple
  starts: tuple
  n: int

  def diagonal(self) -> np.ndarray:
    """`(n,)` float64 diagonal of K."""
    return np.concatenate([np.diagonal(r[:, :len(r)]) for r in self.rows]).astype(np.float64)

  def matvec(self, v: np.ndarray) -> np.ndarray:
    """`K @ v` for `v` of shape `(n, c)`, in float64 (products in float32).

    Each stored block `K[s:e, s:]` is used twice: for rows `s:e` and, transposed,
    for the rows below the block (`K[e:, s:e] = K[s:e, e:]^T`).
    """
    v32 = np.asarray(v, np.float32)
    out = np.zeros(v.shape, np.float64)
    for start, block in zip(self.starts, self.rows):
      end = start + len(block)
      out[start:end] += block @ v32[start:]
      out[end:] += block[:, end - start:].T @ v32[start:end]
    return out


def block_kernel(kernel_fn, x, get: str = "ntk", block_size: int = 2048,
                 batch_size: int = 256) -> BlockKernel:
  """`K = kernel_fn(x, x, get)` as a `BlockKernel`: about `n^2 / 2` float32 on the host.

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)`.
    x: `(n, ...)` inputs.
    get: 'ntk' or 'nngp'.
    block_size: rows per stored block (the device computes `(block_size, n)` at a time,
      in `batch_size` tiles, `kernels.kernel_matrix`).
  """
  from kernelcond import kernels

  x = np.asarray(x)
  starts = tuple(range(0, len(x), block_size))
  rows = tuple(np.asarray(kernels.kernel_matrix(kernel_fn, x[s:s + block_size], x[s:], get,
                                                batch_size), np.float32) for s in starts)
  return BlockKernel(rows=rows, starts=starts, n=len(x))


def nystrom(k_columns, landmarks) -> tuple[np.ndarray, np.ndarray]:
  """The Nystrom approximation `K ~ C W^{-1} C^T = U diag(lam) U^T` from `m` columns of K.

  Williams & Seeger (NeurIPS 2000); with `C = K[:, S]` `(n, m)` and `W = K[S, S]`,
  `B = C L^{-T}` for `W = L L^T` (plus a tiny shift, W is semi-definite in
  float32), and `U`, `lam` from the eigendecomposition of the small `B^T B`.

  Args:
    k_columns: `(n, m)` columns `K[:, landmarks]`.
    landmarks: `(m,)` row indices of the columns.

  Returns:
    `(U (n, k) float32 with orthonormal columns, lam (k,) float64 descending)`, k <= m
    (directions with a negligible eigenvalue are dropped).
  """
  c = np.asarray(k_columns, np.float64)
  w = c[np.asarray(landmarks)]
  w = 0.5 * (w + w.T)
  chol = np.linalg.cholesky(w + 1e-7 * np.trace(w) / len(w) * np.eye(len(w)))
  b = scipy.linalg.solve_triangular(chol, c.T, lower=True).T  # B B^T = C W^-1 C^T: (n, m)
  del c
  lam, v = np.linalg.eigh(b.T @ b)  # ascending
  keep = lam > max(lam[-1], 0.0) * 1e-12
  lam, v = lam[keep][::-1], v[:, keep][:, ::-1]
  return ((b @ v) / np.sqrt(lam)).astype(np.float32), lam


def nystrom_preconditioner(u, lam, ridge: float) -> Callable[[np.ndarray], np.ndarray]:
  """The Nystrom preconditioner of `K + ridge I`: returns `r -> P^{-1} r`.

  Frangella, Tropp, Udell (arXiv:2110.02820, eq. 5.3) for `K ~ U diag(lam) U^T`
  (`nystrom`, `lam` descending):

      P^{-1} = (lam_k + ridge) U diag(1 / (lam + ridge)) U^T + (I - U U^T).

  The top `k` eigen-directions of the preconditioned system sit near 1, so CG
  needs about `sqrt((lam_k + ridge) / ridge)` rather than `sqrt(lam_1 / ridge)`
  iterations per digit of accuracy.

  Args:
    u: `(n, k)` orthonormal columns. lam: `(k,)` descending eigenvalues.
    ridge: the absolute ridge added to K (`reg * trace(K) / n`).
  """
  scale = (lam[-1] + ridge) / (lam + ridge) - 1.0

  def apply(r):
    proj = u.T @ np.asarray(r, np.float32)
    return np.asarray(r, np.float64) + u @ (scale[:, None] * proj).astype(np.float32)

  return apply


class CgInfo(NamedTuple):
  """How a conjugate-gradient solve ended.

  Attributes:
    iterations: matrix-vector products taken.
    residual: final `max_c ||y_c - A alpha_c|| / ||y_c||` over the columns c.
    converged: whether `residual <= tol`.
  """
  iterations: int
  residual: float
  converged: bool


def conjugate_gradients(matvec: Callable[[np.ndarray], np.ndarray], y,
                        precondition: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                        tol: float = 1e-4, max_iters: int = 1000,
                        callback: Optional[Callable[[int, float], None]] = None):
  """Preconditioned CG for `A alpha = y`, each of the `c` columns of `y` its own system.

  Hestenes & Stiefel (1952), in the preconditioned form of Saad, Iterative
  Methods for Sparse Linear Systems, Alg. 9.1. `A` must be symmetric positive
  definite; vectors are float64 on the host.

  Args:
    matvec: `v (n, c) -> A v (n, c)`.
    y: `(n, c)` right-hand sides.
    precondition: `r (n, c) -> P^{-1} r` (default: none).
    tol: stop when every column's relative residual `||y - A alpha|| / ||y||` is below it.
    max_iters: at most this many matrix-vector products.
    callback: called as `callback(iteration, residual)` after every iteration.

  Returns:
    `(alpha (n, c) float64, CgInfo)`.
  """
  y = np.asarray(y, np.float64)
  precondition = precondition or (lambda r: r)
  y_norm = np.maximum(np.linalg.norm(y, axis=0), np.finfo(np.float64).tiny)
  alpha = np.zeros_like(y)
  r = y.copy()
  z = precondition(r)
  p = z.copy()
  rz = np.sum(r * z, axis=0)
  residual = float(np.max(np.linalg.norm(r, axis=0) / y_norm))
  it = 0
  while residual > tol and it < max_iters:
    ap = matvec(p)
    step = rz / np.sum(p * ap, axis=0)
    alpha += step * p
    r -= step * ap
    it += 1
    residual = float(np.max(np.linalg.norm(r, axis=0) / y_norm))
    if callback is not None:
      callback(it, residual)
    if not np.isfinite(residual):
      raise ValueError(f"CG diverged at iteration {it}: the regularised kernel is not "
                       "positive definite at this precision; increase reg.")
    z = precondition(r)
    rz_new = np.sum(r * z, axis=0)
    p = z + (rz_new / rz) * p
    rz = rz_new
  return alpha, CgInfo(iterations=it, residual=residual, converged=residual <= tol)


def predict_blocked(kernel_fn, x_train, alpha, x, get: str = "ntk", block_size: int = 2048,
                    batch_size: int = 256) -> np.ndarray:
  """`kernel_fn(x, x_train, get) @ alpha`, `(m, c)`, never holding more than
  `(block_size, n)` of the kernel."""
  from kernelcond import kernels

  alpha = np.asarray(alpha, np.float32)
  return np.concatenate([
      np.asarray(kernels.kernel_matrix(kernel_fn, x[s:s + block_size], x_train, get,
                                       batch_size), np.float32) @ alpha
      for s in range(0, len(x), block_size)])


def fit_cg(kernel_fn, x_train, y_train, reg: float = 1e-6, get: str = "ntk", *,
           rank: int = 1000, tol: float = 1e-4, max_iters: int = 1000, seed: int = 0,
           block_size: int = 2048, batch_size: int = 256,
           callback: Optional[Callable[[int, float], None]] = None):
  """KRR weights `alpha = (K + reg tr(K)/n I)^{-1} y_train` by Nystrom-preconditioned CG.

  The kernel is a `block_kernel` (upper triangle, float32, host); the
  preconditioner uses `rank` landmarks drawn uniformly without replacement with
  `seed` (`nystrom_preconditioner`).

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)`. x_train: `(n, ...)`; y_train: `(n, c)`.
    reg: relative ridge (module docstring). get: 'ntk' or 'nngp'.
    rank, tol, max_iters, seed: of the preconditioner and the CG solve.
    block_size, batch_size: rows per stored block; tile edge of `kernel_matrix`.
    callback: `callback(iteration, residual)` (progress of a long solve).

  Returns:
    `(alpha (n, c) float64, CgInfo)`.

  Raises:
    ValueError: on a non-finite kernel or a diverging solve.
  """
  from kernelcond import kernels

  x_train = np.asarray(x_train)
  n = len(x_train)
  # Nystrom first: its float64 temporaries are freed before the blocks take ~2 n^2 bytes.
  landmarks = np.sort(np.random.default_rng(seed).choice(n, min(rank, n), replace=False))
  u, lam = nystrom(kernels.kernel_matrix(kernel_fn, x_train, x_train[landmarks], get,
                                         batch_size), landmarks)
  kernel = block_kernel(kernel_fn, x_train, get, block_size, batch_size)
  diagonal = kernel.diagonal()
  if not np.all(np.isfinite(diagonal)):
    raise ValueError("the training kernel contains NaN or inf")
  ridge = reg * float(np.sum(diagonal)) / n
  precondition = nystrom_preconditioner(u, lam, ridge)
  return conjugate_gradients(lambda v: kernel.matvec(v) + ridge * v, y_train, precondition,
                             tol, max_iters, callback)


def evaluate_cg(kernel_fn, x_train, y_train, x_test, y_test, reg: float = 1e-6,
                get: str = "ntk", **cg_kwargs) -> dict:
  """`evaluate`, solved by `fit_cg` (keyword arguments go to it) for large training sets.

  Returns:
    `{'accuracy', 'mse', 'iterations', 'residual', 'converged'}`.
  """
  alpha, info = fit_cg(kernel_fn, x_train, y_train, reg, get, **cg_kwargs)
  sizes = {k: cg_kwargs[k] for k in ("block_size", "batch_size") if k in cg_kwargs}
  preds = predict_blocked(kernel_fn, x_train, alpha, np.asarray(x_test), get, **sizes)
  y_test = np.asarray(y_test)
  onehot = y_test if y_test.ndim == 2 else np.eye(np.shape(y_train)[1])[y_test]
  return {"accuracy": accuracy(preds, y_test), "mse": mse(preds, onehot),
          **info._asdict()}
