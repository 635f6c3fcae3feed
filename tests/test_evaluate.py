"""The one evaluation: KRR against an independent solve, hard vs soft labels, config checks."""

import numpy as np
import pytest

from kernelcond import evaluate
from kernelcond import kernels

C = 3


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((C, 12)) * 3
  labels = np.arange(30) % C
  x = (centres[labels] + rng.standard_normal((30, 12))).astype(np.float32)
  test_labels = np.arange(60) % C
  x_test = (centres[test_labels] + rng.standard_normal((60, 12))).astype(np.float32)
  return x, np.eye(C, dtype=np.float32)[labels], labels, x_test, test_labels


def test_krr_accuracy_matches_an_explicit_float64_solve():
  x, y, _, x_test, y_test = _problem()
  config = evaluate.EvalConfig(kernel="fc2", kernel_backend="native", reg=1e-3, protocols=())
  result = evaluate.evaluate_support(config, x, y, x_test, y_test, num_classes=C)
  kernel_fn = kernels.make_kernel_fn("fc2", "native")
  k = np.asarray(kernel_fn(x, x, "ntk"), np.float64)
  k_t = np.asarray(kernel_fn(x_test, x, "ntk"), np.float64)
  alpha = np.linalg.solve(k + 1e-3 * np.trace(k) / len(k) * np.eye(len(k)), y)
  expected = np.mean((k_t @ alpha).argmax(1) == y_test)
  assert result["krr"]["accuracy"] == pytest.approx(expected)
  assert result["networks"] == {} and result["label_kind"] == "soft"


def test_hard_labels_only_when_labels_are_unchanged():
  y = np.eye(C, dtype=np.float32)[[0, 1, 2]]
  np.testing.assert_array_equal(evaluate.hard_labels(y, y.copy()), [0, 1, 2])
  assert evaluate.hard_labels(y + 0.1, y) is None
  assert evaluate.hard_labels(y) is None
  np.testing.assert_array_equal(evaluate.hard_labels(np.array([2, 0])), [2, 0])


def test_networks_train_with_the_protocol_and_report_every_seed():
  x, y, labels, x_test, y_test = _problem()
  config = evaluate.EvalConfig(kernel="fc2", kernel_backend="native", protocols=("mlp",),
                               net_seeds=(0, 1), net_epochs=30)
  result = evaluate.evaluate_support(config, x, y, x_test, y_test, num_classes=C,
                                     labels=labels)
  network = result["networks"]["mlp"]
  assert len(network["accuracies"]) == 2 and network["mean"] > 0.6  # 3 separable clusters
  assert result["label_kind"] == "hard"
  assert "KRR" in evaluate.summary_line(result) and "mlp" in evaluate.summary_line(result)


def test_bad_configs_name_the_problem():
  with pytest.raises(ValueError, match="valid: .*dc"):
    evaluate.EvalConfig(protocols=("resnet",))
  with pytest.raises(ValueError, match="fc kernel spec"):
    evaluate.EvalConfig(kernel="conv3", protocols=("mlp",))
  with pytest.raises(ValueError, match="ntk, nngp"):
    evaluate.EvalConfig(kernel_type="rbf")
  with pytest.raises(ValueError, match="Unknown kernel spec"):
    evaluate.EvalConfig(kernel="fc99")
  with pytest.raises(ValueError, match="rf_models"):
    evaluate.EvalConfig(rf_models=-1)
  with pytest.raises(ValueError, match="no closed-form"):  # instance norm: random features only
    evaluate.EvalConfig(kernel="conv3_in", protocols=())
  assert evaluate.EvalConfig(kernel="conv3_in", protocols=(), rf_models=2).kernel == "conv3_in"


def test_slow_kernel_hint_only_for_exact_pooled_conv_kernels_on_cpu():
  fmnist, digits = (28, 28, 1), (8, 8, 1)
  conv3 = evaluate.EvalConfig(kernel="conv3", protocols=())
  hint = evaluate.slow_kernel_hint(conv3, "cpu", fmnist)
  assert hint and "--rf_models" in hint and "conv3" in hint
  assert evaluate.slow_kernel_hint(evaluate.EvalConfig(kernel="conv3_gap", protocols=()), "cpu",
                                   (32, 32, 3))
  for config, platform, shape in (
      (conv3, "gpu", fmnist), (conv3, "cpu", digits), (conv3, "cpu", (784,)),
      (evaluate.EvalConfig(kernel="conv3", protocols=(), rf_models=4), "cpu", fmnist),
      (evaluate.EvalConfig(kernel="conv1:pool=false", protocols=()), "cpu", fmnist),
      (evaluate.EvalConfig(kernel="fc3", protocols=()), "cpu", fmnist)):
    assert evaluate.slow_kernel_hint(config, platform, shape) is None


def test_random_feature_evaluation_is_krr_with_the_random_kernel():
  x, y, _, x_test, y_test = _problem()
  config = evaluate.EvalConfig(kernel="fc2", reg=1e-3, protocols=(), rf_models=3, rf_width=16)
  result = evaluate.evaluate_support(config, x, y, x_test, y_test, num_classes=C)
  assert result["krr"]["backend"] == "random_features"
  assert (result["krr"]["rf_models"], result["krr"]["rf_width"]) == (3, 16)
  kernel_fn = kernels.make_random_kernel_fn("fc2", 3, 16)  # the same fixed networks (key 0)
  k = np.asarray(kernel_fn(x, x, "ntk"), np.float64)
  k_t = np.asarray(kernel_fn(x_test, x, "ntk"), np.float64)
  alpha = np.linalg.solve(k + 1e-3 * np.trace(k) / len(k) * np.eye(len(k)), y)
  assert result["krr"]["accuracy"] == pytest.approx(np.mean((k_t @ alpha).argmax(1) == y_test))
