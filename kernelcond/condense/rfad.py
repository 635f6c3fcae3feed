"""RFAD: KIP on random-feature kernels, KRR in feature space, Platt-scaled loss.

RFAD (Loo, Hasani, Amini, Rus, NeurIPS 2022, arXiv:2210.12067) is KIP
(arXiv:2011.00050) with three changes:

1. The exact infinite-width kernel is replaced by the empirical kernel of `M`
   random finite networks of the spec (`kernels.random_feature_fn`): each input
   costs one forward pass, so the kernel rows of a support set cost O(n_s)
   network evaluations instead of O(n_s^2) (pooled ConvNet) kernel entries. The
   NNGP features are `phi(x) = [W_std / sqrt(F) z_m(x), b_std]_m / sqrt(M)`, whose
   inner products are the paper's `W_std^2 z.z / F + b_std^2` averaged over models.
2. The networks are drawn afresh at every step, from the step's update key
   (`loop.step_keys`), not from a fixed pool: a fresh draw is an unbiased
   sample of the random-feature kernel every step, so the support set cannot
   over-fit a few networks, it costs nothing extra (a pool's networks would be
   re-evaluated every step anyway) and needs no state, and the same step of a
   resumed run sees the same networks.
3. The loss may be Platt-scaled cross-entropy (`loss='platt'`): the KRR
   predictions `f` are logits scaled by a learned inverse temperature
   `s = exp(log_scale)`, `loss = mean_i [logsumexp(s f_i) - s f_{i, y_i}]`
   instead of KIP's `0.5 * mean (f - y)^2` (`loss='mse'`).

KRR in feature space. With `Phi_s` `(n_s, D)` and `Phi_t` `(n_t, D)` the
features of the support and of the target batch, `K = Phi Phi^T` and the
kernelcond ridge `lam = reg * tr(K_ss) / n_s = reg * ||Phi_s||_F^2 / n_s`, the
KRR predictions are `f_t = Phi_t W` with the readout weights

    W = Phi_s^T (Phi_s Phi_s^T + lam I_{n_s})^{-1} y_s          ('dual')
      = (Phi_s^T Phi_s + lam I_D)^{-1} Phi_s^T y_s              ('primal')

(the push-through identity). Both are linear in `n_t`; the primal form is also
linear in `n_s` (O(n_s D^2 + D^3)), the dual form cubic in `n_s` but cheaper
while `n_s < D`; `feature_krr_weights` picks the cheaper one from the shapes.
(The paper's O(|S|) is the kernel computation; its released code solves the
dual form, the support sets being smaller than D.) The target batch only
enters through `Phi_t W`, so it is split over local devices: each device
computes the features of its shard, the support features and `W` are
replicated, and per-device losses and gradients are summed with `psum`.

`make(config)` returns the method as a `base.Condenser`; `condense.loop.run`
drives it. `NAMED_CONFIGS` holds the paper's settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from kernelcond import distributed
from kernelcond import kernels
from kernelcond.condense import base
from kernelcond.condense import kip
from kernelcond.registry import choice_validator

LOSSES = ("mse", "platt")
KERNEL_TYPES = ("nngp", "ntk")
SCHEDULES = ("constant", "cosine")
KRR_FORMS = ("auto", "dual", "primal")

OPTIMIZERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    **kip.OPTIMIZERS,
    "adabelief": lambda lr: optax.adabelief(lr, eps=1e-16),
    "lamb": optax.lamb,
}

check_loss = choice_validator("RFAD loss", LOSSES)
check_optimizer = choice_validator("optimizer", tuple(OPTIMIZERS))
check_schedule = choice_validator("lr schedule", SCHEDULES)


@dataclasses.dataclass(frozen=True)
class RfadConfig:
  """Hyper-parameters of RFAD: THE defaults, sized for 2 CPU cores.

  Attributes:
    kernel: architecture spec of the random networks (`kernels.get_spec`), e.g.
      'conv3' (KIP's ConvNet: 3x3 convs, ReLU, 2x2 average pooling); its exact
      kernel evaluates the condensed set.
    kernel_backend: backend of the exact kernel of the evaluation ('auto',
      'native' or 'nt').
    kernel_type: 'nngp' (the paper: readout inputs as features) or 'ntk'
      (parameter gradients as features; far more features per network).
    width: hidden width (conv channels) of the random networks.
    n_models: random networks drawn at every step (M).
    steps: optimisation steps of a run (the cosine schedule decays over them).
    lr: learning rate of the images (and labels).
    lr_schedule: 'constant' or 'cosine' (decay to lr / 100 over `steps`).
    optimizer: 'adam', 'adabelief' (the paper's), 'lamb', 'sgd' or 'momentum'.
    reg: relative ridge `reg * trace(K_ss) / n_s` of the support solve.
    target_batch: real training examples per step.
    learn_labels: also optimise `y_support` (default: fixed labels).
    loss: 'platt' (cross-entropy of the KRR predictions times a learned
      inverse temperature) or 'mse' (KIP's loss).
    temperature_lr: Adam learning rate of the log inverse temperature ('platt').
  """
  kernel: str = "conv3"
  kernel_backend: str = "auto"
  kernel_type: str = "nngp"
  width: int = 32
  n_models: int = 4
  steps: int = 1000
  lr: float = 0.01
  lr_schedule: str = "constant"
  optimizer: str = "adam"
  reg: float = 1e-4
  target_batch: int = 256
  learn_labels: bool = False
  loss: str = "platt"
  temperature_lr: float = 0.01

  def __post_init__(self):
    kernels.get_spec(self.kernel)  # a bad spec fails here, before any work
    choice_validator("kernel backend", kernels.BACKENDS)(self.kernel_backend)
    choice_validator("RFAD kernel type", KERNEL_TYPES)(self.kernel_type)
    check_loss(self.loss)
    check_optimizer(self.optimizer)
    check_schedule(self.lr_schedule)
    for name in ("lr", "temperature_lr"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not self.reg > 0:
      raise ValueError(f"reg must be > 0 (the feature-space solve needs a ridge), got {self.reg}")
    for name in ("width", "n_models", "steps", "target_batch"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

  @property
  def eval_kernel_type(self) -> str:
    """The exact kernel of KRR evaluation: the one the random features estimate."""
    return self.kernel_type

  @classmethod
  def named(cls, name: str, **overrides) -> "RfadConfig":
    """The config `NAMED_CONFIGS[name]` with `overrides` (errors list the valid names)."""
    if name not in NAMED_CONFIGS:
      raise ValueError(f"Unknown RFAD config {name!r}; valid: {', '.join(NAMED_CONFIGS)}")
    return base.replace_config(cls(), **{**NAMED_CONFIGS[name], **overrides})

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# The paper's settings, as in the authors' released code (arXiv:2210.12067): 8
# ConvNets of depth 3 and width 256 (no normalisation, W_std^2 = 2, b_std = 0.1,
# kernel 2 z.z / F + 0.01 as here), fresh every step, target batch 4 x 1280,
# AdaBelief lr 1e-3, Platt loss (temperature lr 1e-2), relative ridge 5e-3. They run
# up to 100k steps with early stopping on a validation split and also learn a
# linear transform of the images (not implemented here).
NAMED_CONFIGS: dict[str, dict] = {
    "paper": dict(kernel="conv3", kernel_type="nngp", width=256, n_models=8,
                  target_batch=5120, optimizer="adabelief", lr=1e-3, lr_schedule="constant",
                  reg=5e-3, loss="platt", temperature_lr=1e-2, steps=20000),
    "paper_learned_labels": dict(kernel="conv3", kernel_type="nngp", width=256, n_models=8,
                                 target_batch=5120, optimizer="adabelief", lr=1e-3,
                                 lr_schedule="constant", reg=5e-3, loss="platt",
                                 temperature_lr=1e-2, steps=20000, learn_labels=True),
}


@flax.struct.dataclass
class RfadState:
  """State of an RFAD run (a pytree that `io.save_checkpoint` round-trips).

  Attributes:
    x_support: `(n_s, H, W, C)` learned images.
    y_support: `(n_s, c)` labels (learned if `learn_labels`).
    log_scale: scalar log inverse temperature of the Platt loss (0 for 'mse').
    opt_state: optax state of `params`.
    step: int32 scalar, steps taken.
  """
  x_support: jax.Array
  y_support: jax.Array
  log_scale: jax.Array
  opt_state: Any
  step: jax.Array

  @property
  def params(self) -> dict[str, jax.Array]:
    return {"x_support": self.x_support, "y_support": self.y_support,
            "log_scale": self.log_scale}


def feature_krr_weights(phi_s: jax.Array, y_s: jax.Array, reg: float,
                        form: str = "auto") -> jax.Array:
  """Readout weights `W` `(D, c)` of KRR on features, so that predictions are `Phi_t W`.

  Args:
    phi_s: `(n_s, D)` support features. y_s: `(n_s, c)` support targets.
    reg: relative ridge; the ridge is `reg * ||phi_s||_F^2 / n_s`, i.e. `reg *
      trace(K_ss) / n_s` for `K_ss = phi_s phi_s^T` (`krr.regularized`).
    form: 'dual' (an `n_s x n_s` solve), 'primal' (a `D x D` solve; linear in
      `n_s`) or 'auto' (the smaller system). See the module docstring.

  Returns:
    `W`; `phi_t @ W` equals `krr.predict(phi_t phi_s^T, phi_s phi_s^T, y_s, reg)`.
  """
  choice_validator("KRR form", KRR_FORMS)(form)
  n_s, d = phi_s.shape
  if form == "auto":
    form = "dual" if n_s <= d else "primal"
  hi = jax.lax.Precision.HIGHEST
  if form == "dual":
    k_ss = jnp.matmul(phi_s, phi_s.T, precision=hi)
    return jnp.matmul(phi_s.T, kip.krr_solve(k_ss, y_s, reg), precision=hi)
  ridge = reg * jnp.sum(phi_s ** 2) / n_s
  gram = jnp.matmul(phi_s.T, phi_s, precision=hi) + ridge * jnp.eye(d, dtype=phi_s.dtype)
  factor = jax.scipy.linalg.cho_factor(gram, lower=True)
  return jax.scipy.linalg.cho_solve(factor, jnp.matmul(phi_s.T, y_s, precision=hi))


def platt_loss_sum(pred: jax.Array, y_target: jax.Array, log_scale: jax.Array,
                   weights: jax.Array) -> jax.Array:
  """Weighted sum over examples of the Platt-scaled cross-entropy (arXiv:2210.12067 Sec. 3.2).

  `sum_i w_i [logsumexp_c(s pred_ic) - s pred_{i, argmax_c y_ic}]` with
  `s = exp(log_scale)`; `pred`, `y_target` `(n, c)`, `weights` `(n,)`.
  """
  logits = jnp.exp(log_scale) * pred
  labels = jnp.argmax(y_target, axis=-1)
  picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  return jnp.sum(weights * (jax.nn.logsumexp(logits, axis=-1) - picked))


def shard_targets(local: Callable, n_devices: Optional[int] = None) -> Callable:
  """`local(params, x_t, y_t, weights, shared)` summed over a target batch split across devices.

  Args:
    local: returns a pytree of sums over its shard (weighted by `weights`, 0 for
      padding), e.g. `(loss_sum, correct, grads)`; `params` and `shared` (any
      pytree: a key, network parameters) are replicated on every device.
    n_devices: devices of the global mesh (`distributed.global_mesh`; default: all
      devices of all processes). With 1, `local` runs as is.

  Returns:
    `sums(params, x_t, y_t, shared) -> (pytree, n)`: the sums over the whole
    batch (zero-padded to a multiple of `n_devices`) and the number of real
    examples.

  Raises:
    ValueError: `n_devices` not in `[1, device count]` (or leaving out another
      process's devices).
  """
  n_devices = jax.device_count() if n_devices is None else int(n_devices)
  if n_devices == 1:
    summed = local
  else:
    mesh = distributed.global_mesh("targets", n_devices)
    spec = jax.sharding.PartitionSpec
    summed = distributed.shard_map(
        lambda p, x, y, w, k: jax.lax.psum(local(p, x, y, w, k), "targets"), mesh,
        in_specs=(spec(), spec("targets"), spec("targets"), spec("targets"), spec()),
        out_specs=spec())

  def sums(params, x_target, y_target, shared):
    n = y_target.shape[0]
    pad = (-n) % n_devices
    weights = jnp.ones((n,), jnp.float32)
    if pad:
      x_target = jnp.concatenate([x_target, jnp.zeros((pad,) + x_target.shape[1:],
                                                       x_target.dtype)])
      y_target = jnp.concatenate([y_target, jnp.zeros((pad,) + y_target.shape[1:],
                                                       y_target.dtype)])
      weights = jnp.concatenate([weights, jnp.zeros((pad,), jnp.float32)])
    return summed(params, x_target, y_target, weights, shared), n

  return sums


def _loss_sum(config: RfadConfig, pred, y_target, log_scale, weights):
  if config.loss == "platt":
    return platt_loss_sum(pred, y_target, log_scale, weights)
  c = y_target.shape[-1]
  return 0.5 * jnp.sum(weights * jnp.sum((pred - y_target) ** 2, axis=-1)) / c


def make_loss_and_grad(config: RfadConfig, n_devices: Optional[int] = None):
  """The differentiated core of an RFAD step, the target batch sharded over devices.

  Returns:
    A pure `fn(params, x_target, y_target, key) -> (loss, accuracy, grads)`:
    `key` draws the `n_models` networks; the loss is the mean over targets of
    the Platt cross-entropy, or KIP's `0.5 * mean over all n_t * c entries` of
    the squared error ('mse'); accuracy is the KRR argmax accuracy on the batch.
  """
  features = kernels.random_feature_fn(config.kernel, config.n_models, config.width,
                                       get=config.kernel_type)

  def local(params, x_t, y_t, weights, key):
    phi_t = jax.lax.stop_gradient(features(key, x_t))

    def loss_sum(p):
      w = feature_krr_weights(features(key, p["x_support"]), p["y_support"], config.reg)
      pred = jnp.matmul(phi_t, w, precision=jax.lax.Precision.HIGHEST)
      correct = jnp.sum(weights * (jnp.argmax(pred, -1) == jnp.argmax(y_t, -1)))
      return _loss_sum(config, pred, y_t, p["log_scale"], weights), correct

    (total, correct), grads = jax.value_and_grad(loss_sum, has_aux=True)(params)
    return total, correct, grads

  sums = shard_targets(local, n_devices)

  def loss_and_grad(params, x_target, y_target, key):
    (total, correct, grads), n = sums(params, x_target, y_target, key)
    return total / n, correct / n, jax.tree_util.tree_map(lambda g: g / n, grads)

  return loss_and_grad


def make_optimizer(config: RfadConfig) -> optax.GradientTransformation:
  """Images (and labels if learned) with `config.optimizer`; the temperature with Adam.

  Frozen parameters (`y_support` with fixed labels, `log_scale` with the 'mse'
  loss) get `optax.set_to_zero()`: no state and no update.
  """
  images = OPTIMIZERS[config.optimizer](kip.learning_rate(config))
  groups = {"images": images, "temperature": optax.adam(config.temperature_lr),
            "freeze": optax.set_to_zero()}
  labels = {"x_support": "images",
            "y_support": "images" if config.learn_labels else "freeze",
            "log_scale": "temperature" if config.loss == "platt" else "freeze"}
  return optax.multi_transform(groups, labels)


def init_state(x_support, y_support, optimizer: optax.GradientTransformation) -> RfadState:
  """A fresh `RfadState` (step 0, inverse temperature 1)."""
  params = {"x_support": jnp.asarray(x_support, jnp.float32),
            "y_support": jnp.asarray(y_support, jnp.float32),
            "log_scale": jnp.zeros((), jnp.float32)}
  return RfadState(opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32), **params)


def make_update(config: RfadConfig, optimizer: Optional[optax.GradientTransformation] = None,
                n_devices: Optional[int] = None):
  """The RFAD step `update(state, (x_target, y_target), key) -> (state, metrics)`.

  `key` draws the step's random networks. `metrics = {'loss', 'target_accuracy',
  'temperature'}` (the loss before the update, the KRR accuracy on the batch,
  `1 / s` of the Platt loss).
  """
  optimizer = make_optimizer(config) if optimizer is None else optimizer
  loss_and_grad = make_loss_and_grad(config, n_devices)

  def update(state: RfadState, batch, key):
    x_target, y_target = batch
    params = state.params
    loss, accuracy, grads = loss_and_grad(params, x_target, y_target, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    new_state = state.replace(opt_state=opt_state, step=state.step + 1, **params)
    metrics = {"loss": loss, "target_accuracy": accuracy,
               "temperature": jnp.exp(-state.log_scale)}
    return new_state, metrics

  return update


def make(config: RfadConfig, n_devices: Optional[int] = None) -> base.Condenser:
  """RFAD as a `base.Condenser` (`n_devices`: devices the target batch is split over)."""
  optimizer = make_optimizer(config)

  def init(key, data: base.Data, x_init, y_init) -> RfadState:
    del key, data
    return init_state(x_init, y_init, optimizer)

  def sample_batch(key, data: base.Data):
    return base.sample_examples(key, data, config.target_batch)

  return base.Condenser(init=init, update=make_update(config, optimizer, n_devices),
                        sample_batch=sample_batch)
