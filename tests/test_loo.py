"""Exact KRR leave-one-out against refitting without each example."""

import numpy as np

from kernelcond import krr, loo


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
