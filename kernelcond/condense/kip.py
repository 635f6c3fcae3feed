"""Kernel Inducing Points (KIP): learn a small support set by differentiating KRR.

KIP (Nguyen, Chen, Lee, arXiv:2011.00050; Nguyen, Novak, Xiao, Lee,
arXiv:2107.13034) treats the images `x_support` (and optionally the labels
`y_support`) of a tiny support set as parameters. Each step draws a batch of
real training examples (`x_target`, `y_target`), predicts the batch by kernel
ridge regression from the support set and takes a gradient step on the error:

    alpha = (K_ss + reg * trace(K_ss) / n_s * I)^{-1} y_support      (krr.solve)
    loss  = 0.5 * mean_{i, c} (K_ts alpha - y_target)_{ic}^2

with `K_ss = kernel_fn(x_support, x_support)` `(n_s, n_s)` and
`K_ts = kernel_fn(x_target, x_support)` `(n_t, n_s)`. The ridge is kernelcond's
one relative convention (`krr.regularized`).

Loss normalisation (exactly): half the mean of the squared error over all
`n_t * n_classes` entries of the target batch, as in the KIP reference code.
(`krr.mse` reports the mean over examples of the sum over classes, i.e.
`2 * n_classes` times this loss.)

`make(config)` returns the method as a `base.Condenser` (pure `init` / `update`
pair); `condense.loop.run` drives it. The target batch of a step is split across
all devices of all processes (`jax.shard_map` over `distributed.global_mesh`):
each device computes `K_ts` for its shard, the small support solve is
replicated, and per-device losses and gradients are summed with `psum`, so 1
and N devices (in 1 or several processes) give the same loss and gradients.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from kernelcond import distributed
from kernelcond import kernels
from kernelcond import krr
from kernelcond.condense import base

KERNEL_CHOICES = ("ntk", "nngp", "sample")
SCHEDULE_CHOICES = ("constant", "cosine")

OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
}


def _check_choice(field: str, value: str, choices) -> None:
  if value not in choices:
    raise ValueError(f"Unknown {field} {value!r}; valid: {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class KipConfig:
  """Hyper-parameters of KIP: THE defaults (scripts and notebooks read them here).

  Attributes:
    kernel: kernel spec of the KRR (`kernels.get_spec`), e.g. 'fc3' or 'conv3'.
    kernel_backend: 'auto', 'native' or 'nt' (`kernels.resolve_backend`).
    kernel_type: 'ntk', 'nngp', or 'sample' (NTK or NNGP drawn with probability
      1/2 at every step, arXiv:2107.13034; a `lax.cond` computes only the drawn one).
    steps: optimisation steps of a run (the cosine schedule decays over them).
    lr: learning rate of the optimizer (images and labels); 0.04 with cosine
      decay won a validation search on Fashion-MNIST (docs/kip_fashion_mnist.md).
    lr_schedule: 'cosine' (decay from `lr` to `lr / 100` over `steps`) or 'constant'.
    optimizer: 'adam', 'sgd' or 'momentum'.
    reg: relative ridge `reg * trace(K_ss) / n_s` of the support solve.
    target_batch: real training examples per step.
    learn_labels: also optimise `y_support`; if False (the default) its gradient
      is dropped. Fixed labels were chosen on a Fashion-MNIST validation split by
      the accuracy of finite networks trained on the set (`mlp` protocol: 0.829 vs
      0.621 with learned labels at 10 per class), at a small cost in KRR accuracy
      (0.863 vs 0.871); results/transfer_fmnist/search_ipc10.jsonl.
    kernel_memory_mib: native backend, pooled / GAP ConvNet kernels: the memory
      one kernel call of a step may hold, gradients included, per device (the
      kernel is computed in blocks of `kernels.native.block_plan`); the default is
      the native backend's default block. Does not change results.
  """
  kernel: str = "fc3"
  kernel_backend: str = "auto"
  kernel_type: str = "ntk"
  steps: int = 1000
  lr: float = 0.04
  lr_schedule: str = "cosine"
  optimizer: str = "adam"
  reg: float = 1e-6
  target_batch: int = 5000
  learn_labels: bool = False
  kernel_memory_mib: float = 4096.0

  def __post_init__(self):
    _check_choice("KIP kernel type", self.kernel_type, KERNEL_CHOICES)
    _check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
    _check_choice("lr schedule", self.lr_schedule, SCHEDULE_CHOICES)
    kernels.get_spec(self.kernel)  # a bad spec fails here, before any work
    _check_choice("kernel backend", self.kernel_backend, kernels.BACKENDS)
    if not self.lr > 0:
      raise ValueError(f"lr must be positive, got {self.lr}")
    if not self.reg >= 0:
      raise ValueError(f"reg must be >= 0, got {self.reg}")
    for name in ("steps", "target_batch"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if not 0 < self.kernel_memory_mib < float("inf"):
      raise ValueError(f"kernel_memory_mib must be a positive number, got {self.kernel_memory_mib}")

  @property
  def eval_kernel_type(self) -> str:
    """The kernel of KRR evaluation: the NTK for `kernel_type='sample'`."""
    return "ntk" if self.kernel_type == "sample" else self.kernel_type

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@flax.struct.dataclass
class KipState:
  """State of a KIP run: a pytree that `io.save_checkpoint` round-trips.

  Attributes:
    x_support: `(n_s, H, W, C)` (or `(n_s, d)`) learned images.
    y_support: `(n_s, n_classes)` labels (learned if `learn_labels`).
    opt_state: optax state of the parameters `{'x_support', 'y_support'}`.
    step: int32 scalar, number of steps taken.
  """
  x_support: jax.Array
  y_support: jax.Array
  opt_state: Any
  step: jax.Array

  @property
  def params(self) -> dict[str, jax.Array]:
    return {"x_support": self.x_support, "y_support": self.y_support}


def learning_rate(config) -> Any:
  """`config.lr`, or its cosine decay to `lr / 100` over `config.steps` (`lr_schedule`).

  The one schedule rule of the kernel methods (KIP, rfad, frepo).
  """
  if config.lr_schedule == "cosine":
    return optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.01)
  return config.lr


def make_optimizer(config: KipConfig) -> optax.GradientTransformation:
  """The optax transformation named by `config`, chained with the label mask.

  With `learn_labels=False` the label update is `optax.set_to_zero()`: its
  gradient is dropped, no optimizer state is kept for it and XLA removes its
  computation from the jitted step.
  """
  base = OPTIMIZERS[config.optimizer](learning_rate(config))
  if config.learn_labels:
    return optax.chain(base)
  labels = {"x_support": "learn", "y_support": "freeze"}
  return optax.chain(optax.multi_transform({"learn": base, "freeze": optax.set_to_zero()},
                                           labels))


def init_state(x_support, y_support, optimizer: optax.GradientTransformation) -> KipState:
  """A fresh `KipState` (step 0) for the given support set.

  Args:
    x_support: `(n_s, ...)` initial images. y_support: `(n_s, c)` initial labels.
    optimizer: from `make_optimizer`.
  """
  x_support = jnp.asarray(x_support, jnp.float32)
  y_support = jnp.asarray(y_support, jnp.float32)
  params = {"x_support": x_support, "y_support": y_support}
  return KipState(x_support=x_support, y_support=y_support, opt_state=optimizer.init(params),
                  step=jnp.zeros((), jnp.int32))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def krr_solve(k_ss, y_support, reg):
  """`krr.solve` with the adjoint-solve gradient instead of differentiating Cholesky.

  Same value as `krr.solve(k_ss, y_support, reg)`. With `A = krr.regularized(k_ss,
  reg)` (symmetric) and `alpha = A^{-1} y`, the cotangent `g` of `alpha` gives
  `w = A^{-1} g`, `dy = w` and `dA = -w alpha^T`, chained through
  `krr.regularized` for `dk_ss`. This is the gradient of the exact solve; on
  current JAX (0.10, CPU) it is ~50x faster than differentiating the Cholesky
  factorisation (16 ms vs 0.3 ms at n_s = 100).
  """
  return krr.solve(k_ss, y_support, reg)


def _krr_solve_fwd(k_ss, y_support, reg):
  alpha = krr.solve(k_ss, y_support, reg)
  return alpha, (k_ss, alpha)


def _krr_solve_bwd(reg, residuals, g):
  k_ss, alpha = residuals
  w = krr.solve(k_ss, g, reg)
  _, regularized_vjp = jax.vjp(lambda k: krr.regularized(k, reg), k_ss)
  (dk,) = regularized_vjp(-w @ alpha.T)
  return dk, w


krr_solve.defvjp(_krr_solve_fwd, _krr_solve_bwd)


def _squared_error_sum(params, x_target, y_target, weights, kernel_fn, reg, get):
  """Weighted sum of squared KRR errors and correct-argmax counts on one shard.

  Args:
    params: `{'x_support': (n_s, ...), 'y_support': (n_s, c)}`.
    x_target: `(b, ...)`; y_target: `(b, c)`; weights: `(b,)` (0 for padding).
    kernel_fn: kernel function; reg: relative ridge; get: 'ntk' or 'nngp'.
  """
  x_support = params["x_support"]
  k_ss = kernel_fn(x_support, x_support, get)
  k_ts = kernel_fn(x_target, x_support, get)
  pred = k_ts @ krr_solve(k_ss, params["y_support"], reg)  # = krr.predict(...)
  sq = jnp.sum((pred - y_target) ** 2, axis=-1)
  correct = (jnp.argmax(pred, -1) == jnp.argmax(y_target, -1)).astype(jnp.float32)
  return jnp.sum(weights * sq), jnp.sum(weights * correct)


def loss_fn(params: dict, x_target, y_target, kernel_fn, reg: float = 1e-6,
            get: str = "ntk") -> jax.Array:
  """KIP loss: `0.5 * mean((K_ts (K_ss + reg tr(K_ss)/n_s I)^{-1} y_s - y_t)^2)`.

  The mean runs over all `n_t * c` entries (see the module docstring).

  Args:
    params: `{'x_support': (n_s, ...), 'y_support': (n_s, c)}`.
    x_target: `(n_t, ...)` images. y_target: `(n_t, c)` targets.
    kernel_fn: `kernel_fn(x1, x2, get)` from `kernels.make_kernel_fn`.
    reg: relative ridge. get: 'ntk' or 'nngp'.

  Returns:
    Scalar loss; differentiable in `params`.
  """
  _check_choice("kernel", get, ("ntk", "nngp"))
  n, c = y_target.shape
  sq_sum, _ = _squared_error_sum(params, x_target, y_target, jnp.ones((n,), jnp.float32),
                                 kernel_fn, reg, get)
  return 0.5 * sq_sum / (n * c)



def make_loss_and_grad(kernel_fn, config: KipConfig, n_devices: Optional[int] = None):
  """The differentiated core of a KIP step, with the target batch sharded.

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)` from `kernels.make_kernel_fn`.
    config: a `KipConfig` (its `kernel_type` and `reg` are used).
    n_devices: devices the target batch is split over: the first `n_devices` of
      `jax.devices()`, every device of every process by default
      (`distributed.global_mesh`). With 1 there is no sharding; otherwise the
      batch is zero-padded to a multiple of `n_devices` (padding gets weight 0)
      and each device computes `K_ts` on its shard while the support solve is
      replicated; losses and gradients are summed across devices with `psum`.
      With several processes every process passes the same parameters and batch
      and gets the same loss and gradients.

  Returns:
    A pure (not yet jitted) `fn(params, x_target, y_target, use_ntk) ->
    (loss, accuracy, grads)` with the loss of `loss_fn` (`use_ntk` picks the
    kernel for `kernel='sample'`; otherwise it is ignored), the KRR argmax
    accuracy on the batch and the gradient of the loss w.r.t. `params`.

  Raises:
    ValueError: if `n_devices` is not between 1 and the device count (all of
      them with several processes).
  """
  mesh = distributed.global_mesh("targets", n_devices)
  n_devices = mesh.size
  reg = config.reg

  def one_kernel(get, params, x_t, y_t, w):
    """(sum sq error, correct count) and the gradient of the first, on one shard."""
    fn = lambda p: _squared_error_sum(p, x_t, y_t, w, kernel_fn, reg, get)
    (sq, correct), grads = jax.value_and_grad(fn, has_aux=True)(params)
    return sq, correct, grads

  def local(params, x_t, y_t, w, use_ntk):
    if config.kernel_type != "sample":
      return one_kernel(config.kernel_type, params, x_t, y_t, w)
    # Both branches are compiled; only the drawn kernel is computed.
    return jax.lax.cond(use_ntk, functools.partial(one_kernel, "ntk"),
                        functools.partial(one_kernel, "nngp"), params, x_t, y_t, w)

  if n_devices == 1:
    sums = local
  else:
    spec = jax.sharding.PartitionSpec

    def sharded(params, x_t, y_t, w, use_ntk):
      return jax.lax.psum(local(params, x_t, y_t, w, use_ntk), "targets")

    sums = distributed.shard_map(
        sharded, mesh,
        in_specs=(spec(), spec("targets"), spec("targets"), spec("targets"), spec()),
        out_specs=spec())

  def loss_and_grad(params, x_target, y_target, use_ntk):
    n, c = y_target.shape
    pad = (-n) % n_devices
    weights = jnp.ones((n,), jnp.float32)
    if pad:
      x_target = jnp.concatenate([x_target, jnp.zeros((pad,) + x_target.shape[1:],
                                                       x_target.dtype)])
      y_target = jnp.concatenate([y_target, jnp.zeros((pad, c), y_target.dtype)])
      weights = jnp.concatenate([weights, jnp.zeros((pad,), jnp.float32)])
    sq, correct, grads = sums(params, x_target, y_target, weights, jnp.asarray(use_ntk))
    scale = 0.5 / (n * c)
    return sq * scale, correct / n, jax.tree_util.tree_map(lambda g: g * scale, grads)

  return loss_and_grad


def make_update(kernel_fn, config: KipConfig,
                optimizer: Optional[optax.GradientTransformation] = None,
                n_devices: Optional[int] = None):
  """The KIP step as a pure `update(state, batch, key) -> (state, metrics)`.

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)` from `kernels.make_kernel_fn` (or a
      random-feature kernel with the same signature).
    config: a `KipConfig`.
    optimizer: optax transformation (default `make_optimizer(config)`); must be
      the one `init_state` was given.
    n_devices: devices the target batch is split over (default: all, of all
      processes); see `make_loss_and_grad`.

  Returns:
    `update(state, (x_target, y_target), key)` with `x_target` `(n_t, ...)`,
    `y_target` `(n_t, c)`; `key` draws the kernel of `kernel_type='sample'`.
    `metrics = {'loss', 'target_accuracy', 'used_ntk'}` (scalars: the loss
    before the update, the KRR argmax accuracy on the target batch, 1.0 if the
    NTK was used).
  """
  optimizer = make_optimizer(config) if optimizer is None else optimizer
  loss_and_grad = make_loss_and_grad(kernel_fn, config, n_devices)

  def update(state: KipState, batch, key):
    x_target, y_target = batch
    use_ntk = (jax.random.bernoulli(key) if config.kernel_type == "sample"
               else jnp.asarray(config.kernel_type == "ntk"))
    params = state.params
    loss, accuracy, grads = loss_and_grad(params, x_target, y_target, use_ntk)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    new_state = state.replace(x_support=params["x_support"], y_support=params["y_support"],
                              opt_state=opt_state, step=state.step + 1)
    metrics = {"loss": loss, "target_accuracy": accuracy,
               "used_ntk": use_ntk.astype(jnp.float32)}
    return new_state, metrics

  return update


def make(config: KipConfig, kernel_fn=None, n_devices: Optional[int] = None) -> base.Condenser:
  """KIP as a `base.Condenser`.

  Args:
    config: a `KipConfig`.
    kernel_fn: the kernel (default: `kernels.make_kernel_fn(config.kernel,
      config.kernel_backend, config.kernel_memory_mib)`); RFAD passes a
      random-feature kernel.
    n_devices: devices the target batch is split over (default: all, of all processes).
  """
  if kernel_fn is None:
    kernel_fn = kernels.make_kernel_fn(config.kernel, config.kernel_backend,
                                       config.kernel_memory_mib)
  optimizer = make_optimizer(config)

  def init(key, data: base.Data, x_init, y_init) -> KipState:
    del key, data
    return init_state(x_init, y_init, optimizer)

  def sample_batch(key, data: base.Data):
    return base.sample_examples(key, data, config.target_batch)

  return base.Condenser(init=init, update=make_update(kernel_fn, config, optimizer, n_devices),
                        sample_batch=sample_batch)
