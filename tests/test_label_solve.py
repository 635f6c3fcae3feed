"""Label Solve against independent computations: float64 numpy lstsq/pinv, normal
equations with a ridge, and gradient descent on the same objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import kernels
from kernelcond import krr
from kernelcond.condense import label_solve


def _problem(n_s=5, n_t=40, c=3, seed=0):
  rng = np.random.default_rng(seed)
  feats = rng.standard_normal((n_s + n_t, 8))
  k = feats @ feats.T / 8 + 0.05 * np.eye(n_s + n_t)
  y_t = np.eye(c)[rng.integers(0, c, n_t)]
  return k[n_s:, :n_s], k[:n_s, :n_s], y_t


def _design64(k_ts, k_ss, reg):
  n = len(k_ss)
  return k_ts @ np.linalg.inv(k_ss + reg * np.trace(k_ss) / n * np.eye(n))


def test_matches_numpy_pseudo_inverse():
  k_ts, k_ss, y_t = _problem()
  reg = 1e-2
  y_s = label_solve.solve_labels(k_ts, k_ss, y_t, reg)
  a = _design64(k_ts, k_ss, reg)
  np.testing.assert_allclose(label_solve.design_matrix(k_ts, k_ss, reg), a, rtol=1e-4,
                             atol=1e-5)
  expected = np.linalg.pinv(a) @ y_t
  np.testing.assert_allclose(y_s, expected, rtol=1e-3, atol=1e-3)
  # Optimality: the residual is orthogonal to the columns of A.
  resid = y_t - a @ np.asarray(y_s, np.float64)
  np.testing.assert_allclose(a.T @ resid, 0.0, atol=1e-3)


def test_ridge_matches_normal_equations():
  k_ts, k_ss, y_t = _problem()
  reg, ridge = 1e-2, 0.5
  a = _design64(k_ts, k_ss, reg)
  expected = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y_t)
  np.testing.assert_allclose(label_solve.solve_labels(k_ts, k_ss, y_t, reg, ridge), expected,
                             rtol=1e-3, atol=1e-4)


def test_matches_gradient_descent_on_krr_objective():
  """Minimise ||y_t - krr.predict(K_ts, K_ss, y)||^2 directly with jax.grad."""
  k_ts, k_ss, y_t = _problem()
  reg, ridge = 1e-2, 0.1
  k_ts, k_ss, y_t = (jnp.asarray(v, jnp.float32) for v in (k_ts, k_ss, y_t))
  objective = lambda y: (jnp.sum((y_t - krr.predict(k_ts, k_ss, y, reg)) ** 2)
                         + ridge * jnp.sum(y ** 2))
  grad = jax.jit(jax.grad(objective))
  a = np.asarray(label_solve.design_matrix(k_ts, k_ss, reg), np.float64)
  lr = 1.0 / (2 * (np.linalg.norm(a, 2) ** 2 + ridge))
  y = jnp.zeros((k_ss.shape[0], y_t.shape[1]))
  for _ in range(3000):
    y = y - lr * grad(y)
  closed = label_solve.solve_labels(k_ts, k_ss, y_t, reg, ridge)
  np.testing.assert_allclose(y, closed, rtol=1e-2, atol=1e-3)
  assert objective(closed) <= objective(y) + 1e-4


def test_label_solve_from_images_improves_targets_fit():
  rng = np.random.default_rng(1)
  kernel_fn = kernels.make_kernel_fn("fc2", "auto")
  x_t = rng.standard_normal((30, 3, 3, 1)).astype(np.float32)
  y_t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 30)]
  x_s, y_onehot = x_t[:6], y_t[:6]
  y_s = label_solve.label_solve(kernel_fn, x_s, x_t, y_t, reg=1e-3, get="nngp", batch_size=8)
  assert y_s.shape == (6, 3) and y_s.dtype == np.float32
  k_ss = np.asarray(kernel_fn(x_s, x_s, "nngp"))
  k_ts = np.asarray(kernel_fn(x_t, x_s, "nngp"))
  err = lambda y: float(np.sum((k_ts @ np.asarray(krr.solve(k_ss, y, 1e-3)) - y_t) ** 2))
  assert err(y_s) < err(y_onehot)
  np.testing.assert_allclose(y_s, label_solve.solve_labels(k_ts, k_ss, y_t, 1e-3),
                             rtol=1e-3, atol=1e-3)


def test_bad_shapes_are_named():
  k_ts, k_ss, y_t = _problem()
  with pytest.raises(ValueError, match="square"):
    label_solve.solve_labels(k_ts, k_ss[:, :3], y_t)
  with pytest.raises(ValueError, match="k_target_support"):
    label_solve.solve_labels(k_ts[:, :3], k_ss, y_t)
  with pytest.raises(ValueError, match="y_target"):
    label_solve.solve_labels(k_ts, k_ss, y_t[:5])
  with pytest.raises(ValueError, match="ridge"):
    label_solve.solve_labels(k_ts, k_ss, y_t, ridge=-1.0)
