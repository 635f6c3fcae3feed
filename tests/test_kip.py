"""KIP: the loss against a hand-computed KRR error, the jitted step, label freezing,
1 vs 4 devices, the 'sample' kernel, and checkpoint round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import io
from kernelcond import kernels
from kernelcond.condense import base
from kernelcond.condense import kip
from kernelcond.condense import loop
from kernelcond import krr

C = 3


def _stepper(kernel_fn, config, opt, n_devices=1, key=jax.random.PRNGKey(0)):
  """`step(state, x_t, y_t)` over `kip.make_update`; step t draws from fold_in(key, t)."""
  update = jax.jit(kip.make_update(kernel_fn, config, opt, n_devices=n_devices))
  return lambda state, x_t, y_t: update(state, (x_t, y_t),
                                        jax.random.fold_in(key, state.step))


@pytest.fixture(scope="module")
def kernel_fn():
  return kernels.make_kernel_fn("fc2", "auto")


def _problem(n_support=6, n_target=18, seed=0):
  rng = np.random.default_rng(seed)
  x_s = rng.standard_normal((n_support, 4, 4, 1)).astype(np.float32)
  y_s = np.eye(C, dtype=np.float32)[np.arange(n_support) % C]
  x_t = rng.standard_normal((n_target, 4, 4, 1)).astype(np.float32)
  y_t = np.eye(C, dtype=np.float32)[rng.integers(0, C, n_target)]
  return {"x_support": jnp.asarray(x_s), "y_support": jnp.asarray(y_s)}, x_t, y_t


def _numpy_loss(kernel_fn, params, x_t, y_t, reg, get):
  """Independent float64 KRR: explicit inverse, 0.5 * mean over all entries."""
  x_s = params["x_support"]
  k_ss = np.asarray(kernel_fn(x_s, x_s, get), np.float64)
  k_ts = np.asarray(kernel_fn(x_t, x_s, get), np.float64)
  n = len(k_ss)
  alpha = np.linalg.inv(k_ss + reg * np.trace(k_ss) / n * np.eye(n)) @ np.asarray(
      params["y_support"], np.float64)
  return 0.5 * np.mean((k_ts @ alpha - y_t) ** 2)


@pytest.mark.parametrize("get", ["ntk", "nngp"])
def test_loss_matches_hand_computed_krr_mse(kernel_fn, get):
  params, x_t, y_t = _problem()
  reg = 1e-2
  loss = kip.loss_fn(params, x_t, y_t, kernel_fn, reg, get)
  np.testing.assert_allclose(loss, _numpy_loss(kernel_fn, params, x_t, y_t, reg, get),
                             rtol=1e-4)


def test_step_decreases_loss(kernel_fn):
  params, x_t, y_t = _problem()
  config = kip.KipConfig(lr=0.05, reg=1e-3)
  opt = kip.make_optimizer(config)
  state = kip.init_state(params["x_support"], params["y_support"], opt)
  step = _stepper(kernel_fn, config, opt, n_devices=1)
  losses = []
  for _ in range(30):
    state, metrics = step(state, x_t, y_t)
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 30
  assert losses[-1] < 0.5 * losses[0]
  # The reported loss is the loss of the parameters before the update.
  np.testing.assert_allclose(losses[0], kip.loss_fn(params, x_t, y_t, kernel_fn, 1e-3),
                             rtol=1e-5)


def test_learn_labels_false_keeps_labels_fixed(kernel_fn):
  params, x_t, y_t = _problem()
  config = kip.KipConfig(lr=0.05, reg=1e-3, learn_labels=False)
  opt = kip.make_optimizer(config)
  state = kip.init_state(params["x_support"], params["y_support"], opt)
  step = _stepper(kernel_fn, config, opt, n_devices=1)
  for _ in range(3):
    state, _ = step(state, x_t, y_t)
  np.testing.assert_array_equal(state.y_support, params["y_support"])
  assert not np.allclose(state.x_support, params["x_support"])
  # With label learning on, the same step does move the labels.
  config = kip.KipConfig(lr=0.05, reg=1e-3, learn_labels=True)
  opt = kip.make_optimizer(config)
  state = kip.init_state(params["x_support"], params["y_support"], opt)
  state, _ = _stepper(kernel_fn, config, opt, n_devices=1)(state, x_t, y_t)
  assert not np.allclose(state.y_support, params["y_support"])


@pytest.mark.parametrize("n_target", [16, 19])  # divisible by 4, and not (padded)
def test_one_and_four_devices_agree(kernel_fn, n_target):
  assert jax.local_device_count() >= 4, "tests/conftest.py should give 4 CPU devices"
  params, x_t, y_t = _problem(n_target=n_target)
  config = kip.KipConfig(reg=1e-3)
  one = jax.jit(kip.make_loss_and_grad(kernel_fn, config, n_devices=1))
  four = jax.jit(kip.make_loss_and_grad(kernel_fn, config, n_devices=4))
  loss1, acc1, g1 = one(params, x_t, y_t, True)
  loss4, acc4, g4 = four(params, x_t, y_t, True)
  np.testing.assert_allclose(loss1, loss4, rtol=1e-5)
  np.testing.assert_allclose(acc1, acc4)
  for key in params:
    np.testing.assert_allclose(g1[key], g4[key], rtol=1e-4, atol=1e-6)
  # ... and both are the gradient of the plain loss, differentiated through Cholesky
  # (kip uses an adjoint-solve rule instead).
  def plain_loss(p):
    k_ss = kernel_fn(p["x_support"], p["x_support"], "ntk")
    k_ts = kernel_fn(x_t, p["x_support"], "ntk")
    return 0.5 * jnp.mean((krr.predict(k_ts, k_ss, p["y_support"], 1e-3) - y_t) ** 2)

  g = jax.grad(plain_loss)(params)
  for key in params:
    np.testing.assert_allclose(g1[key], g[key], rtol=1e-3, atol=1e-5)


def test_four_device_step_matches_one_device_step(kernel_fn):
  params, x_t, y_t = _problem(n_target=18)
  config = kip.KipConfig(reg=1e-3, kernel_type="sample")
  opt = kip.make_optimizer(config)
  states = {}
  for n in (1, 4):
    state = kip.init_state(params["x_support"], params["y_support"], opt)
    step = _stepper(kernel_fn, config, opt, n_devices=n)
    for _ in range(3):
      state, _ = step(state, x_t, y_t)
    states[n] = state
  np.testing.assert_allclose(states[1].x_support, states[4].x_support, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(states[1].y_support, states[4].y_support, rtol=1e-4, atol=1e-5)


def test_sample_kernel_uses_both_and_matches_loss(kernel_fn):
  params, x_t, y_t = _problem()
  config = kip.KipConfig(reg=1e-3, kernel_type="sample", lr=1e-4)
  opt = kip.make_optimizer(config)
  state = kip.init_state(params["x_support"], params["y_support"], opt)
  step = _stepper(kernel_fn, config, opt, n_devices=1)
  used = set()
  for _ in range(12):
    before = state.params
    state, metrics = step(state, x_t, y_t)
    get = "ntk" if float(metrics["used_ntk"]) == 1.0 else "nngp"
    used.add(get)
    np.testing.assert_allclose(metrics["loss"], kip.loss_fn(before, x_t, y_t, kernel_fn,
                                                            1e-3, get), rtol=1e-4)
  assert used == {"ntk", "nngp"}


def test_state_round_trips_through_checkpoint(kernel_fn, tmp_path):
  params, x_t, y_t = _problem()
  config = kip.KipConfig(reg=1e-3)
  opt = kip.make_optimizer(config)
  step = _stepper(kernel_fn, config, opt, n_devices=1)
  state = kip.init_state(params["x_support"], params["y_support"], opt)
  for _ in range(2):
    state, _ = step(state, x_t, y_t)
  io.save_checkpoint(str(tmp_path), int(state.step), state)
  template = kip.init_state(params["x_support"], params["y_support"], opt)
  restored, saved_step = io.restore_checkpoint(str(tmp_path), template)
  assert saved_step == 2 and int(restored.step) == 2
  for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
    np.testing.assert_array_equal(a, b)
  # Continuing from the restored state is the same as continuing the original.
  a, _ = step(state, x_t, y_t)
  b, _ = step(restored, x_t, y_t)
  np.testing.assert_array_equal(a.x_support, b.x_support)


def test_init_support_and_sampling():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(C), 5).astype(np.int32)
  x = rng.random((len(labels), 4, 4, 1)).astype(np.float32)
  y = np.eye(C, dtype=np.float32)[labels]
  x_s, y_s, idx = base.initial_support(x, y, labels, ipc=2, seed=0)
  assert x_s.shape == (6, 4, 4, 1) and y_s.shape == (6, C)
  np.testing.assert_array_equal(x_s, x[idx])
  np.testing.assert_array_equal(y_s.argmax(1), [0, 0, 1, 1, 2, 2])
  x_n, y_n, _ = base.initial_support(x, y, labels, ipc=2, seed=0, init="noise")
  assert x_n.shape == x_s.shape and not np.allclose(x_n, x_s)
  np.testing.assert_array_equal(y_n, y_s)
  with pytest.raises(ValueError, match="class 0 has 5 examples"):
    base.initial_support(x, y, labels, ipc=6, seed=0)
  with pytest.raises(ValueError, match="real, noise"):
    base.initial_support(x, y, labels, ipc=1, seed=0, init="zeros")
  x_t, y_t = base.sample_examples(jax.random.PRNGKey(0), base.Data.create(x, y, labels), 7)
  assert x_t.shape == (7, 4, 4, 1) and y_t.shape == (7, C)
  flat = np.asarray(x).reshape(len(x), -1)
  rows = [int(np.flatnonzero((flat == r).all(1))[0]) for r in np.asarray(x_t).reshape(7, -1)]
  assert len(set(rows)) == 7  # without replacement
  np.testing.assert_array_equal(np.asarray(y_t), y[rows])
  x_all, _ = base.sample_examples(jax.random.PRNGKey(0), base.Data.create(x, y, labels), 100)
  assert x_all.shape[0] == len(x)


def test_bad_config_is_named():
  with pytest.raises(ValueError, match="ntk, nngp, sample"):
    kip.KipConfig(kernel_type="rbf")
  with pytest.raises(ValueError, match="adam"):
    kip.KipConfig(optimizer="lbfgs")
  with pytest.raises(ValueError, match="n_devices"):
    kip.make_loss_and_grad(lambda *a: None, kip.KipConfig(), n_devices=99)


def test_loop_in_chunks_follows_the_step_by_step_trajectory(kernel_fn):
  rng = np.random.default_rng(3)
  labels = rng.integers(0, C, 40)
  data = base.Data.create(rng.standard_normal((40, 4, 4, 1)), np.eye(C)[labels], labels)
  config = kip.KipConfig(kernel="fc2", lr=0.02, reg=1e-3, target_batch=9, kernel_type="sample",
                         lr_schedule="cosine", steps=7)
  condenser = kip.make(config, kernel_fn, n_devices=1)
  key = jax.random.PRNGKey(5)
  x_s, y_s = data.x[:6], data.y[:6]
  state = condenser.init(key, data, x_s, y_s)
  losses = []
  # The plain Python loop of the interface, one jitted step per call (eager op-by-op
  # dispatch of the same step took most of this test's time).
  step = jax.jit(lambda state, batch, key: condenser.update(state, batch, key))
  for t in range(7):
    batch_key, update_key = loop.step_keys(key, t)
    state, metrics = step(state, condenser.sample_batch(batch_key, data), update_key)
    losses.append(float(metrics["loss"]))
  chunk = loop.make_chunk(condenser, max_chunk=4)
  chunked = condenser.init(key, data, x_s, y_s)
  chunk_losses = []
  for n in (3, 9):  # 9 is clipped to max_chunk=4: 3 + 4 = 7 steps
    chunked, metrics = chunk(chunked, data, key, n)
    chunk_losses.extend(np.asarray(metrics["loss"])[:min(n, 4)])
  assert int(chunked.step) == 7
  np.testing.assert_allclose(chunk_losses, losses, rtol=1e-5)
  np.testing.assert_allclose(chunked.x_support, state.x_support, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(chunked.y_support, state.y_support, rtol=1e-5, atol=1e-6)


def test_cosine_schedule_decays_the_step():
  config = kip.KipConfig(lr=0.1, optimizer="sgd", lr_schedule="cosine", steps=10)
  opt = kip.make_optimizer(config)
  params = {"x_support": jnp.zeros((1,)), "y_support": jnp.zeros((1,))}
  grads = {"x_support": jnp.ones((1,)), "y_support": jnp.ones((1,))}
  state = opt.init(params)
  sizes = []
  for _ in range(12):
    updates, state = opt.update(grads, state, params)
    sizes.append(-float(updates["x_support"][0]))
  np.testing.assert_allclose(sizes[0], 0.1, rtol=1e-6)
  np.testing.assert_allclose(sizes[10:], 0.1 / 100, rtol=1e-4)  # floor: lr / 100
  assert all(a > b for a, b in zip(sizes[:10], sizes[1:11]))
  with pytest.raises(ValueError, match="steps"):
    kip.KipConfig(steps=0)
  with pytest.raises(ValueError, match="constant, cosine"):
    kip.KipConfig(lr_schedule="step")
