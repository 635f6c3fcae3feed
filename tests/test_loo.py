"""Exact KRR leave-one-out against refitting without each example."""

import numpy as np

from kernelcond import loo


def test_loo_matches_refits():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(12, 3))
  k = np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1)).astype(np.float64)
  y = np.eye(3)[rng.integers(0, 3, 12)]
  reg = 1e-2
  lam = reg * np.trace(k) / 12
  got = np.asarray(loo.loo_predictions(k.astype(np.float32), y, reg))
  for i in range(12):
    keep = np.arange(12) != i
    alpha = np.linalg.solve(k[keep][:, keep] + lam * np.eye(11), y[keep])
    np.testing.assert_allclose(got[i], k[i, keep] @ alpha, atol=2e-4)


def _rbf_kernel_fn(x1, x2=None, get="ntk"):
  import jax.numpy as jnp
  x1 = jnp.reshape(x1, (x1.shape[0], -1))
  x2 = x1 if x2 is None else jnp.reshape(x2, (x2.shape[0], -1))
  sq = jnp.sum(x1 ** 2, 1)[:, None] + jnp.sum(x2 ** 2, 1)[None] - 2 * x1 @ x2.T
  return jnp.exp(-0.1 * sq)


def test_feature_loo_matches_refits_of_the_linear_kernel():
  rng = np.random.default_rng(1)
  phi = rng.normal(size=(15, 4))
  y = np.eye(3)[rng.integers(0, 3, 15)] - 1 / 3
  reg = 0.05
  k = phi @ phi.T
  lam = reg * np.trace(k) / 15
  loo_fn = loo.make_feature_loo_fn(phi.astype(np.float32), y, block_size=4)
  got = loo_fn(reg)
  for i in range(15):
    keep = np.arange(15) != i
    alpha = np.linalg.solve(k[keep][:, keep] + lam * np.eye(14), y[keep])
    np.testing.assert_allclose(got[i], k[i, keep] @ alpha, atol=1e-5)
  # One factorisation serves every ridge.
  np.testing.assert_allclose(loo_fn(0.3), loo.loo_predictions_features(phi, y, 0.3), atol=1e-9)


def test_nystrom_with_every_point_a_landmark_is_exact():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(20, 3)).astype(np.float32)
  y = np.eye(2)[rng.integers(0, 2, 20)].astype(np.float32)
  exact = np.asarray(loo.loo_predictions(_rbf_kernel_fn(x, x), y, 1e-2))
  ny = loo.loo_predictions_blocked(_rbf_kernel_fn, x, y, 1e-2, method="nystrom",
                                   num_landmarks=20, block_size=8)
  blocked = loo.loo_predictions_blocked(_rbf_kernel_fn, x, y, 1e-2, method="exact", block_size=8)
  np.testing.assert_allclose(blocked, exact, atol=1e-4)
  np.testing.assert_allclose(ny, exact, atol=5e-4)
  # Fewer landmarks: an approximation, but of the same predictions.
  few = loo.loo_predictions_blocked(_rbf_kernel_fn, x, y, 1e-2, method="nystrom",
                                    num_landmarks=10, block_size=8)
  assert np.abs(few - exact).max() > 0.1
  assert np.mean(few.argmax(1) == exact.argmax(1)) >= 0.7


def test_unknown_method_lists_the_valid_ones():
  import pytest
  with pytest.raises(ValueError, match="auto, exact, nystrom"):
    loo.make_loo_fn(_rbf_kernel_fn, np.zeros((3, 2)), np.eye(3), method="svd")
