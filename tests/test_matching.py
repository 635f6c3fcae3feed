"""DC / DSA gradient matching (arXiv:2006.05929, 2102.08259) against hand computations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import condense
from kernelcond.condense import matching
from kernelcond.nets import augment

_matching_loss = jax.jit(matching.matching_loss, static_argnums=(0, 6))


def _hand_distance(g_real: dict, g_syn: dict) -> float:
  """The reference's `distance_wb` summed over tensors, one output channel at a time."""
  total = 0.0
  for name in g_real:
    a, b = np.asarray(g_real[name], np.float64), np.asarray(g_syn[name], np.float64)
    if a.ndim == 1:
      continue  # biases and norm parameters contribute 0
    for i in range(a.shape[-1]):
      u, v = a[..., i].ravel(), b[..., i].ravel()
      total += 1.0 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-6)
  return total


def test_gradient_distance_matches_a_hand_loop():
  rng = np.random.default_rng(0)
  shapes = {"conv": (3, 3, 2, 4), "dense": (5, 3), "bias": (4,)}
  g_real = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  g_syn = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  got = float(matching.gradient_distance(g_real, g_syn))
  np.testing.assert_allclose(got, _hand_distance(g_real, g_syn), rtol=1e-5)
  # Equal gradients (up to a positive scale per channel) are at distance ~0.
  scaled = {k: v * 3.0 for k, v in g_real.items()}
  assert abs(float(matching.gradient_distance(g_real, scaled))) < 1e-5
  # A conv kernel's output channel is its last axis: permuting input rows of one
  # channel's slice changes the distance, permuting whole output channels jointly does not.
  perm = {k: v[..., ::-1] if v.ndim > 1 else v for k, v in g_real.items()}
  perm_syn = {k: v[..., ::-1] if v.ndim > 1 else v for k, v in g_syn.items()}
  np.testing.assert_allclose(float(matching.gradient_distance(perm, perm_syn)), got, rtol=1e-5)


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(5)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3)(h)


