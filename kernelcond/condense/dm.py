"""Distribution Matching (DM): match mean embeddings under random networks.

DM (Zhao & Bilen, WACV 2023, arXiv:2110.04181, Eq. 4-5) learns the support
images so that, under a network drawn afresh at every iteration and never
trained, the mean embedding of each class's synthetic images equals that of
its real images. One `update` is one iteration of their Alg. 1:

    theta ~ a fresh random initialisation of the network
    for every class c:
      e_real_c = mean_i psi_theta(A_c(x_real_c,i))      (b real examples)
      e_syn_c  = mean_j psi_theta(A_c(x_syn_c,j))       (the ipc synthetic ones)
    loss = sum_c ||e_real_c - e_syn_c||^2
    x_syn <- SGD(lr, momentum) step on grad_{x_syn} loss

`psi_theta` is the embedding: the network's output before its classifier (the
ConvNet's flattened features, `return_features=True`). `A_c` is DSA's siamese
augmentation (`nets.augment.siamese`: one transform, one draw shared by the
real and synthetic batch of class `c`, a fresh draw per class and iteration),
as in the paper; 'none' switches it off (vectors). Images: SGD lr 1.0 with
momentum 0.5, 256 real images per class, 20,000 iterations (the paper's).
The network and real-batch sampling are those of `condense.matching`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from kernelcond.condense import base
from kernelcond.condense import matching
from kernelcond.nets import augment


@dataclasses.dataclass(frozen=True)
class DmConfig:
  """Hyper-parameters of DM: THE defaults (arXiv:2110.04181 and its code).

  Attributes:
    steps: iterations (a fresh network each); 20,000 in the paper.
    lr: SGD learning rate of the images (1.0).
    momentum: SGD momentum of the images (0.5).
    net: 'convnet' (images) or 'mlp' (vectors).
    width: ConvNet channels (MLP hidden units); 128 in the paper.
    depth: ConvNet blocks (MLP hidden layers).
    norm: ConvNet normalisation: 'instance' or 'none'.
    batch_real: real examples per class per iteration (256).
    dsa_strategy: siamese augmentation (`nets.augment`): 'dsa' (the paper's),
      'dsa_noflip' for digits, 'none' for vectors.
  """
  steps: int = 20000
  lr: float = 1.0
  momentum: float = 0.5
  net: str = "convnet"
  width: int = 128
  depth: int = 3
  norm: str = "instance"
  batch_real: int = 256
  dsa_strategy: str = "dsa"

  def __post_init__(self):
    matching.check_net(self.net)
    matching.check_norm(self.norm)
    augment.parse_strategy(self.dsa_strategy)
    if not self.lr > 0:
      raise ValueError(f"lr must be positive, got {self.lr}")
    if not 0 <= self.momentum < 1:
      raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
    for name in ("steps", "width", "depth", "batch_real"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# The paper's settings at every ipc (arXiv:2110.04181 Sec. 4.1 and its code):
# ConvNet w128 d3 instance norm, 20,000 iterations, SGD 1.0 momentum 0.5, 256
# real images per class, DSA augmentation.
NAMED_CONFIGS: dict[str, dict] = {
    f"ipc{ipc}": {"steps": 20000, "width": 128, "depth": 3, "lr": 1.0, "batch_real": 256}
    for ipc in (1, 10, 50)
}


def named(name: str, **overrides) -> DmConfig:
  """The paper config `NAMED_CONFIGS[name]` with `overrides` (errors list the valid names)."""
  if name not in NAMED_CONFIGS:
    raise ValueError(f"Unknown DM config {name!r}; valid: {', '.join(NAMED_CONFIGS)}")
  return base.replace_config(DmConfig(), **{**NAMED_CONFIGS[name], **overrides})


def dm_loss(embed_fn: Callable, x_real, w_real, x_syn, keys, strategy: str = "none") -> jax.Array:
  """`sum_c ||weighted mean embed(x_real_c) - mean embed(x_syn_c)||^2` (arXiv:2110.04181 Eq. 5).

  Args:
    embed_fn: `(b, ...) -> (b, d)` embeddings.
    x_real: `(c, b, ...)` real examples per class; w_real: `(c, b)` their
      weights (`matching.sample_class_batches`: 0 for padding).
    x_syn: `(c, ipc, ...)` synthetic examples per class.
    keys: `(c, 2)` keys of the per-class siamese augmentation.
    strategy: `nets.augment` strategy ('none': no augmentation).

  Returns:
    Scalar loss, differentiable in `x_syn`.
  """

  def per_class(args):
    xr, wr, xs, key = args
    if augment.parse_strategy(strategy):
      xr, xs = augment.siamese(key, xr, xs, strategy)
    mean_real = jnp.sum(wr[:, None] * embed_fn(xr), 0) / jnp.maximum(jnp.sum(wr), 1.0)
    mean_syn = jnp.mean(embed_fn(xs), 0)
    return jnp.sum(jnp.square(mean_real - mean_syn))

  return jnp.sum(jax.lax.map(per_class, (x_real, w_real, x_syn, keys)))


def make(config: DmConfig) -> base.Condenser:
  """DM as a `base.Condenser`; one update = one iteration. Metrics: 'loss' (before the step)."""
  optimizer = matching.image_optimizer(config)
  strategy = config.dsa_strategy

  def update(state: matching.MatchingState, data: base.Data, key):
    c = data.num_classes
    ipc = state.x_support.shape[0] // c
    model = matching.build_net(config, state.x_support.shape[1:], c)
    k_init, k_real, k_aug = jax.random.split(key, 3)
    params = model.init(k_init, state.x_support[:1])["params"]

    def embed(x):
      return model.apply({"params": params}, x, return_features=True)

    x_real, w_real = matching.sample_class_batches(k_real, data, config.batch_real)
    keys = jax.random.split(k_aug, c)

    def loss_fn(x):
      return dm_loss(embed, x_real, w_real, jnp.reshape(x, (c, ipc) + x.shape[1:]), keys,
                     strategy)

    loss, grads = jax.value_and_grad(loss_fn)(state.x_support)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.x_support)
    x_syn = optax.apply_updates(state.x_support, updates)
    return state.replace(x_support=x_syn, opt_state=opt_state, step=state.step + 1), {"loss": loss}

  return base.Condenser(init=matching.make_init(optimizer), update=update,
                        sample_batch=base.whole_data)
