"""Dataset Distillation (DD) by back-propagation through unrolled training, with soft labels.

DD (Wang, Zhu, Torralba, Efros 2018, arXiv:1811.10959, Alg. 1) treats the
support images and the inner learning rate as parameters; the soft-label
variant (Sucholutsky & Schonlau 2019, arXiv:1910.02551, Sec. 3) learns a label
distribution for every support example as well, so one example may carry
several classes. Every step:

    theta_0^(k) ~ p(theta), k = 1..n_inits          (fresh random initialisations)
    theta_{t+1} = theta_t - eta * grad_theta mean_j CE(f_theta_t(x_j), q_j)
                  for t = 0..T-1 (full batch: all support examples)
    loss = mean_k mean_{(x, y) in real batch} CE(f_{theta_T^(k)}(x), y)
    (x_support, label logits, log eta) <- Adam step on grad loss

with `q_j = softmax(l_j)` the learned soft label of support example `j` (logits
`l_j`, initialised to 0.9 on its class and 0.1 spread over the others) and
`eta = exp(log_eta)` (initialised to `net_lr`). With `learn_labels=False` the
labels stay the initial hard ones. The support labels a run reports
(`y_support`) are the distributions `q`, so the evaluation's soft loss
('soft_xent', `nets.losses.distribution`) trains on exactly what DD used.

The T inner steps run in `jax.lax.scan` over a `jax.checkpoint`-ed step:
reverse mode then stores one parameter vector per step and recomputes each
step's activations in the backward pass, so memory grows with T only by one
set of network parameters per step. The n_inits unrolls are `vmap`-ed.
Cost on 2 shared CPU cores (Fashion-MNIST, 1 per class, 10 steps, 2
initialisations): 0.03 CPU s a step with the default MLP; the ConvNet (w32 d3)
took over a minute of wall time a step (second-order convolutions), so use it
on accelerators.

The network is an MLP of `depth` hidden layers of `width` units (vectors and
small images) or the `condense.matching` ConvNet (`net='convnet'`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from kernelcond.condense import base
from kernelcond.condense import matching

INITIAL_LABEL_MASS = 0.9


@dataclasses.dataclass(frozen=True)
class DdConfig:
  """Hyper-parameters of DD with soft labels: THE defaults.

  Attributes:
    steps: outer optimisation steps.
    lr: Adam learning rate of the images, label logits and log inner lr.
    net: 'mlp' (default: vectors, digits) or 'convnet'.
    width: MLP hidden units (ConvNet channels).
    depth: MLP hidden layers (ConvNet blocks).
    norm: ConvNet normalisation: 'instance' or 'none'.
    inner_steps: unrolled training steps T on the support set.
    n_inits: random network initialisations per step (the unrolls averaged).
    net_lr: initial value of the learned inner learning rate (0.02 as DD).
    target_batch: real training examples of the outer loss per step.
    learn_labels: learn soft labels (arXiv:1910.02551); False keeps hard ones.
  """
  steps: int = 1000
  lr: float = 0.01
  net: str = "mlp"
  width: int = 128
  depth: int = 2
  norm: str = "instance"
  inner_steps: int = 10
  n_inits: int = 4
  net_lr: float = 0.02
  target_batch: int = 256
  learn_labels: bool = True

  def __post_init__(self):
    matching.check_net(self.net)
    matching.check_norm(self.norm)
    for name in ("lr", "net_lr"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    for name in ("steps", "width", "depth", "inner_steps", "n_inits", "target_batch"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# Paper-like settings (arXiv:1811.10959 Sec. 4: random initialisations, 10
# unrolled steps, learned lr from 0.02, Adam 0.01; arXiv:1910.02551: learned
# labels) with a small ConvNet for images at 1/10/50 per class.
NAMED_CONFIGS: dict[str, dict] = {
    f"ipc{ipc}": {"net": "convnet", "width": 32, "depth": 3, "inner_steps": 10,
                  "n_inits": 4, "steps": 2000, "lr": 0.01}
    for ipc in (1, 10, 50)
}


def named(name: str, **overrides) -> DdConfig:
  """The config `NAMED_CONFIGS[name]` with `overrides` (errors list the valid names)."""
  if name not in NAMED_CONFIGS:
    raise ValueError(f"Unknown DD config {name!r}; valid: {', '.join(NAMED_CONFIGS)}")
  return base.replace_config(DdConfig(), **{**NAMED_CONFIGS[name], **overrides})


def initial_label_logits(y_init) -> jax.Array:
  """`(n, c)` logits of 0.9 on each row's class (argmax of `y_init`), 0.1 spread elsewhere."""
  y_init = jnp.asarray(y_init)
  c = y_init.shape[-1]
  hot = jax.nn.one_hot(jnp.argmax(y_init, -1), c, dtype=jnp.float32)
  probs = hot * INITIAL_LABEL_MASS + (1 - hot) * (1 - INITIAL_LABEL_MASS) / max(c - 1, 1)
  return jnp.log(probs)