def test_matching_loss_equals_per_class_gradients_by_hand():
  model = _Tiny()
  rng = np.random.default_rng(1)
  x_real = rng.standard_normal((3, 6, 1, 4, 1)).astype(np.float32)
  w_real = np.ones((3, 6), np.float32)
  w_real[2, 4:] = 0.0  # class 2 has only 4 members; the rest are padding
  x_syn = rng.standard_normal((3, 2, 1, 4, 1)).astype(np.float32)
  params = model.init(jax.random.PRNGKey(0), x_real[0])["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  got = float(_matching_loss(apply_fn, params, x_real, w_real, x_syn, keys, "none"))

  def mean_ce(p, x, c):
    return -jnp.mean(jax.nn.log_softmax(apply_fn(p, x))[:, c])

  expected = 0.0
  grad = jax.jit(jax.grad(mean_ce), static_argnums=2)
  for c in range(3):
    members = x_real[c][w_real[c] > 0]  # padding left out explicitly
    g_r = grad(params, members, c)
    g_s = grad(params, x_syn[c], c)
    flat_r = {"/".join(map(str, k)): v for k, v in
              jax.tree_util.tree_flatten_with_path(g_r)[0]}
    flat_s = {"/".join(map(str, k)): v for k, v in
              jax.tree_util.tree_flatten_with_path(g_s)[0]}
    expected += _hand_distance(flat_r, flat_s)
  np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_dsa_applies_one_draw_to_real_and_synthetic():
  # With x_syn == x_real the siamese draw keeps the two gradients equal: loss ~ 0
  # for every transform; independent draws per batch would not.
  model = _Tiny()
  rng = np.random.default_rng(2)
  x = rng.standard_normal((3, 4, 8, 8, 1)).astype(np.float32)
  params = model.init(jax.random.PRNGKey(0), x[0])["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  ones = np.ones((3, 4), np.float32)
  strategy = "crop_cutout"
  same = float(_matching_loss(apply_fn, params, x, ones, x, keys, strategy))
  x_other = jax.jit(jax.vmap(augment.augment, (0, 0, None)), static_argnums=2)(keys, x, strategy)
  other = float(_matching_loss(apply_fn, params, x, ones, x_other, keys, "none"))
  assert same < 5e-3 and other > 20 * same


def test_class_batches_are_members_of_their_class():
  labels = np.array([0, 1, 0, 2, 1, 0, 0, 1, 2, 0], np.int32)
  x = np.arange(10, dtype=np.float32)[:, None]
  data = condense.Data.create(x, np.eye(3)[labels], labels)
  xb, w = matching.sample_class_batches(jax.random.PRNGKey(0), data, 3)
  idx = np.asarray(xb[..., 0]).astype(int)
  assert xb.shape == (3, 3, 1)
  for c in range(3):
    members = idx[c][np.asarray(w[c]) > 0]
    assert np.all(labels[members] == c) and len(set(members)) == len(members)
    assert len(members) == min(3, int(np.sum(labels == c)))  # class 2 has 2 members


def test_loops_follow_the_reference_table_and_config_checks():
  assert matching.loops_for_ipc(1) == (1, 1)
  assert matching.loops_for_ipc(10) == (10, 50)
  assert matching.loops_for_ipc(50) == (50, 10)
  assert matching.loops_for_ipc(12) == (10, 50)
  assert matching.MatchingConfig(outer_loop=3).loops(10) == (3, 50)
  assert matching.named("ipc50").loops(1) == (50, 10)
  assert matching.DsaConfig().dsa_strategy == "dsa" and matching.MatchingConfig().lr == 0.1
  with pytest.raises(ValueError, match="valid: ipc1, ipc10, ipc50"):
    matching.named("ipc7")
  with pytest.raises(ValueError, match="matching network"):
    matching.MatchingConfig(net="resnet")
  with pytest.raises(ValueError, match="class-ordered"):
    matching.support_labels(np.eye(2)[[1, 0, 0, 1]], 2)


def test_one_outer_iteration_is_an_sgd_step_on_the_matching_loss():
  # outer_loop=1: no inner training; the first SGD-momentum step is -lr * grad.
  config = matching.MatchingConfig(net="mlp", width=6, depth=1, outer_loop=1, inner_loop=1,
                                   batch_real=4, lr=0.3)
  rng = np.random.default_rng(4)
  labels = np.repeat(np.arange(2), 5).astype(np.int32)
  x = rng.standard_normal((10, 1, 3, 1)).astype(np.float32)
  data = condense.Data.create(x, np.eye(2)[labels], labels)
  x0, y0 = x[[0, 5]], np.eye(2, dtype=np.float32)
  condenser = matching.make(config)
  state = condenser.init(None, data, x0, y0)
  key = jax.random.PRNGKey(5)
  new, metrics = jax.jit(condenser.update)(state, data, key)
  # Rebuild the step's draws from the documented key use.
  model = matching.build_net(config, x0.shape[1:], 2)
  k_init, k_loop = jax.random.split(key)
  params = model.init(k_init, x0[:1])["params"]
  k = jax.random.split(k_loop, 1)[0]
  k_real, k_aug, _ = jax.random.split(k, 3)
  xr, wr = matching.sample_class_batches(k_real, data, 4)
  apply_fn = lambda p, z: model.apply({"params": p}, z)
  loss_fn = lambda z: matching.matching_loss(apply_fn, params, xr, wr, z.reshape(2, 1, 1, 3, 1),
                                             jax.random.split(k_aug, 2))
  loss, grad = jax.jit(jax.value_and_grad(loss_fn))(jnp.asarray(x0))
  np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(new.x_support), x0 - 0.3 * np.asarray(grad), atol=1e-6)
  assert int(new.step) == 1
