"""FRePo: the KRR loss on a pool network's features against an explicit float64 KRR,
a descending step, the online step and re-initialisation, and a resumed run that
follows the uninterrupted one (the pool is checkpointed with the state)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kernelcond import io
from kernelcond import kernels
from kernelcond.condense import frepo
from kernelcond.condense import loop
from kernelcond.kernels import finite

C = 3
CONFIG = frepo.FrepoConfig(kernel="conv1", width=4, n_models=2, max_online_updates=2,
                           online_lr=1e-2, lr=1e-2, reg=1e-3, target_batch=8)


def _problem(n_support=3, n_target=8, seed=0):
  rng = np.random.default_rng(seed)
  x_s = rng.standard_normal((n_support, 4, 4, 1)).astype(np.float32)
  y_s = np.eye(C, dtype=np.float32)[np.arange(n_support) % C] - 1 / C
  x_t = rng.standard_normal((n_target, 4, 4, 1)).astype(np.float32)
  labels = rng.integers(0, C, n_target)
  y_t = np.eye(C, dtype=np.float32)[labels] - 1 / C
  return x_s, y_s, x_t, y_t, labels


def _init(x_s, y_s):
  return _jitted()[2](jax.random.PRNGKey(0), x_s, y_s)


@functools.lru_cache(maxsize=None)
def _jitted():
  """(loss_and_grad, update, init_state), compiled once for the module."""
  return (jax.jit(frepo.make_loss_and_grad(CONFIG, n_devices=1)),
          jax.jit(frepo.make_update(CONFIG, n_devices=1)),
          jax.jit(lambda key, x_s, y_s: frepo.init_state(key, x_s, y_s, CONFIG)))


def test_krr_on_network_features_matches_explicit():
  x_s, y_s, x_t, y_t, labels = _problem()
  state = _init(x_s, y_s)
  net = jax.tree_util.tree_map(lambda a: a[1], state.pool_params)
  loss, accuracy, _ = _jitted()[0](state.params, x_t, y_t, net)
  spec = kernels.get_spec(CONFIG.kernel)
  phi = np.asarray(finite.readout_inputs(spec, net, jnp.concatenate([x_s, x_t])), np.float64)
  phi_s, phi_t = phi[:len(x_s)], phi[len(x_s):]
  k_ss = phi_s @ phi_s.T
  pred = phi_t @ phi_s.T @ np.linalg.inv(
      k_ss + CONFIG.reg * np.trace(k_ss) / len(k_ss) * np.eye(len(k_ss))) @ y_s
  np.testing.assert_allclose(loss, 0.5 * np.mean((pred - y_t) ** 2), rtol=1e-4)
  np.testing.assert_allclose(accuracy, np.mean(pred.argmax(-1) == labels))


@pytest.mark.parametrize("age", [0, 1])  # max_online_updates=2: a step, a re-initialisation
def test_step_decreases_loss_trains_the_picked_network_and_reinitialises_it(age):
  x_s, y_s, x_t, y_t, _ = _problem()
  loss_and_grad, update, _ = _jitted()
  state = _init(x_s, y_s)
  np.testing.assert_array_equal(state.pool_updates, [0, 1])  # staggered ages
  state = state.replace(pool_updates=jnp.full((2,), age, jnp.int32))
  key = jax.random.PRNGKey(4)
  new, metrics = update(state, (x_t, y_t), key)
  i = int(metrics["model"])
  take = lambda tree, j: jax.tree_util.tree_map(lambda a: a[j], tree)
  net = take(state.pool_params, i)
  np.testing.assert_allclose(metrics["loss"], loss_and_grad(state.params, x_t, y_t, net)[0],
                             rtol=1e-5)
  assert loss_and_grad(new.params, x_t, y_t, net)[0] < metrics["loss"]
  assert not np.array_equal(new.y_support, state.y_support)  # learned labels
  # The other network is untouched; the picked one took one Adam step on the new support
  # (or, having reached max_online_updates, was re-drawn from the step's key).
  for a, b in zip(jax.tree_util.tree_leaves(take(new.pool_params, 1 - i)),
                  jax.tree_util.tree_leaves(take(state.pool_params, 1 - i))):
    np.testing.assert_array_equal(a, b)
  if age + 1 < CONFIG.max_online_updates:
    online = optax.adam(CONFIG.online_lr)
    spec = kernels.get_spec(CONFIG.kernel)
    g = jax.grad(lambda p: 0.5 * jnp.mean((finite.apply(spec, p, new.x_support)
                                           - new.y_support) ** 2))(net)
    expected = optax.apply_updates(net, online.update(g, online.init(net), net)[0])
    assert int(new.pool_updates[i]) == age + 1
  else:
    expected = finite.init_params(spec=kernels.get_spec(CONFIG.kernel),
                                  key=jax.random.split(key)[1], input_shape=x_s.shape[1:],
                                  width=CONFIG.width, out_dim=C)
    assert int(new.pool_updates[i]) == 0
  for a, b in zip(jax.tree_util.tree_leaves(take(new.pool_params, i)),
                  jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_checkpointed_state_resumes_the_same_trajectory(tmp_path):
  """The pool (parameters, Adam states, ages) round-trips through the loop's checkpoints."""
  x_s, y_s, x_t, y_t, _ = _problem()
  update = _jitted()[1]
  state = _init(x_s, y_s)
  key = jax.random.PRNGKey(2)
  run = lambda st, start, stop: functools.reduce(
      lambda st, t: update(st, (x_t, y_t), loop.step_keys(key, t)[1])[0], range(start, stop), st)
  halfway = run(state, 0, 2)
  io.save_checkpoint(str(tmp_path), 2, halfway)
  restored, step = io.restore_checkpoint(str(tmp_path), _init(x_s, y_s))
  assert step == 2 and int(restored.step) == 2
  straight, resumed = run(halfway, 2, 4), run(restored, 2, 4)
  for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(straight)):
    np.testing.assert_array_equal(a, b)


def test_bad_configs_and_named_configs():
  with pytest.raises(ValueError, match="max_online_updates must be >= 1"):
    frepo.FrepoConfig(max_online_updates=0)
  with pytest.raises(ValueError, match="valid: paper"):
    frepo.FrepoConfig.named("nope")
  paper = frepo.FrepoConfig.named("paper")
  assert (paper.width, paper.n_models, paper.optimizer, paper.learn_labels) == (128, 10, "lamb",
                                                                                 True)
