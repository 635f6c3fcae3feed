"""Optimisers whose numeric hyper-parameters are traced state.

`make_optimizer(name, schedule, lr=..., total_steps=..., weight_decay=...,
momentum=...)` builds

    chain(add_decayed_weights(weight_decay), <direction>, scale(-schedule(count)))

with `optax.inject_hyperparams`: the peak learning rate, the schedule's length,
the weight decay and the momentum are float32 / int32 scalars in the optimiser
state (`opt_state.hyperparams`), not constants of the compiled program. Only
the optimiser NAME and the schedule KIND are Python values, so runs that differ
in lr, epochs or weight decay reuse one compilation of `train.train_step`.

`update` reads every hyper-parameter from the state: `make_optimizer(name,
schedule)` with the default numbers updates a state initialised with any
others (that is how `train.TrainState.tx` rebuilds it inside jit).

Directions ('sgd': heavy-ball momentum `optax.trace`; 'adam': `optax.scale_by_adam`,
Kingma & Ba, arXiv:1412.6980, `momentum` unused) and schedules are registries.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from kernelcond.registry import Registry

ScheduleFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
SCHEDULES: Registry[ScheduleFn] = Registry("learning-rate schedule")
OPTIMIZERS: Registry[Callable[[jax.Array], optax.GradientTransformation]] = Registry("optimizer")


@SCHEDULES.register("cosine")
def cosine(count, peak_lr, total_steps):
  """`peak_lr * (1 + cos(pi * min(count, T) / T)) / 2`: decays to 0 over `T` steps."""
  total = jnp.maximum(total_steps, 1).astype(jnp.float32)
  frac = jnp.minimum(count.astype(jnp.float32), total) / total
  return peak_lr * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


@SCHEDULES.register("step")
def step(count, peak_lr, total_steps):
  """`peak_lr`, x0.1 from step `T // 2` and x0.01 from step `(3 T) // 4`."""
  first, second = total_steps // 2, (3 * total_steps) // 4
  return peak_lr * jnp.where(count >= second, 0.01, jnp.where(count >= first, 0.1, 1.0))


@SCHEDULES.register("step_half")
def step_half(count, peak_lr, total_steps):
  """`peak_lr`, x0.1 from step `T // 2` (DC's `evaluate_synset`, arXiv:2006.05929)."""
  return peak_lr * jnp.where(count >= total_steps // 2, 0.1, 1.0)


@SCHEDULES.register("constant")
def constant(count, peak_lr, total_steps):
  """`peak_lr` at every step."""
  del count, total_steps
  return peak_lr


@OPTIMIZERS.register("sgd")
def _sgd_direction(momentum) -> optax.GradientTransformation:
  return optax.trace(decay=momentum)


@OPTIMIZERS.register("adam")
def _adam_direction(momentum) -> optax.GradientTransformation:
  del momentum  # Adam's own b1 = 0.9, b2 = 0.999
  return optax.scale_by_adam()


class ScheduleState(NamedTuple):
  """The step count of `scale_by_traced_schedule`."""
  count: jax.Array


def scale_by_traced_schedule(schedule: str, peak_lr, total_steps) -> optax.GradientTransformation:
  """Multiplies updates by `-SCHEDULES[schedule](count, peak_lr, total_steps)`.

  Unlike `optax.scale_by_schedule`, `peak_lr` and `total_steps` may be traced
  arrays (they come from `inject_hyperparams`' state).
  """
  schedule_fn = SCHEDULES.get(schedule)

  def init(params):
    del params
    return ScheduleState(count=jnp.zeros((), jnp.int32))

  def update(updates, state, params=None):
    del params
    lr = schedule_fn(state.count, peak_lr, total_steps)
    updates = jax.tree_util.tree_map(lambda g: (-lr * g).astype(g.dtype), updates)
    return updates, ScheduleState(count=state.count + 1)

  return optax.GradientTransformation(init, update)


def _chain(lr, total_steps, weight_decay, momentum, optimizer: str, schedule: str):
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     OPTIMIZERS.get(optimizer)(momentum),
                     scale_by_traced_schedule(schedule, lr, total_steps))


def make_optimizer(optimizer: str = "sgd", schedule: str = "constant", *, lr: float = 0.0,
                   total_steps: int = 1, weight_decay: float = 0.0,
                   momentum: float = 0.0) -> optax.GradientTransformation:
  """Weight decay, an SGD or Adam direction and a learning-rate schedule.

  Args:
    optimizer: a name in `OPTIMIZERS` ('sgd', 'adam').
    schedule: a name in `SCHEDULES` ('cosine', 'step', 'step_half', 'constant').
    lr: peak learning rate (stored in the state at `init`).
    total_steps: the schedule's length `T`.
    weight_decay: L2 decay added to the gradient of every parameter.
    momentum: SGD heavy-ball momentum (unused by Adam).

  Returns:
    An optax transformation; its state's `hyperparams` holds `lr`,
    `total_steps`, `weight_decay` and `momentum` as scalars.

  Raises:
    ValueError: for an unknown optimizer or schedule, listing valid names.
  """
  OPTIMIZERS.get(optimizer)  # unknown names fail here, not inside jit
  SCHEDULES.get(schedule)
  factory = optax.inject_hyperparams(_chain, static_args=("optimizer", "schedule"))
  return factory(lr=jnp.float32(lr), total_steps=jnp.int32(total_steps),
                 weight_decay=jnp.float32(weight_decay), momentum=jnp.float32(momentum),
                 optimizer=optimizer, schedule=schedule)


def learning_rate(opt_state, schedule: str) -> jax.Array:
  """The learning rate the next update of a `make_optimizer(_, schedule)` state uses."""
  hp = opt_state.hyperparams
  count = opt_state.inner_state[-1].count
  return SCHEDULES.get(schedule)(count, hp["lr"], hp["total_steps"])


def ntk_max_learning_rate(fn: Callable, params, x, momentum: float = 0.0, *,
                          key=None, iters: int = 20) -> float:
  """Largest stable (S)GD learning rate for the loss `0.5 * mean_i ||f(x_i) - t_i||^2`.

  Near initialisation, one step of gradient descent with learning rate `eta`
  moves the outputs on the batch by `-(eta / b) * Theta (f - t)`, with `Theta`
  the empirical NTK `J J^T` (`b c x b c`, `J` the Jacobian of the outputs with
  respect to the parameters). The iteration contracts when
  `eta < 2 b / lambda_max(Theta)`, and with heavy-ball momentum `beta` when
  `eta < 2 (1 + beta) b / lambda_max(Theta)` (the bound neural-tangents'
  `predict.max_learning_rate` uses with the infinite-width NTK; Lee et al.,
  arXiv:1902.06720). `lambda_max` is found by power iteration with one VJP and
  one JVP per iteration, so `Theta` is never formed.

  Args:
    fn: `fn(params, x) -> (b, c)` outputs.
    params: the parameters at which the NTK is taken.
    x: `(b, ...)` the batch (the whole support set for full-batch training).
    momentum: heavy-ball momentum `beta`.
    key: PRNG key of the power iteration's start (default `PRNGKey(0)`).
    iters: power-iteration steps.

  Returns:
    The learning-rate bound as a Python float.
  """
  key = jax.random.PRNGKey(0) if key is None else key
  top = jax.jit(functools.partial(_ntk_top_eigenvalue, fn, iters=int(iters)))
  lam = top(params, jnp.asarray(x), key)
  return float(2.0 * (1.0 + momentum) * x.shape[0] / float(lam))


def _ntk_top_eigenvalue(fn, params, x, key, iters: int):
  out, vjp = jax.vjp(lambda p: fn(p, x), params)

  def theta_times(v):
    (cotangent,) = vjp(v)
    return jax.jvp(lambda p: fn(p, x), (params,), (cotangent,))[1]

  def body(_, v):
    w = theta_times(v)
    return w / jnp.linalg.norm(w)

  v0 = jax.random.normal(key, out.shape, out.dtype)
  v = jax.lax.fori_loop(0, iters, body, v0 / jnp.linalg.norm(v0))
  return jnp.vdot(v, theta_times(v))
