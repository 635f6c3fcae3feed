"""Synthetic label noise: matrices in closed form, exact per-class counts, spec parsing, files."""

import numpy as np
import pytest

from kernelcond import noise


def test_symmetric_and_pair_matrices_in_closed_form():
  t = noise.noise_matrix("symmetric:0.3", 4)
  np.testing.assert_allclose(np.diag(t), 0.7)
  np.testing.assert_allclose(t[1, 0], 0.1)
  p = noise.noise_matrix("pairs:0.4", 3)
  np.testing.assert_allclose(p, [[0.6, 0, 0.4], [0.4, 0.6, 0], [0, 0.4, 0.6]])
  np.testing.assert_allclose(noise.noise_matrix("none", 3), np.eye(3))


def test_classcond_has_the_papers_trace_and_sparsity():
  t = noise.noise_matrix("classcond:0.4:0.6", 10, seed=3)
  np.testing.assert_allclose(t.sum(0), 1)
  np.testing.assert_allclose(np.trace(t), 10 * 0.6)
  off = t - np.diag(np.diag(t))
  # round((1 - 0.6) * 9) = 4 non-zero off-diagonal entries per column, 5 zeros.
  np.testing.assert_array_equal((off > 0).sum(0), 4)
  assert not np.allclose(t, noise.noise_matrix("classcond:0.4:0.6", 10, seed=4))


def test_apply_noise_moves_exact_rounded_counts_per_class():
  labels = np.repeat(np.arange(3), [10, 7, 5])
  t = np.array([[0.7, 0.2, 0.0], [0.2, 0.8, 0.5], [0.1, 0.0, 0.5]])
  out = noise.apply_noise(labels, t, seed=0)
  counts = np.zeros((3, 3), int)
  np.add.at(counts, (out.given, out.true), 1)
  # Hand-rounded: class 0: 7/2/1; class 1: 1.4/5.6 -> 1/6; class 2: 2.5/2.5 -> 3/2 (ties to the
  # lower class index).
  np.testing.assert_array_equal(counts, [[7, 1, 0], [2, 6, 3], [1, 0, 2]])
  np.testing.assert_array_equal(out.mask, out.given != labels)
  np.testing.assert_array_equal(out.true, labels)
  again = noise.apply_noise(labels, t, seed=0)
  np.testing.assert_array_equal(again.given, out.given)
  assert not np.array_equal(noise.apply_noise(labels, t, seed=1).given, out.given)


def test_symmetric_noise_flips_exactly_the_rate():
  labels = np.repeat(np.arange(10), 50)
  out = noise.corrupt(labels, "symmetric:0.2", 10, seed=5)
  assert out.mask.sum() == 100
  assert np.all(np.bincount(out.true[out.mask], minlength=10) == 10)


def test_parse_errors_name_the_valid_kinds():
  with pytest.raises(ValueError, match="valid: none, symmetric, pairs, classcond"):
    noise.parse_spec("uniform:0.2")
  with pytest.raises(ValueError, match="noise rate must lie in"):
    noise.parse_spec("symmetric:1.5")
  with pytest.raises(ValueError, match="must be a number"):
    noise.parse_spec("pairs:x")
  assert str(noise.parse_spec("classcond:0.4")) == "classcond:0.4:0"
  assert not noise.parse_spec("none").has_ground_truth


def test_matrix_files_and_saved_noise(tmp_path):
  t = noise.noise_matrix("pairs:0.25", 3)
  csv = tmp_path / "t.csv"
  csv.write_text("\n".join(",".join(str(v) for v in row) for row in t))
  npy = tmp_path / "t.npy"
  np.save(npy, t)
  for path in (csv, npy):
    np.testing.assert_allclose(noise.noise_matrix(str(path), 3), t)
  with pytest.raises(ValueError, match="dataset has 4 classes"):
    noise.noise_matrix(str(npy), 4)
  np.save(npy, t * 2)
  with pytest.raises(ValueError, match="columns must sum to 1"):
    noise.noise_matrix(str(npy), 3)
  out = noise.corrupt(np.arange(30) % 3, "symmetric:0.2", 3, seed=0)
  path = str(tmp_path / "noise.npz")
  noise.save_noise(path, out, spec="symmetric:0.2", seed=0, fingerprint="abc")
  back, meta = noise.load_noise(path, "abc")
  np.testing.assert_array_equal(back.given, out.given)
  assert meta == {"spec": "symmetric:0.2", "seed": 0, "fingerprint": "abc"}
  with pytest.raises(ValueError, match="made for dataset abc"):
    noise.load_noise(path, "xyz")
