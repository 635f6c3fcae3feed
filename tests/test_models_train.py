"""Models (shapes, features, registry) and training (loss decreases, resume, errors)."""

import dataclasses

import jax
import numpy as np
import pytest

from kernelcond import io
from kernelcond.nets import models
from kernelcond.nets import train


@pytest.mark.parametrize("name,kwargs,feature_dim", [
    ("mlp", {"widths": (16, 8)}, 8),
    ("convnet", {"width": 4, "depth": 2, "norm": "instance"}, 4 * 2 * 2),
    ("convnet", {"width": 4, "depth": 3, "norm": "batch"}, 4),
    ("convnet", {"width": 4, "depth": 1, "norm": "none"}, 4 * 4 * 4),
    ("resnet18", {"width": 2}, 16),
])
def test_models_give_logits_and_features(name, kwargs, feature_dim):
  model = models.get_model(name, 5, **kwargs)
  x = np.random.default_rng(0).standard_normal((3, 8, 8, 2)).astype(np.float32)
  # Shapes via eval_shape, values from numpy: compiling a jitted ResNet init costs
  # ~20 s on the current-JAX CPU compiler, and the architecture is what is tested here.
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  rng = np.random.default_rng(1)
  variables = jax.tree_util.tree_map(
      lambda s: np.abs(rng.standard_normal(s.shape)).astype(np.float32) * 0.3 + 0.1, shapes)

  @jax.jit
  def forward(variables, x):
    logits = model.apply(variables, x, train=False)
    feats = model.apply(variables, x, train=False, return_features=True)
    if "batch_stats" not in variables:
      return logits, feats, None
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return logits, feats, updates

  logits, feats, updates = forward(variables, x)
  assert logits.shape == (3, 5) and feats.shape == (3, feature_dim)
  head = variables["params"]["head"]
  np.testing.assert_allclose(feats @ head["kernel"] + head["bias"], logits, rtol=1e-4, atol=1e-4)
  assert (updates is None) == (kwargs.get("norm", "batch") != "batch" or name == "mlp")


def test_registry_errors():
  with pytest.raises(ValueError, match="convnet, mlp, resnet18"):
    models.get_model("vgg", 10)
  with pytest.raises(ValueError, match="Unknown argument"):
    models.get_model("mlp", 10, width=3)
  with pytest.raises(ValueError, match="norm"):
    models.get_model("convnet", 10, norm="layer")
  with pytest.raises(ValueError, match="schedule"):
    train.TrainConfig(schedule="linear")
  with pytest.raises(ValueError, match="loss"):
    train.TrainConfig(loss="hinge")
  assert train.parse_model_kwargs("width=8, norm=batch,widths=4:2") == {
      "width": 8, "norm": "batch", "widths": (4, 2)}


def _toy(n=36, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, n).astype(np.int32)
  x = (rng.standard_normal((n, 4, 4, 1)) + y[:, None, None, None]).astype(np.float32)
  return x, y


def test_train_step_decreases_loss():
  x, y = _toy()
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (16,)}, lr=0.05)
  state = train.create_train_state(config, x.shape[1:], 3, total_steps=20)
  batch = {"x": x, "y": y}
  losses = []
  for _ in range(20):
    state, metrics = train.train_step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0]
  assert int(state.step) == 20
  assert float(train.eval_step(state, batch)["count"]) == len(y)


