"""FRePo: neural feature regression with an online-trained pool of networks.

FRePo (Zhou, Nezhadarya, Ba, NeurIPS 2022, arXiv:2206.00719) learns the support
images and labels through KRR on the last-layer features of finite networks
that are themselves trained on the support set. Every step:

1. pick a network `theta_i` uniformly from a pool of `n_models`;
2. features `Phi = g_theta_i(x)`, the inputs of its readout layer (`(n, F)`), of
   the support set and of a batch of real targets; kernel `K = Phi Phi^T`;
3. KRR loss, with the kernelcond ridge `reg * tr(K_ss) / n_s`:

       f_t  = K_ts (K_ss + reg tr(K_ss)/n_s I)^{-1} y_s
       loss = 0.5 * mean over the n_t * c entries of (f_t - y_t)^2

   differentiated with respect to `x_support` (and `y_support` if learned); the
   network is held fixed (no meta-gradient through its training);
4. one online step of `theta_i` on the (updated) support set: Adam on
   `0.5 * mean (f_theta(x_s) - y_s)^2` (the labels may be soft, so the squared
   error, as for the support loss); after `max_online_updates` such steps the
   network is re-initialised (the "model pool").

The pool starts with staggered update counts (`i * max_online_updates //
n_models`) so that networks of all ages are present and re-initialisations are
spread over steps. The pool (parameters, Adam states, counts) is part of the
state pytree, so `condense.loop.run` checkpoints and resumes it like any state.
The feature-space solve is `rfad.feature_krr_weights` and the target batch is
split over local devices by `rfad.shard_targets`.

The networks are the finite networks of a kernel spec (`kernels.finite`, e.g.
'conv3': 3 x (3x3 conv, ReLU, 2x2 average pooling) and a dense readout, no
normalisation, as FRePo's default ConvNet). Not implemented: the paper's data
augmentation of the online steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from kernelcond import kernels
from kernelcond.condense import base
from kernelcond.condense import kip
from kernelcond.condense import rfad
from kernelcond.kernels import finite
from kernelcond.registry import choice_validator


@dataclasses.dataclass(frozen=True)
class FrepoConfig:
  """Hyper-parameters of FRePo: THE defaults, sized for 2 CPU cores.

  Attributes:
    kernel: architecture spec of the pool networks (`kernels.get_spec`), e.g.
      'conv3'; its exact NNGP kernel evaluates the condensed set.
    kernel_backend: backend of the exact kernel of the evaluation.
    width: hidden width (conv channels) of the pool networks.
    n_models: networks in the pool.
    max_online_updates: online steps of a network before it is re-initialised.
    online_lr: Adam learning rate of the networks' online steps.
    steps: optimisation steps of a run (the cosine schedule decays over them).
    lr: learning rate of the images (and labels).
    lr_schedule: 'constant' or 'cosine' (decay to lr / 100 over `steps`).
    optimizer: 'adam', 'adabelief', 'lamb' (the paper's), 'sgd' or 'momentum'.
    reg: relative ridge `reg * trace(K_ss) / n_s` of the support solve.
    target_batch: real training examples per step.
    learn_labels: also optimise `y_support` (the paper does).
  """
  kernel: str = "conv3"
  kernel_backend: str = "auto"
  width: int = 32
  n_models: int = 4
  max_online_updates: int = 100
  online_lr: float = 1e-3
  steps: int = 1000
  lr: float = 1e-3
  lr_schedule: str = "constant"
  optimizer: str = "adam"
  reg: float = 1e-6
  target_batch: int = 256
  learn_labels: bool = True

  def __post_init__(self):
    kernels.get_spec(self.kernel)
    choice_validator("kernel backend", kernels.BACKENDS)(self.kernel_backend)
    rfad.check_optimizer(self.optimizer)
    rfad.check_schedule(self.lr_schedule)
    for name in ("lr", "online_lr"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not self.reg > 0:
      raise ValueError(f"reg must be > 0 (the feature-space solve needs a ridge), got {self.reg}")
    for name in ("width", "n_models", "max_online_updates", "steps", "target_batch"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

  @property
  def eval_kernel_type(self) -> str:
    """Last-layer features give an NNGP-like kernel: evaluate with the exact NNGP."""
    return "nngp"

  @classmethod
  def named(cls, name: str, **overrides) -> "FrepoConfig":
    """The config `NAMED_CONFIGS[name]` with `overrides` (errors list the valid names)."""
    if name not in NAMED_CONFIGS:
      raise ValueError(f"Unknown FRePo config {name!r}; valid: {', '.join(NAMED_CONFIGS)}")
    return base.replace_config(cls(), **{**NAMED_CONFIGS[name], **overrides})

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# The paper's settings, as in the authors' released scripts (arXiv:2206.00719):
# ConvNet width 128, depth 3, a pool of 10 networks re-initialised after 100 online
# steps (Adam 3e-4), LAMB 3e-4 on the support, target batch 1024, learned labels;
# the ridge is kernelcond's 1e-6 relative. They run up to 500k steps, with data
# augmentation of the online steps (not implemented here).
NAMED_CONFIGS: dict[str, dict] = {
    "paper": dict(kernel="conv3", width=128, n_models=10, max_online_updates=100,
                  online_lr=3e-4, optimizer="lamb", lr=3e-4, lr_schedule="constant",
                  reg=1e-6, target_batch=1024, learn_labels=True, steps=20000),
}


@flax.struct.dataclass
class FrepoState:
  """State of a FRePo run: support set, its optimizer, and the network pool.

  Attributes:
    x_support: `(n_s, H, W, C)` learned images.
    y_support: `(n_s, c)` labels (learned if `learn_labels`).
    opt_state: optax state of `{'x_support', 'y_support'}`.
    pool_params: `finite` parameters of the pool, each leaf with a leading
      `(n_models,)` axis.
    pool_opt_state: Adam states of the pool networks (leading `(n_models,)` axis).
    pool_updates: `(n_models,)` int32 online steps of each network since its
      (re-)initialisation.
    step: int32 scalar, steps taken.
  """
  x_support: jax.Array
  y_support: jax.Array
  opt_state: Any
  pool_params: Any
  pool_opt_state: Any
  pool_updates: jax.Array
  step: jax.Array

  @property
  def params(self) -> dict[str, jax.Array]:
    return {"x_support": self.x_support, "y_support": self.y_support}


def make_optimizer(config: FrepoConfig) -> optax.GradientTransformation:
  """`config.optimizer` on the images (and the labels if learned; else they are frozen)."""
  images = rfad.OPTIMIZERS[config.optimizer](kip.learning_rate(config))
  labels = {"x_support": "learn", "y_support": "learn" if config.learn_labels else "freeze"}
  return optax.multi_transform({"learn": images, "freeze": optax.set_to_zero()}, labels)


def _network_init(config: FrepoConfig, input_shape, num_classes: int):
  spec = kernels.get_spec(config.kernel)
  online = optax.adam(config.online_lr)

  def init(key):
    params = finite.init_params(spec, key, input_shape, config.width, num_classes)
    return params, online.init(params)

  return init


def _online_step(config: FrepoConfig, params, opt_state, x_support, y_support):
  """One Adam step of a network on `0.5 * mean (f(x_s) - y_s)^2` -> (params, opt_state, loss)."""
  spec = kernels.get_spec(config.kernel)
  online = optax.adam(config.online_lr)

  def loss_fn(p):
    return 0.5 * jnp.mean((finite.apply(spec, p, x_support) - y_support) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = online.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def make_loss_and_grad(config: FrepoConfig, n_devices: Optional[int] = None):
  """`fn(params, x_target, y_target, net) -> (loss, accuracy, grads)` on `net`'s features.

  `net` is one network's `finite` parameters; the loss is `0.5 * mean over all
  n_t * c entries` of the squared KRR error (module docstring), the accuracy
  the KRR argmax accuracy on the batch; the target batch is split over devices.
  """
  spec = kernels.get_spec(config.kernel)
  hi = jax.lax.Precision.HIGHEST

  def local(params, x_t, y_t, weights, net):
    phi_t = jax.lax.stop_gradient(finite.readout_inputs(spec, net, x_t))

    def loss_sum(p):
      phi_s = finite.readout_inputs(spec, net, p["x_support"])
      pred = jnp.matmul(phi_t, rfad.feature_krr_weights(phi_s, p["y_support"], config.reg),
                        precision=hi)
      correct = jnp.sum(weights * (jnp.argmax(pred, -1) == jnp.argmax(y_t, -1)))
      sq = jnp.sum(weights * jnp.sum((pred - y_t) ** 2, axis=-1))
      return 0.5 * sq / y_t.shape[-1], correct

    (total, correct), grads = jax.value_and_grad(loss_sum, has_aux=True)(params)
    return total, correct, grads

  sums = rfad.shard_targets(local, n_devices)

  def loss_and_grad(params, x_target, y_target, net):
    (total, correct, grads), n = sums(params, x_target, y_target, net)
    return total / n, correct / n, jax.tree_util.tree_map(lambda g: g / n, grads)

  return loss_and_grad


def init_state(key, x_support, y_support, config: FrepoConfig,
               optimizer: Optional[optax.GradientTransformation] = None) -> FrepoState:
  """A fresh `FrepoState`: `n_models` new networks with staggered update counts."""
  optimizer = make_optimizer(config) if optimizer is None else optimizer
  x_support = jnp.asarray(x_support, jnp.float32)
  y_support = jnp.asarray(y_support, jnp.float32)
  net_init = _network_init(config, x_support.shape[1:], y_support.shape[1])
  pool_params, pool_opt_state = jax.vmap(net_init)(jax.random.split(key, config.n_models))
  stagger = jnp.arange(config.n_models, dtype=jnp.int32) * config.max_online_updates
  return FrepoState(x_support=x_support, y_support=y_support,
                    opt_state=optimizer.init({"x_support": x_support, "y_support": y_support}),
                    pool_params=pool_params, pool_opt_state=pool_opt_state,
                    pool_updates=stagger // config.n_models, step=jnp.zeros((), jnp.int32))


def make_update(config: FrepoConfig, optimizer: Optional[optax.GradientTransformation] = None,
                n_devices: Optional[int] = None):
  """The FRePo step `update(state, (x_target, y_target), key) -> (state, metrics)`.

  `key` picks the pool network and draws its re-initialisation. `metrics =
  {'loss', 'target_accuracy', 'online_loss', 'model'}` (the KRR loss before the
  update, the KRR accuracy on the batch, the network's loss on the support set
  before its online step, and its index).
  """
  optimizer = make_optimizer(config) if optimizer is None else optimizer
  loss_and_grad = make_loss_and_grad(config, n_devices)

  def update(state: FrepoState, batch, key):
    x_target, y_target = batch
    pick_key, init_key = jax.random.split(key)
    i = jax.random.randint(pick_key, (), 0, config.n_models)
    take = lambda tree: jax.tree_util.tree_map(lambda a: a[i], tree)
    net, net_opt = take(state.pool_params), take(state.pool_opt_state)
    params = state.params
    loss, accuracy, grads = loss_and_grad(params, x_target, y_target, net)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)

    net, net_opt, online_loss = _online_step(config, net, net_opt, params["x_support"],
                                             params["y_support"])
    count = state.pool_updates[i] + 1
    reset = count >= config.max_online_updates
    fresh = _network_init(config, params["x_support"].shape[1:],
                          params["y_support"].shape[1])(init_key)
    net, net_opt = jax.tree_util.tree_map(lambda new, old: jnp.where(reset, new, old),
                                          fresh, (net, net_opt))
    put = lambda tree, value: jax.tree_util.tree_map(lambda a, v: a.at[i].set(v), tree, value)
    new_state = state.replace(
        x_support=params["x_support"], y_support=params["y_support"], opt_state=opt_state,
        pool_params=put(state.pool_params, net), pool_opt_state=put(state.pool_opt_state, net_opt),
        pool_updates=state.pool_updates.at[i].set(jnp.where(reset, 0, count)),
        step=state.step + 1)
    metrics = {"loss": loss, "target_accuracy": accuracy, "online_loss": online_loss,
               "model": i.astype(jnp.float32)}
    return new_state, metrics

  return update


def make(config: FrepoConfig, n_devices: Optional[int] = None) -> base.Condenser:
  """FRePo as a `base.Condenser` (`n_devices`: devices the target batch is split over)."""
  optimizer = make_optimizer(config)

  def init(key, data: base.Data, x_init, y_init) -> FrepoState:
    del data
    return init_state(key, x_init, y_init, config, optimizer)

  def sample_batch(key, data: base.Data):
    return base.sample_examples(key, data, config.target_batch)

  return base.Condenser(init=init, update=make_update(config, optimizer, n_devices),
                        sample_batch=sample_batch)
