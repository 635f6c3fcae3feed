"""KRR: the one regulariser convention, solver paths that must agree, input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import krr


def _problem(n=12, m=7, c=3, seed=0):
  rng = np.random.default_rng(seed)
  feats = rng.standard_normal((n + m, 5))
  k = feats @ feats.T + 0.1 * np.eye(n + m)
  y = rng.standard_normal((n, c))
  return k[:n, :n], k[n:, :n], y


def test_regulariser_is_relative_to_trace():
  k, _, _ = _problem()
  reg = 0.3
  expected = k + reg * np.trace(k) / len(k) * np.eye(len(k))
  np.testing.assert_allclose(krr.regularized(jnp.asarray(k), reg), expected, rtol=1e-5)
  # Scale-free: multiplying K by a constant leaves the predictions unchanged.
  _, k_st, y = _problem()
  p1 = krr.predict(k_st, k, y, reg)
  p2 = krr.predict(100.0 * k_st, 100.0 * k, y, reg)
  np.testing.assert_allclose(p1, p2, rtol=1e-4, atol=1e-5)


def test_cholesky_matches_direct_inverse_and_eigh_path():
  k, k_st, y = _problem()
  reg = 1e-2
  direct = k_st @ np.linalg.solve(k + reg * np.trace(k) / len(k) * np.eye(len(k)), y)
  np.testing.assert_allclose(krr.predict(k_st, k, y, reg), direct, rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(krr.fit(k, y, reg)(k_st), direct, rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(krr.fit_eigh(k, y)(k_st, reg), direct, rtol=1e-3, atol=1e-4)


def test_predict_is_differentiable():
  k, k_st, y = _problem()
  g = jax.grad(lambda s: jnp.sum(krr.predict(k_st, s * k, y, 1e-2) ** 2))(1.0)
  assert np.isfinite(g)


def test_accuracy_and_mse():
  preds = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
  assert krr.accuracy(preds, np.array([0, 1, 1])) == pytest.approx(2 / 3)
  assert krr.accuracy(preds, np.eye(2)[[0, 1, 1]]) == pytest.approx(2 / 3)
  assert krr.mse(preds, np.eye(2)[[0, 1, 1]]) == pytest.approx(
      np.mean([0.01 + 0.01, 0.04 + 0.04, 0.36 + 0.36]))


def test_bad_inputs_are_named():
  k, k_st, y = _problem()
  with pytest.raises(ValueError, match="square"):
    krr.fit(k[:, :5], y)
  with pytest.raises(ValueError, match="y_train"):
    krr.fit(k, y[:5])
  bad = k.copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    krr.fit(bad, y)
  with pytest.raises(ValueError, match="k_test_train"):
    krr.fit(k, y)(k_st[:, :3])
  with pytest.raises(ValueError, match="reg"):
    krr.fit(-np.eye(4), np.ones((4, 1)), reg=0.0)


# --- Large n: blocked kernel, Nystrom preconditioner, conjugate gradients ---------------------


def _fc_problem(n=45, m=13, c=3, seed=1):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n + m, 6)).astype(np.float32)
  y = np.eye(c, dtype=np.float32)[rng.integers(0, c, n + m)]
  return x[:n], y[:n], x[n:], y[n:]


@pytest.fixture(scope="module")
def fc_kernel():
  from kernelcond import kernels
  return kernels.make_kernel_fn("fc2", "native")


def test_block_kernel_matvec_and_diagonal_match_the_dense_kernel(fc_kernel):
  x, _, _, _ = _fc_problem()
  dense = np.asarray(fc_kernel(x, x, "ntk"), np.float64)
  blocks = krr.block_kernel(fc_kernel, x, "ntk", block_size=7, batch_size=4)  # 45 = 6*7 + 3
  assert [len(r) for r in blocks.rows] == [7] * 6 + [3]
  assert sum(r.size for r in blocks.rows) < 0.6 * dense.size  # upper triangle only
  v = np.random.default_rng(0).standard_normal((45, 2))
  np.testing.assert_allclose(blocks.matvec(v), dense @ v, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(blocks.diagonal(), np.diag(dense), rtol=1e-6)


def test_nystrom_with_every_landmark_is_the_kernel(fc_kernel):
  x, _, _, _ = _fc_problem(n=20)
  k = np.asarray(fc_kernel(x, x, "ntk"), np.float64)
  u, lam = krr.nystrom(k, np.arange(20))
  np.testing.assert_allclose(u.T @ u, np.eye(len(lam)), atol=1e-4)
  np.testing.assert_allclose((u * lam) @ u.T, k, rtol=1e-4, atol=1e-4 * np.abs(k).max())


def test_preconditioned_cg_matches_cholesky_in_fewer_iterations(fc_kernel):
  x, y, _, _ = _fc_problem()
  k = np.asarray(fc_kernel(x, x, "ntk"), np.float64)
  reg = 1e-4
  ridge = reg * np.trace(k) / len(k)
  expected = np.linalg.solve(k + ridge * np.eye(len(k)), y)  # float64, direct
  matvec = lambda v: k @ v + ridge * v
  plain, plain_info = krr.conjugate_gradients(matvec, y, tol=1e-8, max_iters=500)
  landmarks = np.arange(0, 45, 3)
  u, lam = krr.nystrom(k[:, landmarks], landmarks)
  residuals = []
  pre, pre_info = krr.conjugate_gradients(matvec, y, krr.nystrom_preconditioner(u, lam, ridge),
                                          tol=1e-8, max_iters=500,
                                          callback=lambda i, r: residuals.append((i, r)))
  scale = np.abs(expected).max()
  for alpha, info in ((plain, plain_info), (pre, pre_info)):
    assert info.converged and info.residual <= 1e-8
    np.testing.assert_allclose(alpha, expected, atol=1e-5 * scale)
  assert pre_info.iterations < plain_info.iterations
  assert [i for i, _ in residuals] == list(range(1, pre_info.iterations + 1))
  assert residuals[-1][1] == pre_info.residual
  _, capped = krr.conjugate_gradients(matvec, y, tol=1e-8, max_iters=2)
  assert capped.iterations == 2 and not capped.converged


def test_evaluate_cg_matches_the_cholesky_evaluation(fc_kernel):
  x, y, x_test, y_test = _fc_problem()
  reg = 1e-3
  dense = krr.evaluate(fc_kernel, x, y, x_test, y_test, reg=reg, batch_size=8)
  cg = krr.evaluate_cg(fc_kernel, x, y, x_test, y_test, reg=reg, rank=10, tol=1e-7,
                       block_size=16, batch_size=8)
  assert cg["converged"] and 0 < cg["iterations"] < 45
  assert cg["accuracy"] == dense["accuracy"]
  np.testing.assert_allclose(cg["mse"], dense["mse"], rtol=1e-4)
  alpha, _ = krr.fit_cg(fc_kernel, x, y, reg, rank=10, tol=1e-7, block_size=16, batch_size=8)
  k_test = np.asarray(fc_kernel(x_test, x, "ntk"))
  np.testing.assert_allclose(krr.predict_blocked(fc_kernel, x, alpha, x_test, block_size=5,
                                                 batch_size=4),
                             k_test @ alpha, rtol=1e-4, atol=1e-4)
