"""Losses and target transforms against numpy formulas written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond.nets import losses


def _log_softmax(z):
  z = z - z.max(axis=1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.fixture
def logits():
  return np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)


def test_losses_match_numpy(logits):
  labels = np.array([0, 3, 1, 1, 2], np.int32)
  logp = _log_softmax(logits.astype(np.float64))
  np.testing.assert_allclose(losses.per_example_loss(logits, labels, "xent"),
                             -logp[np.arange(5), labels], rtol=1e-5)
  np.testing.assert_allclose(losses.per_example_loss(logits, labels, "soft_xent"),
                             -logp[np.arange(5), labels], rtol=1e-5)
  onehot = np.eye(4)[labels]
  np.testing.assert_allclose(losses.per_example_loss(logits, labels, "mse"),
                             0.5 * ((logits - onehot) ** 2).sum(1), rtol=1e-5)
  learned = np.array([[2.0, -1.0, 0.5, -0.2]] * 5, np.float32)  # negative entries, any scale
  p = np.array([2.0, 0.0, 0.5, 0.0]) / 2.5
  np.testing.assert_allclose(losses.per_example_loss(logits, learned, "soft_xent"),
                             -(logp * p).sum(1), rtol=1e-5)
  np.testing.assert_allclose(losses.per_example_loss(logits, learned, "xent"),
                             -(logp * learned).sum(1), rtol=1e-5)
  with pytest.raises(ValueError, match="xent, soft_xent, mse"):
    losses.per_example_loss(logits, labels, "hinge")


def test_label_smoothing_and_soft_target_checks():
  t = np.eye(4, dtype=np.float32)[[1, 2]]
  np.testing.assert_allclose(losses.smooth_labels(t, 0.2), 0.8 * t + 0.05, rtol=1e-6)
  np.testing.assert_array_equal(losses.smooth_labels(t, 0.0), t)
  losses.check_soft_targets(np.array([[1.0, -2.0]]), "soft_xent")
  losses.check_soft_targets(np.array([[0.0, -2.0]]), "mse")
  with pytest.raises(ValueError, match="row 1"):
    losses.check_soft_targets(np.array([[1.0, -2.0], [0.0, -1.0]]), "soft_xent")


def test_mixup_mixes_inputs_and_targets_with_one_beta_draw():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((6, 3, 3, 1)), jnp.float32)
  t = jnp.eye(3)[jnp.array([0, 1, 2, 0, 1, 2])]
  key = jax.random.PRNGKey(4)
  mixup = jax.jit(losses.mixup)  # alpha is traced: one compilation for every value
  x_mix, t_mix, lam = mixup(key, x, t, jnp.float32(0.4))
  lam, xn, tn = float(lam), np.asarray(x), np.asarray(t)
  assert 0.0 < lam < 1.0
  # The partner of each example: the one row for which the mix reproduces x_mix.
  errors = np.abs(lam * xn[:, None] + (1 - lam) * xn[None] - np.asarray(x_mix)[:, None])
  partner = errors.reshape(6, 6, -1).max(-1).argmin(1)
  assert sorted(partner) == list(range(6))  # a permutation
  np.testing.assert_allclose(x_mix, lam * xn + (1 - lam) * xn[partner], atol=1e-6)
  np.testing.assert_allclose(t_mix, lam * tn + (1 - lam) * tn[partner], atol=1e-6)
  # Off (alpha = 0): bit for bit the same batch.
  x_off, t_off, lam_off = mixup(key, x, t, jnp.float32(0.0))
  assert float(lam_off) == 1.0
  np.testing.assert_array_equal(x_off, x)
  np.testing.assert_array_equal(t_off, t)
  # The draw is Beta(alpha, alpha): mean 1/2, variance 1 / (4 (2 alpha + 1)).
  keys = np.asarray(jax.random.split(jax.random.PRNGKey(0), 2000))
  lams = np.array([mixup(k, x, t, jnp.float32(0.4))[2] for k in keys])
  assert abs(lams.mean() - 0.5) < 0.03
  assert abs(lams.var() - 1 / (4 * 1.8)) < 0.012


def test_target_helpers():
  t = losses.centred_one_hot(np.array([0, 2]), 4)
  np.testing.assert_allclose(t, np.eye(4)[[0, 2]] - 0.25)
  y = 25.0 * np.random.default_rng(0).standard_normal((30, 10)).astype(np.float32)
  scaled = losses.rescale_targets(y)
  np.testing.assert_allclose(np.sqrt(np.mean(scaled ** 2)), np.sqrt(9) / 10, rtol=1e-5)
  np.testing.assert_array_equal(scaled.argmax(1), y.argmax(1))
  np.testing.assert_allclose(scaled / y, np.full_like(y, scaled[0, 0] / y[0, 0]), rtol=1e-5)
  with pytest.raises(ValueError, match="RMS"):
    losses.rescale_targets(np.zeros((3, 10)))
  with pytest.raises(ValueError, match="shape"):
    losses.rescale_targets(np.ones((3,)))
  logits = jnp.eye(2) * 3  # predicts 0, 1
  np.testing.assert_array_equal(losses.correct(logits, np.array([1, 0])), [0.0, 0.0])
  np.testing.assert_array_equal(losses.correct(logits, np.array([0, 0])), [1.0, 0.0])
  np.testing.assert_array_equal(losses.correct(logits, np.array([[0.9, 0.1], [0.2, 0.3]])),
                                [1.0, 1.0])