def soft_labels(params: dict, y_fixed: Optional[jax.Array] = None) -> jax.Array:
  """The support's label distributions: `softmax(label_logits)`, or `y_fixed` if given."""
  return jax.nn.softmax(params["label_logits"]) if y_fixed is None else y_fixed


def _cross_entropy(logits, targets) -> jax.Array:
  """Mean over rows of `-sum_k targets_k log softmax(logits)_k`."""
  return jnp.mean(-jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


def unrolled_loss(params: dict, inits, x_target, labels_target, *, apply_fn: Callable,
                  inner_steps: int, y_fixed: Optional[jax.Array] = None):
  """DD's outer loss: CE on real targets after T unrolled steps, averaged over initialisations.

  Args:
    params: `{'x_support': (n_s, ...), 'label_logits': (n_s, c), 'log_lr': ()}`.
    inits: network parameters with a leading axis of `n_inits`.
    x_target: `(b, ...)` real examples; labels_target: `(b,)` their classes.
    apply_fn: `apply_fn(net_params, x) -> logits`.
    inner_steps: T.
    y_fixed: `(n_s, c)` fixed label distributions (None: learned `soft_labels`).

  Returns:
    `(loss, accuracy)`: means over initialisations of the target cross-entropy
    and argmax accuracy of the trained networks.
  """
  x_s = params["x_support"]
  targets = soft_labels(params, y_fixed)
  lr = jnp.exp(params["log_lr"])

  def inner_loss(p):
    return _cross_entropy(apply_fn(p, x_s), targets)

  @jax.checkpoint
  def step(p, _):
    grads = jax.grad(inner_loss)(p)
    return jax.tree_util.tree_map(lambda w, g: w - lr * g, p, grads), None

  def one(init):
    trained, _ = jax.lax.scan(step, init, None, length=inner_steps)
    logits = apply_fn(trained, x_target)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels_target[:, None], 1)
    return jnp.mean(nll), jnp.mean(jnp.argmax(logits, -1) == labels_target)

  losses, accuracies = jax.vmap(one)(inits)
  return jnp.mean(losses), jnp.mean(accuracies)


@flax.struct.dataclass
class DdState:
  """State of a DD run.

  Attributes:
    x_support: `(n_s, ...)` learned inputs.
    y_support: `(n_s, c)` label distributions (learned, or the initial hard ones).
    label_logits: `(n_s, c)` logits of the learned labels.
    log_lr: log of the learned inner learning rate.
    opt_state: Adam state of `{'x_support', 'label_logits', 'log_lr'}`.
    step: int32 scalar, steps taken.
  """
  x_support: jax.Array
  y_support: jax.Array
  label_logits: jax.Array
  log_lr: jax.Array
  opt_state: Any
  step: jax.Array

  @property
  def params(self) -> dict:
    return {"x_support": self.x_support, "label_logits": self.label_logits,
            "log_lr": self.log_lr}


def make(config: DdConfig) -> base.Condenser:
  """DD as a `base.Condenser`. Metrics: 'loss', 'target_accuracy' (before the step), 'inner_lr'."""
  optimizer = optax.adam(config.lr)

  def init(key, data: base.Data, x_init, y_init) -> DdState:
    del key, data
    y_init = jnp.asarray(y_init, jnp.float32)
    logits = initial_label_logits(y_init)
    hard = jax.nn.one_hot(jnp.argmax(y_init, -1), y_init.shape[-1], dtype=jnp.float32)
    params = {"x_support": jnp.asarray(x_init, jnp.float32), "label_logits": logits,
              "log_lr": jnp.log(jnp.asarray(config.net_lr, jnp.float32))}
    return DdState(y_support=jax.nn.softmax(logits) if config.learn_labels else hard,
                   opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32), **params)

  def sample_batch(key, data: base.Data):
    x, y = base.sample_examples(key, data, config.target_batch)
    return x, jnp.argmax(y, -1)

  def update(state: DdState, batch, key):
    x_target, labels_target = batch
    model = matching.build_net(config, state.x_support.shape[1:], state.y_support.shape[1])
    keys = jax.random.split(key, config.n_inits)
    inits = jax.vmap(lambda k: model.init(k, state.x_support[:1])["params"])(keys)
    apply_fn = lambda p, x: model.apply({"params": p}, x)
    y_fixed = None if config.learn_labels else state.y_support

    def loss_fn(params):
      return unrolled_loss(params, inits, x_target, labels_target, apply_fn=apply_fn,
                           inner_steps=config.inner_steps, y_fixed=y_fixed)

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    y_support = soft_labels(params) if config.learn_labels else state.y_support
    new_state = state.replace(y_support=y_support, opt_state=opt_state, step=state.step + 1,
                              **params)
    return new_state, {"loss": loss, "target_accuracy": accuracy,
                       "inner_lr": jnp.exp(state.log_lr)}

  return base.Condenser(init=init, update=update, sample_batch=sample_batch)