@pytest.mark.parametrize("n", [35, 36, 37])
def test_schedule_steps_without_divisibility(n):
  config = train.TrainConfig(model="mlp", epochs=3, batch_size=8)
  total, per_epoch, bs = train.schedule_steps(config, n)
  assert (per_epoch, bs, total) == (n // 8, 8, 3 * (n // 8))
  assert train.schedule_steps(dataclasses.replace(config, steps=11), n)[0] == 11
  # A set smaller than the batch is used whole.
  assert train.schedule_steps(config, 5) == (3, 1, 5)


class _Killed(Exception):
  """Stands for a run killed mid-epoch."""


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
  x, y = _toy()
  config = train.TrainConfig(model="convnet", model_kwargs={"width": 3, "depth": 1,
                                                            "norm": "batch"},
                             epochs=4, batch_size=8, lr=0.05, seed=1)
  reference, ref_metrics = train.train_and_evaluate(config, x, y, x, y)

  def kill_after_epoch_2(epoch, state):
    if epoch == 2:  # step 8; the latest checkpoint is step 6 (mid-epoch 2)
      raise _Killed()

  ckpt = str(tmp_path / "ckpt")
  with pytest.raises(_Killed):
    train.train_and_evaluate(config, x, y, x, y, checkpoint_dir=ckpt, checkpoint_every=3,
                             record_fn=kill_after_epoch_2)
  assert io.checkpoint_steps(ckpt)[-1] == 6
  epochs_seen = []
  resumed, metrics = train.train_and_evaluate(config, x, y, x, y, checkpoint_dir=ckpt,
                                              checkpoint_every=3,
                                              record_fn=lambda e, s: epochs_seen.append(e))
  assert epochs_seen == [2, 3, 4]
  for a, b in zip(jax.tree_util.tree_leaves((reference.params, reference.batch_stats)),
                  jax.tree_util.tree_leaves((resumed.params, resumed.batch_stats))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert metrics["test_accuracy"] == pytest.approx(ref_metrics["test_accuracy"])
  assert int(resumed.step) == 16
  with pytest.raises(ValueError, match="another configuration"):
    train.train_and_evaluate(dataclasses.replace(config, lr=0.1), x, y, x, y,
                             checkpoint_dir=ckpt)


def test_soft_targets_tiny_set_and_metrics():
  x, y = _toy(n=6)
  targets = np.eye(3, dtype=np.float32)[y] * 0.8 + 0.1
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (8,)}, epochs=30,
                             batch_size=256, lr=0.05)
  _, metrics = train.train_and_evaluate(config, x, targets, *_toy(n=20, seed=1))
  assert metrics["loss"] == "mse" and metrics["batch_size"] == 6 and metrics["steps"] == 30
  assert 0.0 <= metrics["test_accuracy"] <= 1.0 and np.isfinite(metrics["train_loss"])
  assert metrics["num_classes"] == 3


def test_non_finite_loss_and_bad_inputs_raise():
  x, y = _toy()
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (8,)}, epochs=3,
                             batch_size=12, lr=1e12, loss="mse", weight_decay=0.0)
  with pytest.raises(FloatingPointError, match="Non-finite"):
    train.train_and_evaluate(config, x * 1e3, y)
  with pytest.raises(ValueError, match="y_train"):
    train.train_and_evaluate(config, x, y[:-1])
  bad = x.copy()
  bad[0, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="non-finite"):
    train.train_and_evaluate(config, bad, y)


def test_rescale_targets_keeps_argmax_and_sets_one_hot_rms():
  rng = np.random.default_rng(0)
  y = 25.0 * rng.standard_normal((30, 10)).astype(np.float32)
  scaled = train.rescale_targets(y)
  np.testing.assert_array_equal(scaled.argmax(1), y.argmax(1))
  np.testing.assert_allclose(np.sqrt(np.mean(scaled ** 2)), np.sqrt(9) / 10, rtol=1e-5)
  np.testing.assert_allclose(scaled / y, np.full_like(y, scaled[0, 0] / y[0, 0]), rtol=1e-5)
  with pytest.raises(ValueError, match="RMS"):
    train.rescale_targets(np.zeros((3, 10)))
  with pytest.raises(ValueError, match="shape"):
    train.rescale_targets(np.ones((3,)))


def test_adam_option_trains_and_unknown_optimizer_is_named():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((40, 4, 4, 1)).astype(np.float32)
  labels = (x.reshape(40, -1).sum(1) > 0).astype(np.int32)
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (32,)}, epochs=60,
                             batch_size=40, lr=1e-2, optimizer="adam", weight_decay=0.0)
  _, metrics = train.train_and_evaluate(config, x, labels, x, labels)
  assert metrics["train_accuracy"] >= 0.95
  with pytest.raises(ValueError, match="sgd, adam"):
    train.TrainConfig(optimizer="lbfgs")
