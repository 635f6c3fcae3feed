"""Tests for kernelcond.preprocess: each transform against an independent computation."""

import numpy as np
import pytest
import scipy.linalg

from kernelcond import data, preprocess


def _images(n=60, h=3, w=3, c=2, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, h, w, c)) * np.array([2.0, 0.5])[:c] + np.array([3.0, -1.0])[:c]
  return x.astype(np.float32)


def _correlated(n=400, d=12, seed=0):
  """Full-rank data with strongly correlated, unequally scaled features."""
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(d, d)) + 2.0 * np.eye(d)
  return (rng.normal(size=(n, d)) @ mix + 5.0).reshape(n, 2, d // 2, 1)


# ---------------------------------------------------------------- standardize


def test_standardize_train_has_zero_mean_unit_std_per_channel():
  x_train, x_test = _images(seed=0), _images(n=7, seed=1)
  s_train, s_test = preprocess.standardize(x_train, x_test)
  assert s_train.dtype == np.float32 and s_train.shape == x_train.shape
  np.testing.assert_allclose(s_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(s_train.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
  # Test set uses the train statistics, computed here channel by channel.
  for c in range(x_train.shape[-1]):
    mean, std = x_train[..., c].astype(np.float64).mean(), x_train[..., c].astype(np.float64).std()
    np.testing.assert_allclose(s_test[..., c], (x_test[..., c] - mean) / std, rtol=1e-5, atol=1e-5)


def test_standardize_constant_channel_is_zero_and_test_optional():
  x = _images()
  x[..., 1] = 0.25
  s_train, s_test = preprocess.standardize(x)
  assert s_test is None
  assert np.all(np.isfinite(s_train)) and np.all(s_train[..., 1] == 0.0)


def test_standardize_rejects_channel_mismatch():
  with pytest.raises(ValueError, match="channels"):
    preprocess.standardize(_images(c=2), _images(c=1))


# ---------------------------------------------------------------- ZCA


def test_zca_reg0_whitens_to_identity_and_is_symmetric_inverse_sqrt():
  x = _correlated()
  flat = x.reshape(len(x), -1)
  white, _ = preprocess.zca_whiten(x, reg=0.0)
  assert white.shape == x.shape
  wf = white.reshape(len(x), -1)
  np.testing.assert_allclose(wf.mean(0), 0.0, atol=1e-8)
  np.testing.assert_allclose(wf.T @ wf / len(x), np.eye(flat.shape[1]), atol=1e-8)
  mean, w = preprocess.fit_zca(x, reg=0.0)
  np.testing.assert_array_equal(w, w.T)  # ZCA, not PCA
  cov = np.cov(flat, rowvar=False, bias=True)
  np.testing.assert_allclose(w, scipy.linalg.fractional_matrix_power(cov, -0.5).real,
                             rtol=1e-6, atol=1e-8)


def test_zca_regularised_spectrum_matches_closed_form():
  x, reg = _correlated(seed=3), 0.3
  flat = x.reshape(len(x), -1)
  white, _ = preprocess.zca_whiten(x, reg=reg)
  wf = white.reshape(len(x), -1)
  got = np.linalg.eigvalsh(wf.T @ wf / len(x))
  # Independent route: covariance eigenvalues from the singular values of the centred data.
  lam = np.linalg.svd(flat - flat.mean(0), compute_uv=False) ** 2 / len(x)
  want = np.sort(lam / (lam + reg * lam.mean()))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
  assert np.all(got < 1.0)


def test_zca_test_set_uses_train_fit():
  x_train = _correlated(seed=1).astype(np.float32)
  x_test = _correlated(n=9, seed=2).astype(np.float32)
  w_train, w_test = preprocess.zca_whiten(x_train, x_test, reg=0.1)
  mean, w = preprocess.fit_zca(x_train, reg=0.1)
  manual = (x_test.reshape(9, -1).astype(np.float64) - mean) @ w
  assert w_test.dtype == np.float32 and w_test.shape == x_test.shape
  np.testing.assert_allclose(w_test.reshape(9, -1), manual, rtol=1e-4, atol=1e-4)
  assert w_train.dtype == np.float32


def test_zca_errors():
  x = _correlated()
  with pytest.raises(ValueError, match=">= 0"):
    preprocess.fit_zca(x, reg=-0.1)
  singular = x.copy()
  singular[:, 0, 0, 0] = 1.0  # a constant pixel: covariance of rank d - 1
  with pytest.raises(ValueError, match="singular"):
    preprocess.fit_zca(singular, reg=0.0)
  preprocess.fit_zca(singular, reg=0.1)  # regularisation lifts it
  with pytest.raises(ValueError, match="features"):
    preprocess.zca_whiten(x, x[:, :1], reg=0.1)


# ---------------------------------------------------------------- one_hot


def test_one_hot_plain_and_centred():
  labels = np.array([2, 0, 1, 2])
  plain = preprocess.one_hot(labels, 3)
  assert plain.dtype == np.float32
  np.testing.assert_array_equal(plain, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
  centred = preprocess.one_hot(labels, 3, center=True, dtype=np.float64)
  np.testing.assert_allclose(centred, plain - 1.0 / 3.0)
  np.testing.assert_allclose(centred.sum(1), 0.0, atol=1e-12)
  assert np.argmax(centred, 1).tolist() == labels.tolist()


def test_one_hot_errors():
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    preprocess.one_hot([0, 3], 3)
  with pytest.raises(ValueError, match="integers"):
    preprocess.one_hot([0.5], 3)


# ---------------------------------------------------------------- sampling


def test_class_balanced_indices_counts_order_and_determinism():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, size=200)
  idx = preprocess.class_balanced_indices(labels, per_class=5, seed=7)
  assert idx.shape == (20,) and len(set(idx.tolist())) == 20
  np.testing.assert_array_equal(labels[idx], np.repeat(np.arange(4), 5))
  for c in range(4):
    block = idx[5 * c:5 * c + 5]
    assert np.all(np.diff(block) > 0)
  np.testing.assert_array_equal(idx, preprocess.class_balanced_indices(labels, 5, seed=7))
  assert not np.array_equal(idx, preprocess.class_balanced_indices(labels, 5, seed=8))


def test_class_balanced_indices_errors_name_the_class():
  labels = np.array([0] * 5 + [1] * 2 + [2] * 5)
  with pytest.raises(ValueError, match="class 1 has 2 examples"):
    preprocess.class_balanced_indices(labels, per_class=3, seed=0)
  with pytest.raises(ValueError, match="class 3 has 0 examples"):
    preprocess.class_balanced_indices(labels, per_class=1, seed=0, num_classes=4)
  with pytest.raises(ValueError, match="per_class"):
    preprocess.class_balanced_indices(labels, per_class=0, seed=0)


# ---------------------------------------------------------------- check_finite / prepare


def test_check_finite():
  preprocess.check_finite(np.zeros((2, 3)), "ok")
  preprocess.check_finite(np.arange(3), "ints")
  bad = np.zeros((2, 3), np.float32)
  bad[1, 2] = np.nan
  bad[0, 0] = np.inf
  with pytest.raises(ValueError, match=r"my_array.*1 NaN and 1 inf.*\(0, 0\)"):
    preprocess.check_finite(bad, "my_array")


def _dataset():
  rng = np.random.default_rng(0)
  return data.Dataset(name="toy", x_train=rng.uniform(size=(40, 2, 3, 1)).astype(np.float32),
                      y_train=np.arange(40, dtype=np.int32) % 3,
                      x_test=rng.uniform(size=(6, 2, 3, 1)).astype(np.float32),
                      y_test=np.arange(6, dtype=np.int32) % 3, num_classes=3,
                      class_names=("a", "b", "c"), source="test")


def test_prepare_matches_the_individual_transforms():
  ds = _dataset()
  x_train0 = ds.x_train.copy()
  out = preprocess.prepare(ds, standardize=True, zca_reg=0.2)
  s_train, s_test = preprocess.standardize(ds.x_train, ds.x_test)
  z_train, z_test = preprocess.zca_whiten(s_train, s_test, reg=0.2)
  np.testing.assert_allclose(out.x_train, z_train, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.x_test, z_test, rtol=1e-6, atol=1e-6)
  assert out.y_train is ds.y_train and out.class_names == ds.class_names
  assert out.x_train.dtype == np.float32
  np.testing.assert_array_equal(ds.x_train, x_train0)  # input untouched
  plain = preprocess.prepare(ds, standardize=False)
  np.testing.assert_array_equal(plain.x_train, ds.x_train)
  only_std = preprocess.prepare(ds)
  np.testing.assert_allclose(only_std.x_test, s_test)
