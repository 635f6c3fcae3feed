"""Label cleaning: calibration, detection metrics, folds, cleanlab flags, cross-validation, a run."""

import dataclasses
import os

import numpy as np
import pytest

from kernelcond import clean
from kernelcond import data
from kernelcond import preprocess


def test_temperature_minimises_the_nll_on_a_grid():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 200)
  logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[labels] * (rng.random(200) < 0.6)[:, None]
  t = clean.fit_temperature(logits, labels)
  grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
  best = grid[np.argmin([clean.nll(logits, labels, g) for g in grid])]
  assert abs(np.log(t) - np.log(best)) < 2e-3
  probs = clean.softmax(logits, t)
  np.testing.assert_allclose(probs.sum(1), 1)
  np.testing.assert_allclose(-np.mean(np.log(probs[np.arange(200), labels])),
                             clean.nll(logits, labels, t), rtol=1e-10)


def test_detection_metrics_against_hand_counts():
  mask = np.array([1, 1, 0, 0, 0, 1], bool)
  flags = np.array([1, 0, 1, 0, 0, 1], bool)
  scores = np.array([0.9, 0.2, 0.8, 0.1, 0.3, 0.7])
  m = clean.detection_metrics(flags, scores, mask)
  assert (m["precision"], m["recall"]) == (2 / 3, 2 / 3)
  assert m["f1"] == pytest.approx(2 / 3)
  pos, neg = scores[mask], scores[~mask]
  pairs = np.mean([[p > q for q in neg] for p in pos])  # Mann-Whitney
  assert m["auroc"] == pytest.approx(pairs)
  assert m["true_positives"] == 2 and m["n_flagged"] == 3


def test_kfold_is_stratified_and_covers_every_example():
  labels = np.repeat(np.arange(3), [11, 7, 5])
  fold = clean.kfold(labels, 4, seed=1)
  for c in range(3):
    counts = np.bincount(fold[labels == c], minlength=4)
    assert counts.max() - counts.min() <= 1
  sizes = np.bincount(fold, minlength=4)
  assert sizes.max() - sizes.min() <= 1


def test_cleanlab_flags_confidently_contradicted_labels():
  rng = np.random.default_rng(0)
  true = np.repeat(np.arange(3), 30)
  given = true.copy()
  flipped = np.array([3, 40, 71, 75])
  given[flipped] = (true[flipped] + 1) % 3
  probs = 0.05 + 0.85 * np.eye(3)[true] + 0.02 * rng.random((90, 3))
  probs /= probs.sum(1, keepdims=True)
  d = clean.cleanlab_detection(probs, given)
  np.testing.assert_array_equal(np.flatnonzero(d.flags), flipped)
  np.testing.assert_array_equal(d.suggested, true)
  assert set(np.argsort(-d.scores)[:4]) == set(flipped)
  top = clean.top_k_detection(d.scores, 2, d.suggested)
  assert top.flags.sum() == 2 and set(np.flatnonzero(top.flags)) <= set(flipped)


def test_cross_val_outputs_come_from_networks_without_the_fold():
  from kernelcond.nets import protocols
  from kernelcond.nets import train

  rng = np.random.default_rng(0)
  x = rng.normal(size=(24, 2, 2, 1)).astype(np.float32)
  y = np.arange(24) % 2
  protocol = protocols.get_protocol("mlp", width=16, epochs=1, batch_size=8)
  out = clean.cross_val_outputs(protocol, x, y, 2, folds=2, seed=0)
  fold = clean.kfold(y, 2, 0)
  # Independent recomputation of fold 1: trained on fold 0 only.
  config = protocol.train_config(x.shape[1:], loss="mse", spec=clean._protocol_spec(protocol),
                                 seed=1)
  targets = protocols.protocol_targets(protocol, y, 2)
  state, _ = train.train_and_evaluate(config, x[fold == 0], targets[fold == 0], num_classes=2)
  np.testing.assert_allclose(out[fold == 1], train.predict(state, x[fold == 1]), atol=1e-5)


@pytest.fixture(scope="module")
def digits():
  return preprocess.prepare(data.load_dataset("digits"))


def test_run_flags_injected_noise_and_resumes(digits, tmp_path):
  config = clean.CleanConfig(noise="symmetric:0.2", subset=300, detectors=("krr_loo",
                             "krr_residual"), conditions=("cleaned",), net_epochs=1, grid=8)
  workdir = str(tmp_path / "run")
  out = clean.run(config, digits, workdir)
  run = out["run"]
  assert run["n_used"] == 300 and abs(run["n_noisy"] - 60) <= 5  # 20% of each class, rounded
  assert run["f1"] > 0.8 and run["auroc"] > 0.95  # digits: flips are easy to see
  noisy = np.load(os.path.join(workdir, "noise.npz"))
  assert run["n_noisy"] == noisy["mask"].sum()
  idx = np.asarray(run["subset_indices"])
  flagged = np.asarray(run["flagged"]["indices"])
  # Flagged indices are in the dataset's original order: map back through the subset.
  pos = np.searchsorted(idx, flagged)
  np.testing.assert_array_equal(idx[pos], flagged)
  np.testing.assert_array_equal(noisy["given"][pos], run["flagged"]["given_labels"])
  assert run["flagged"]["dataset_fingerprint"] == digits.fingerprint()
  cleaned = out["evaluations"]["cleaned"]
  assert cleaned["support_size"] == 300 - len(flagged)
  assert cleaned["networks"]["mlp"]["config"]["epochs"] == 1  # the result names its protocol
  for name in ("pr_curve.png", "flagged.png", "detectors/krr_loo.npz"):
    assert os.path.exists(os.path.join(workdir, name))
  assert clean.finished(config, workdir)["run"]["f1"] == run["f1"]
  with pytest.raises(ValueError, match="another configuration"):
    clean.finished(dataclasses.replace(config, noise="pairs:0.2"), workdir)


def test_config_errors_name_the_flag():
  with pytest.raises(ValueError, match="valid: krr_loo, cv_net, krr_residual, el2n"):
    clean.CleanConfig(detectors=("knn",))
  with pytest.raises(ValueError, match="needs krr_loo or cv_net"):
    clean.CleanConfig(detectors=("krr_residual",))
  with pytest.raises(ValueError, match="--cv_protocol 'kernel'"):
    clean.CleanConfig(cv_protocol="kernel")
  assert "oracle" not in clean.CleanConfig(noise="none").conditions


def test_random_feature_kernel_goes_through_feature_space_loo():
  import jax
  from kernelcond import kernels
  from kernelcond import loo

  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 4, 4, 1)).astype(np.float32)
  t = preprocess.one_hot(np.arange(30) % 3, 3, center=True)
  config = clean.CleanConfig(kernel="fc2", kernel_type="nngp", rf_models=2, rf_width=8,
                             block_size=16)
  got = clean.make_krr_loo_fn(config, x, t)(0.1)
  phi = kernels.random_feature_fn("fc2", 2, 8, "nngp")(jax.random.PRNGKey(0), x)
  np.testing.assert_allclose(got, loo.loo_predictions(np.asarray(phi) @ np.asarray(phi).T, t,
                                                      0.1), atol=2e-4)
