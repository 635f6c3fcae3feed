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
