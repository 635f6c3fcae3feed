"""Models (shapes, features, registry, SpecNet) and training (loss decreases, resume,
one compilation across hyper-parameters, early stopping, f - f0, errors)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import io
from kernelcond import kernels
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
  with pytest.raises(ValueError, match="mlp, convnet, resnet18, spec_net"):
    models.get_model("vgg", 10)
  with pytest.raises(ValueError, match="Unknown argument"):
    models.get_model("mlp", 10, width=3)
  with pytest.raises(ValueError, match="norm"):
    models.get_model("convnet", 10, norm="layer")
  with pytest.raises(ValueError, match="schedule"):
    train.TrainConfig(schedule="linear")
  with pytest.raises(ValueError, match="xent, soft_xent, mse"):
    train.TrainConfig(loss="hinge")
  with pytest.raises(ValueError, match="label_smoothing"):
    train.TrainConfig(label_smoothing=1.0)
  assert train.parse_model_kwargs("width=8, norm=batch,widths=4:2") == {
      "width": 8, "norm": "batch", "widths": (4, 2)}


def test_convnet_input_padding_maps_28_to_32():
  x = jnp.zeros((1, 28, 28, 1))
  for padding, side in ((0, 3), (2, 4)):  # 28 -> 14 -> 7 -> 3; 32 -> 16 -> 8 -> 4
    model = models.get_model("convnet", 10, width=4, depth=3, input_padding=padding)
    shapes = jax.eval_shape(lambda m=model: m.init(jax.random.PRNGKey(0), x))
    assert shapes["params"]["head"]["kernel"].shape == (side * side * 4, 10)


@pytest.mark.parametrize("spec", ["fc2", "conv1:b_std=0.0"])
def test_spec_net_is_the_kernel_spec_finite_network(spec):
  x = np.random.default_rng(0).standard_normal((3, 6, 6, 2)).astype(np.float32)
  model = models.get_model("spec_net", 4, spec=spec, width=8)
  params = model.init(jax.random.PRNGKey(0), x)["params"]["net"]
  init_fn, apply_fn = kernels.init_and_apply(kernels.get_spec(spec), 8, out_dim=4)
  layers = [(params[f"layer_{i}"]["w"], params[f"layer_{i}"].get("b")) for i in range(len(params))]
  reference = init_fn(jax.random.PRNGKey(1), x.shape[1:])
  assert [(w.shape, None if b is None else b.shape) for w, b in layers] == [
      (w.shape, None if b is None else b.shape) for w, b in reference]
  np.testing.assert_allclose(model.apply({"params": {"net": params}}, x), apply_fn(layers, x),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="feature"):
    model.apply({"params": {"net": params}}, x, return_features=True)


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
  # Mixup and label smoothing draw from fold_in(rng, step): a resumed run must match.
  config = train.TrainConfig(model="convnet", model_kwargs={"width": 3, "depth": 1,
                                                            "norm": "batch"},
                             epochs=4, batch_size=8, lr=0.05, seed=1, mixup_alpha=0.4,
                             label_smoothing=0.1)
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


def test_numeric_hyperparameters_share_one_compilation():
  x, y = _toy(n=10)
  x = x[:, :3, :3]  # shapes no other test uses
  traces = []

  def counted_step(state, batch):
    traces.append(1)  # runs once per trace, never per call
    return train._train_step(state, batch)

  step = jax.jit(counted_step)
  base = train.TrainConfig(model="mlp", model_kwargs={"widths": (5,)}, batch_size=5, epochs=2,
                           mixup_alpha=0.2)
  other = dataclasses.replace(base, lr=0.3, epochs=5, weight_decay=1e-2, momentum=0.5,
                              label_smoothing=0.1, mixup_alpha=0.4, seed=3)
  before = train.train_step._cache_size()
  for config in (base, other):
    state = train.create_train_state(config, x.shape[1:], 3, total_steps=7)
    for _ in range(3):
      state, _ = step(state, {"x": x[:5], "y": y[:5]})
    train.train_and_evaluate(config, x, y)
  assert len(traces) == 1
  assert train.train_step._cache_size() == before + 1
  hp = state.opt_state.hyperparams  # the numbers live in the state, as arrays
  assert float(hp["lr"]) == pytest.approx(0.3) and float(hp["momentum"]) == pytest.approx(0.5)
  assert int(hp["total_steps"]) == 7
  adam = train.create_train_state(dataclasses.replace(base, optimizer="adam"), x.shape[1:], 3, 7)
  step(adam, {"x": x[:5], "y": y[:5]})  # the optimiser's name is static: a new trace
  assert len(traces) == 2


def test_learning_rate_comes_from_the_state():
  x, y = _toy(n=12)
  grads_at = lambda lr: train.train_step(
      train.create_train_state(train.TrainConfig(model="mlp", model_kwargs={"widths": (4,)},
                                                 lr=lr, momentum=0.0, weight_decay=0.0,
                                                 schedule="constant"), x.shape[1:], 3, 5),
      {"x": x, "y": y})[0]
  init = train.create_train_state(train.TrainConfig(model="mlp", model_kwargs={"widths": (4,)}),
                                  x.shape[1:], 3, 5)
  one, two = grads_at(0.1), grads_at(0.2)
  for p0, p1, p2 in zip(*(jax.tree_util.tree_leaves(s.params) for s in (init, one, two))):
    np.testing.assert_allclose(np.asarray(p2) - p0, 2 * (np.asarray(p1) - p0), rtol=1e-4,
                               atol=1e-7)


def test_early_stopping_returns_the_best_validation_parameters():
  x, y = _toy(n=24)
  x_val, y_val = _toy(n=30, seed=3)
  y_val = np.where(np.arange(30) % 3 == 0, (y_val + 1) % 3, y_val).astype(np.int32)
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (16,)}, epochs=30,
                             batch_size=24, lr=0.1, schedule="constant", val_every=1)
  # Independent computation: the validation accuracy after every step (one step per epoch).
  init = train.create_train_state(config, x.shape[1:], 3, 30)
  params = [init.params]
  accuracy = [train.evaluate(init, x_val, y_val)["accuracy"]]

  def record(epoch, state):
    params.append(state.params)
    accuracy.append(train.evaluate(state, x_val, y_val)["accuracy"])

  plain = dataclasses.replace(config, val_every=0)
  train.train_and_evaluate(plain, x, y, record_fn=record)
  best = int(np.argmax(accuracy))  # the first best
  assert 0 < best < 30 and max(accuracy) > accuracy[-1]  # a run where the choice matters

  state, metrics = train.train_and_evaluate(config, x, y, x_val=x_val, y_val=y_val)
  assert metrics["best_step"] == best and metrics["steps_run"] == 30
  assert metrics["val_accuracy"] == pytest.approx(accuracy[best])
  for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(params[best])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  patient = dataclasses.replace(config, patience=3)
  _, metrics = train.train_and_evaluate(patient, x, y, x_val=x_val, y_val=y_val)
  assert metrics["best_step"] <= best and metrics["steps_run"] == metrics["best_step"] + 3
  with pytest.raises(ValueError, match="x_val"):
    train.train_and_evaluate(config, x, y)


def test_early_stopping_resumes_with_its_best_parameters(tmp_path):
  x, y = _toy(n=24)
  x_val, y_val = _toy(n=30, seed=3)
  y_val = np.where(np.arange(30) % 3 == 0, (y_val + 1) % 3, y_val).astype(np.int32)
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (16,)}, epochs=30,
                             batch_size=24, lr=0.1, schedule="constant", val_every=2,
                             patience=10)
  reference, ref_metrics = train.train_and_evaluate(config, x, y, x_val=x_val, y_val=y_val)

  def kill(epoch, state):
    if epoch == 9:
      raise _Killed()

  ckpt = str(tmp_path / "ckpt")
  with pytest.raises(_Killed):
    train.train_and_evaluate(config, x, y, x_val=x_val, y_val=y_val, checkpoint_dir=ckpt,
                             checkpoint_every=4, record_fn=kill)
  resumed, metrics = train.train_and_evaluate(config, x, y, x_val=x_val, y_val=y_val,
                                              checkpoint_dir=ckpt, checkpoint_every=4)
  for key in ("best_step", "steps_run", "val_accuracy", "train_loss"):
    assert metrics[key] == pytest.approx(ref_metrics[key]), key
  for a, b in zip(jax.tree_util.tree_leaves(reference.params),
                  jax.tree_util.tree_leaves(resumed.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  # A stopped run resumed again trains no further.
  again, metrics = train.train_and_evaluate(config, x, y, x_val=x_val, y_val=y_val,
                                            checkpoint_dir=ckpt)
  assert metrics["steps_run"] == ref_metrics["steps_run"]


def test_centred_output_is_zero_at_init_and_f_minus_f0_after_training():
  x, y = _toy(n=12)
  config = train.TrainConfig(model="spec_net", model_kwargs={"spec": "fc2", "width": 16},
                             epochs=5, batch_size=12, lr=0.1, centre_output=True, loss="mse")
  state = train.create_train_state(config, x.shape[1:], 3, 5, "mse")
  np.testing.assert_array_equal(train.predict(state, x), np.zeros((12, 3), np.float32))
  assert np.abs(np.asarray(state.apply_fn(state.variables(), x))).max() > 1e-2
  trained, _ = train.train_and_evaluate(config, x, y)
  f = trained.apply_fn(trained.variables(), x)
  f0 = trained.apply_fn(trained.variables(trained.init_params), x)
  np.testing.assert_allclose(train.predict(trained, x), f - f0, rtol=1e-5, atol=1e-6)
  assert np.abs(f - f0).max() > 1e-2


def test_soft_xent_uses_targets_as_distributions_and_refuses_non_positive_rows():
  x, y = _toy(n=12)
  learned = (np.eye(3, dtype=np.float32)[y] * 3.0 - 1.0)  # KIP-like: negative entries
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (8,)}, epochs=3,
                             batch_size=12, loss="soft_xent")
  _, metrics = train.train_and_evaluate(config, x, learned)
  assert metrics["loss"] == "soft_xent" and np.isfinite(metrics["train_loss"])
  learned[4] = -1.0
  with pytest.raises(ValueError, match="row 4 has no positive entry"):
    train.train_and_evaluate(config, x, learned)


def test_augmentation_is_applied_and_reproducible():
  augment = pytest.importorskip("kernelcond.nets.augment")
  if not hasattr(augment, "augment"):
    pytest.skip("kernelcond.nets.augment.augment is not written yet")
  x, y = _toy(n=12)
  x = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # 8x8 images
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (8,)}, epochs=2,
                             batch_size=6, augment="flip_cutout")
  a, _ = train.train_and_evaluate(config, x, y)
  b, _ = train.train_and_evaluate(config, x, y)
  c, _ = train.train_and_evaluate(dataclasses.replace(config, augment="none"), x, y)
  leaves = lambda s: [np.asarray(v) for v in jax.tree_util.tree_leaves(s.params)]
  for u, v in zip(leaves(a), leaves(b)):
    np.testing.assert_array_equal(u, v)
  assert any(not np.allclose(u, v) for u, v in zip(leaves(a), leaves(c)))
  with pytest.raises(ValueError, match="blur"):  # refused before anything is compiled
    train.create_train_state(dataclasses.replace(config, augment="flip_blur"), x.shape[1:], 3, 1)
