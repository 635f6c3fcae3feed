"""RFAD: feature-space KRR against kernel-space KRR, the Platt loss against a hand
formula, the whole loss and gradient against KIP on the random-feature kernel,
1 vs 4 devices, a descending step, and the config checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import kernels
from kernelcond.condense import kip
from kernelcond.condense import rfad

C = 3
SPEC, M, WIDTH = "fc2", 2, 6  # random_features' own tests cover conv specs


def _problem(n_support=4, n_target=10, seed=0):
  rng = np.random.default_rng(seed)
  x_s = rng.standard_normal((n_support, 6, 6, 1)).astype(np.float32)
  y_s = np.eye(C, dtype=np.float32)[np.arange(n_support) % C] - 1 / C
  x_t = rng.standard_normal((n_target, 6, 6, 1)).astype(np.float32)
  y_t = np.eye(C, dtype=np.float32)[rng.integers(0, C, n_target)] - 1 / C
  params = {"x_support": jnp.asarray(x_s), "y_support": jnp.asarray(y_s),
            "log_scale": jnp.asarray(0.3, jnp.float32)}
  return params, jnp.asarray(x_t), jnp.asarray(y_t)


def _config(**overrides):
  return rfad.RfadConfig(**{"kernel": SPEC, "width": WIDTH, "n_models": M, "reg": 1e-2,
                            "target_batch": 10, **overrides})


@functools.lru_cache(maxsize=None)
def _loss_and_grad(loss="platt", n_devices=1):
  """Jitted once per (loss, devices) for the whole module."""
  return jax.jit(rfad.make_loss_and_grad(_config(loss=loss), n_devices=n_devices))


@pytest.mark.parametrize("n_support,dim", [(5, 12), (12, 5)])
def test_feature_krr_forms_equal_kernel_krr(n_support, dim):
  """Dual, primal and 'auto' weights give the float64 KRR of K = Phi Phi^T (explicit inverse)."""
  rng = np.random.default_rng(1)
  phi_s, phi_t = rng.standard_normal((n_support, dim)), rng.standard_normal((7, dim))
  y_s = rng.standard_normal((n_support, C))
  reg = 0.05
  k_ss = phi_s @ phi_s.T
  explicit = phi_t @ phi_s.T @ np.linalg.inv(
      k_ss + reg * np.trace(k_ss) / n_support * np.eye(n_support)) @ y_s
  for form in ("dual", "primal", "auto"):
    w = rfad.feature_krr_weights(jnp.asarray(phi_s, jnp.float32), jnp.asarray(y_s, jnp.float32),
                                 reg, form)
    np.testing.assert_allclose(phi_t @ np.asarray(w, np.float64), explicit, rtol=2e-3,
                               atol=2e-4 * np.abs(explicit).max(), err_msg=form)


def test_platt_loss_matches_hand_formula():
  rng = np.random.default_rng(0)
  pred = rng.standard_normal((5, C))
  labels = rng.integers(0, C, 5)
  y = np.eye(C)[labels] - 1 / C
  weights = np.array([1, 1, 0.5, 0, 1.0])
  s = np.exp(0.7)
  hand = sum(w * (np.log(np.sum(np.exp(s * p))) - s * p[l])
             for p, l, w in zip(pred, labels, weights))
  ours = rfad.platt_loss_sum(jnp.asarray(pred, jnp.float32), jnp.asarray(y, jnp.float32),
                             jnp.asarray(0.7), jnp.asarray(weights, jnp.float32))
  np.testing.assert_allclose(ours, hand, rtol=1e-5)


@pytest.mark.parametrize("spec", [SPEC, "conv2:norm=instance"])
def test_mse_loss_and_gradient_equal_kip_on_the_random_feature_kernel(spec):
  """RFAD (features, one solve) == KIP's loss on `make_random_kernel_fn` (per-network kernel),
  also for an instance-norm ConvNet, which has random-feature kernels only."""
  params, x_t, y_t = _problem()
  key = jax.random.PRNGKey(5)
  config = _config(loss="mse", kernel=spec)
  if spec == SPEC:
    loss, _, grads = _loss_and_grad("mse")(params, x_t, y_t, key)
  else:
    loss, _, grads = jax.jit(rfad.make_loss_and_grad(config, n_devices=1))(params, x_t, y_t, key)
  kernel_fn = kernels.make_random_kernel_fn(spec, M, WIDTH, key)
  kip_loss = lambda p: kip.loss_fn(p, x_t, y_t, kernel_fn, config.reg, "nngp")
  kip_params = {k: params[k] for k in ("x_support", "y_support")}
  kip_value, kip_grads = jax.jit(jax.value_and_grad(kip_loss))(kip_params)
  np.testing.assert_allclose(loss, kip_value, rtol=1e-4)
  for name in kip_params:
    np.testing.assert_allclose(grads[name], kip_grads[name], rtol=2e-3,
                               atol=2e-3 * np.abs(kip_grads[name]).max())


def test_platt_loss_of_a_step_equals_hand_krr():
  """The Platt loss of `make_loss_and_grad` == hand float64 KRR on the same features."""
  params, x_t, y_t = _problem()
  key = jax.random.PRNGKey(2)
  config = _config(loss="platt")
  loss, accuracy, _ = _loss_and_grad("platt")(params, x_t, y_t, key)
  features = kernels.random_feature_fn(SPEC, M, WIDTH, get="nngp")
  phi = np.asarray(features(key, jnp.concatenate([params["x_support"], x_t])), np.float64)
  phi_s, phi_t = phi[:len(params["x_support"])], phi[len(params["x_support"]):]
  k_ss = phi_s @ phi_s.T
  n = len(k_ss)
  pred = phi_t @ phi_s.T @ np.linalg.solve(k_ss + config.reg * np.trace(k_ss) / n * np.eye(n),
                                           np.asarray(params["y_support"], np.float64))
  logits = np.exp(0.3) * pred
  labels = np.argmax(np.asarray(y_t), -1)
  hand = np.mean(np.log(np.exp(logits).sum(-1)) - logits[np.arange(len(labels)), labels])
  np.testing.assert_allclose(loss, hand, rtol=1e-4)
  np.testing.assert_allclose(accuracy, np.mean(pred.argmax(-1) == labels))


def test_one_and_four_devices_agree():
  assert jax.local_device_count() >= 4, "tests/conftest.py should give 4 CPU devices"
  params, x_t, y_t = _problem(n_target=10)  # padded to 12 over 4 devices
  key = jax.random.PRNGKey(0)
  one = _loss_and_grad("platt", 1)(params, x_t, y_t, key)
  four = _loss_and_grad("platt", 4)(params, x_t, y_t, key)
  for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(four)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_step_decreases_loss_and_learns_labels_and_temperature():
  params, x_t, y_t = _problem()
  config = _config(learn_labels=True)
  state = rfad.init_state(params["x_support"], params["y_support"], rfad.make_optimizer(config))
  key = jax.random.PRNGKey(3)  # the same networks before and after the step
  new, metrics = jax.jit(rfad.make_update(config, n_devices=1))(state, (x_t, y_t), key)
  before = _loss_and_grad("platt")(state.params, x_t, y_t, key)[0]
  np.testing.assert_allclose(metrics["loss"], before, rtol=1e-5)
  assert _loss_and_grad("platt")(new.params, x_t, y_t, key)[0] < before
  assert int(new.step) == 1
  assert not np.array_equal(new.y_support, state.y_support)
  assert float(new.log_scale) != 0.0


def test_optimizer_freezes_fixed_labels_and_the_mse_temperature():
  params = _problem()[0]
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  for config, frozen in ((_config(), ("y_support",)),
                         (_config(loss="mse"), ("y_support", "log_scale")),
                         (_config(loss="mse", learn_labels=True), ("log_scale",))):
    optimizer = rfad.make_optimizer(config)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    for name, u in updates.items():
      assert bool(jnp.all(u == 0)) == (name in frozen), (config.loss, name)


def test_bad_configs_and_named_configs():
  with pytest.raises(ValueError, match="valid: mse, platt"):
    rfad.RfadConfig(loss="hinge")
  with pytest.raises(ValueError, match="reg must be > 0"):
    rfad.RfadConfig(reg=0.0)
  with pytest.raises(ValueError, match="valid: paper"):
    rfad.RfadConfig.named("nope")
  paper = rfad.RfadConfig.named("paper", steps=7)
  assert (paper.width, paper.n_models, paper.optimizer, paper.steps) == (256, 8, "adabelief", 7)
  with pytest.raises(ValueError, match="valid: nngp, ntk"):
    rfad.RfadConfig(kernel_type="sample")
