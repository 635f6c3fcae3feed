"""Optimisers with traced hyper-parameters against optax's own, and the NTK learning-rate bound."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kernelcond.nets import optim


def _params():
  rng = np.random.default_rng(0)
  return {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float32),
          "b": jnp.asarray(rng.standard_normal((2,)), jnp.float32)}


def _grads(i):
  rng = np.random.default_rng(10 + i)
  return {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float32),
          "b": jnp.asarray(rng.standard_normal((2,)), jnp.float32)}


def _run(tx, steps=6):
  params, state, out = _params(), None, []
  state = tx.init(params)
  for i in range(steps):
    updates, state = tx.update(_grads(i), state, params)
    params = optax.apply_updates(params, updates)
    out.append(params)
  return out


@pytest.mark.parametrize("name,schedule", [("sgd", "cosine"), ("sgd", "step"), ("adam", "cosine"),
                                           ("adam", "constant")])
def test_matches_optax_with_constant_hyperparameters(name, schedule):
  lr, total, wd, momentum = 0.1, 4, 1e-2, 0.7
  ours = optim.make_optimizer(name, schedule, lr=lr, total_steps=total, weight_decay=wd,
                              momentum=momentum)
  sched = {"cosine": optax.cosine_decay_schedule(lr, total),
           "step": optax.piecewise_constant_schedule(lr, {2: 0.1, 3: 0.1}),
           "constant": optax.constant_schedule(lr)}[schedule]
  direction = optax.sgd(sched, momentum=momentum) if name == "sgd" else optax.adam(sched)
  reference = optax.chain(optax.add_decayed_weights(wd), direction)
  for a, b in zip(_run(ours), _run(reference)):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
      np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-6)


def test_update_reads_hyperparameters_from_the_state():
  tx = optim.make_optimizer("sgd", "step_half", lr=0.3, total_steps=4, weight_decay=0.1,
                            momentum=0.5)
  generic = optim.make_optimizer("sgd", "step_half")  # default numbers, same structure
  params = _params()
  state_a = state_b = tx.init(params)
  for i in range(4):
    ua, state_a = tx.update(_grads(i), state_a, params)
    ub, state_b = generic.update(_grads(i), state_b, params)
    for u, v in zip(jax.tree_util.tree_leaves(ua), jax.tree_util.tree_leaves(ub)):
      np.testing.assert_array_equal(u, v)
  assert float(state_a.hyperparams["lr"]) == pytest.approx(0.3)
  assert float(optim.learning_rate(state_a, "step_half")) == pytest.approx(0.03)
  assert float(optim.learning_rate(tx.init(params), "step_half")) == pytest.approx(0.3)


def test_schedules_by_hand():
  count = jnp.arange(10)
  np.testing.assert_allclose(optim.SCHEDULES.get("step_half")(count, 1.0, jnp.int32(10)),
                             [1.0] * 5 + [0.1] * 5, rtol=1e-6)
  np.testing.assert_allclose(optim.SCHEDULES.get("step")(count, 1.0, jnp.int32(8)),
                             [1.0] * 4 + [0.1] * 2 + [0.01] * 4, rtol=1e-6)
  np.testing.assert_allclose(optim.SCHEDULES.get("cosine")(count, 2.0, jnp.int32(8)),
                             [1 + np.cos(np.pi * min(c, 8) / 8) for c in range(10)], atol=1e-6)
  with pytest.raises(ValueError, match="sgd, adam"):
    optim.make_optimizer("lbfgs", "cosine")
  with pytest.raises(ValueError, match="cosine, step, step_half, constant"):
    optim.make_optimizer("sgd", "linear")


def test_ntk_bound_matches_explicit_ntk_eigenvalue():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
  params = {"w1": jnp.asarray(rng.standard_normal((5, 7)), jnp.float32),
            "w2": jnp.asarray(rng.standard_normal((7, 3)), jnp.float32)}
  fn = lambda p, xb: jnp.tanh(xb @ p["w1"]) @ p["w2"]
  jac = jax.jacobian(lambda p: fn(p, x).reshape(-1))(params)
  jac = np.concatenate([np.asarray(j).reshape(18, -1) for j in jax.tree_util.tree_leaves(jac)], 1)
  lam = np.linalg.eigvalsh(jac.astype(np.float64) @ jac.T.astype(np.float64)).max()
  bound = optim.ntk_max_learning_rate(fn, params, x, momentum=0.5, iters=100)
  assert bound == pytest.approx(2 * 1.5 * 6 / lam, rel=1e-3)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_ntk_bound_separates_convergence_from_divergence_for_a_linear_model(momentum):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((8, 5)), jnp.float32)
  t = jnp.asarray(rng.standard_normal((8, 2)), jnp.float32)
  fn = lambda p, xb: xb @ p  # a constant NTK: the bound is exact
  w0 = jnp.zeros((5, 2), jnp.float32)
  bound = optim.ntk_max_learning_rate(fn, w0, x, momentum=momentum, iters=200)
  loss = lambda w: 0.5 * jnp.mean(jnp.sum((fn(w, x) - t) ** 2, axis=1))

  def final_loss(lr):
    tx = optim.make_optimizer("sgd", "constant", lr=lr, total_steps=1, momentum=momentum)

    def step(_, carry):
      w, state = carry
      updates, state = tx.update(jax.grad(loss)(w), state, w)
      return w + updates, state

    w, _ = jax.lax.fori_loop(0, 600, step, (w0, tx.init(w0)))
    return float(loss(w))

  assert final_loss(0.95 * bound) < float(loss(w0))
  assert not final_loss(1.05 * bound) < 1e3
