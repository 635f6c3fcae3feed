"""Unrolled Dataset Distillation (arXiv:1811.10959, soft labels arXiv:1910.02551): the
scanned, rematerialised unroll against a plain Python loop, and its gradient
against central finite differences in float64."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import condense
from kernelcond.condense import dd


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(4, param_dtype=x.dtype)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3, param_dtype=x.dtype)(h)


def _problem(dtype):
  rng = np.random.default_rng(0)
  model = _Tiny()
  x_s = rng.standard_normal((3, 1, 2, 1)).astype(dtype)
  params = {"x_support": jnp.asarray(x_s),
            "label_logits": jnp.asarray(rng.standard_normal((3, 3)).astype(dtype)),
            "log_lr": jnp.asarray(np.log(0.5), dtype)}
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  inits = jax.vmap(lambda k: model.init(k, jnp.asarray(x_s[:1]))["params"])(keys)
  x_t = jnp.asarray(rng.standard_normal((7, 1, 2, 1)).astype(dtype))
  labels_t = jnp.asarray(rng.integers(0, 3, 7).astype(np.int32))
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  return params, inits, x_t, labels_t, apply_fn


def _loop_loss(params, inits, x_t, labels_t, apply_fn, steps):
  """The same objective by a plain Python loop (no scan, no checkpoint)."""
  q = jax.nn.softmax(params["label_logits"])
  lr = jnp.exp(params["log_lr"])
  total = 0.0
  n_inits = jax.tree_util.tree_leaves(inits)[0].shape[0]
  for k in range(n_inits):
    p = jax.tree_util.tree_map(lambda a: a[k], inits)
    for _ in range(steps):
      inner = lambda w: jnp.mean(-jnp.sum(q * jax.nn.log_softmax(apply_fn(w, params["x_support"])), -1))
      g = jax.grad(inner)(p)
      p = jax.tree_util.tree_map(lambda w, d: w - lr * d, p, g)
    logp = jax.nn.log_softmax(apply_fn(p, x_t))
    total += -jnp.mean(logp[jnp.arange(len(labels_t)), labels_t])
  return total / n_inits


def test_unroll_equals_a_python_loop():
  params, inits, x_t, labels_t, apply_fn = _problem(np.float32)
  scanned = jax.jit(lambda p: dd.unrolled_loss(p, inits, x_t, labels_t, apply_fn=apply_fn,
                                               inner_steps=3)[0])
  looped = jax.jit(lambda p: _loop_loss(p, inits, x_t, labels_t, apply_fn, 3))
  np.testing.assert_allclose(float(scanned(params)), float(looped(params)), rtol=1e-5)


@pytest.fixture
def x64():
  """float64 for one test (the `enable_x64` context is gone from current JAX)."""
  previous = bool(jax.config.jax_enable_x64)
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", previous)


def test_gradient_matches_finite_differences_in_float64(x64):
  params, inits, x_t, labels_t, apply_fn = _problem(np.float64)
  f = jax.jit(lambda p: dd.unrolled_loss(p, inits, x_t, labels_t, apply_fn=apply_fn,
                                         inner_steps=3)[0])
  grads = jax.grad(f)(params)
  rng = np.random.default_rng(1)
  for name in params:  # images, label logits and the inner learning rate, one at a time
    v = rng.standard_normal(np.shape(params[name]))
    eps = 1e-5
    plus = dict(params, **{name: params[name] + eps * v})
    minus = dict(params, **{name: params[name] - eps * v})
    fd = (float(f(plus)) - float(f(minus))) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(grads[name] * v)), fd, rtol=1e-6, atol=1e-10)
    assert abs(fd) > 1e-4, name  # every parameter really moves the loss


def test_condenser_learns_labels_and_lr_and_checks_config():
  config = dd.DdConfig(width=8, depth=1, inner_steps=2, n_inits=2, target_batch=8)
  rng = np.random.default_rng(2)
  labels = np.repeat(np.arange(2), 6).astype(np.int32)
  x = rng.standard_normal((12, 1, 3, 1)).astype(np.float32)
  y = np.eye(2, dtype=np.float32)[labels] - 0.5
  data = condense.Data.create(x, y, labels)
  condenser = dd.make(config)
  state = condenser.init(None, data, x[[0, 6]], y[[0, 6]])
  np.testing.assert_allclose(state.y_support, [[0.9, 0.1], [0.1, 0.9]], rtol=1e-6)
  batch = condenser.sample_batch(jax.random.PRNGKey(0), data)
  new, metrics = jax.jit(condenser.update)(state, batch, jax.random.PRNGKey(1))
  np.testing.assert_allclose(np.asarray(new.y_support).sum(-1), 1.0, rtol=1e-6)
  assert float(new.log_lr) != float(state.log_lr)
  assert np.abs(np.asarray(new.y_support) - np.asarray(state.y_support)).max() > 0
  np.testing.assert_allclose(float(metrics["inner_lr"]), 0.02, rtol=1e-6)
  with pytest.raises(ValueError, match="inner_steps"):
    dd.DdConfig(inner_steps=0)
  with pytest.raises(ValueError, match="valid: ipc1, ipc10, ipc50"):
    dd.named("ipc3")
