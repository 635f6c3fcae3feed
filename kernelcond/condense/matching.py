"""Dataset Condensation by gradient matching (DC) and its siamese-augmented variant (DSA).

DC (Zhao, Mopuri, Bilen, ICLR 2021, arXiv:2006.05929, Alg. 1) learns the
support images so that, class by class, a network's training gradient on the
synthetic images points where its gradient on real images does. One `update`
is one outer iteration of Alg. 1:

    theta ~ a fresh random initialisation of the network
    repeat outer_loop times:
      for every class c:                                       (Eq. 8-10)
        g_real_c = grad_theta CE(net_theta(A(x_real_c)), c)    (held fixed)
        g_syn_c  = grad_theta CE(net_theta(A(x_syn_c)),  c)
      loss = sum_c D(g_real_c, g_syn_c)
      x_syn <- SGD(lr, momentum) step on grad_{x_syn} loss
      unless this was the last repetition: train theta on the synthetic set for
        inner_loop epochs (SGD at net_lr, cross-entropy on the hard labels)

`A` is the identity for DC. For DSA (Zhao & Bilen, ICML 2021, arXiv:2102.08259,
Eq. 4) `A` is differentiable siamese augmentation: ONE transform with ONE draw
of its parameters applied to the real and the synthetic batch of a class
(`nets.augment.siamese`; a fresh draw per class and repetition), and the inner
training augments each synthetic batch with per-example draws, as the authors'
code does. The real batch of a class is `batch_real` examples drawn afresh at
every repetition.

The layer distance `D` is the paper's Eq. 10 as in the authors' code
(`match_loss` with `dis_metric='ours'`): for every weight tensor of the network,
reshaped to one row per OUTPUT channel (a conv kernel `(kh, kw, in, out)` gives
`out` rows of `kh * kw * in`, a dense kernel `(in, out)` gives `out` rows of
`in`),

    d(A, B) = sum_i ( 1 - <A_i, B_i> / (||A_i|| ||B_i|| + 1e-6) ),

summed over the tensors; one-dimensional tensors (biases, normalisation scales
and offsets) contribute 0, as in the reference. The matching loss of a
repetition is the sum of `D` over classes.

The network is `nets.models.ConvNet` (width 128, depth 3, instance norm, 28x28
inputs padded to 32x32 as in DC) or, for vectors (tabular data), an MLP of
`depth` hidden layers of `width` units. BatchNorm is not offered (the paper's
default is instance norm and batch statistics would couple the class batches).

Outer/inner loop counts follow the reference code's table for the support's
images per class (`loops_for_ipc`): (1, 1) at 1, (10, 50) at 10, (50, 10) at
50; `outer_loop = inner_loop = 0` (the default) picks them from the support's
shape, so `--ipc` alone gives the paper's schedule.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kernelcond.condense import base
from kernelcond.nets import augment
from kernelcond.nets import models
from kernelcond.nets import protocols
from kernelcond.registry import choice_validator

NETS = ("convnet", "mlp")
NET_NORMS = ("instance", "none")
MATCH_EPS = 1e-6

# outer_loop, inner_loop by images per class: the reference code's `get_loops`.
REFERENCE_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15),
                   50: (50, 10)}

check_net = choice_validator("matching network", NETS)
check_norm = choice_validator("matching network norm", NET_NORMS)


def loops_for_ipc(ipc: int) -> tuple[int, int]:
  """`(outer_loop, inner_loop)` of the reference table at the largest listed ipc <= `ipc`."""
  listed = max(k for k in REFERENCE_LOOPS if k <= max(int(ipc), 1))
  return REFERENCE_LOOPS[listed]


@dataclasses.dataclass(frozen=True)
class MatchingConfig:
  """Hyper-parameters of DC / DSA: THE defaults (those of arXiv:2006.05929 and its code).

  Attributes:
    steps: outer iterations (the network is re-initialised at each); 1000 in the paper.
    lr: SGD learning rate of the images (0.1).
    momentum: SGD momentum of the images (0.5, the reference code's).
    net: 'convnet' (images) or 'mlp' (vectors).
    width: channels of the ConvNet (hidden units of the MLP); 128 in the paper,
      shrink it on CPUs.
    depth: ConvNet blocks (MLP hidden layers).
    norm: ConvNet normalisation: 'instance' or 'none'.
    outer_loop: image updates per outer iteration (0: `loops_for_ipc`).
    inner_loop: epochs of network training on the synthetic set between image
      updates (0: `loops_for_ipc`).
    net_lr: SGD learning rate of the inner network training (0.01).
    batch_real: real examples per class for each gradient (256).
    batch_train: synthetic examples per inner step (256); an inner epoch is
      `ceil(n_support / batch_train)` steps on random batches of that size.
    dsa_strategy: augmentation of `nets.augment` for 'dsa' (e.g. 'dsa',
      'dsa_noflip' for digits, or '_'-joined transforms); 'none' for 'dc'.
  """
  steps: int = 1000
  lr: float = 0.1
  momentum: float = 0.5
  net: str = "convnet"
  width: int = 128
  depth: int = 3
  norm: str = "instance"
  outer_loop: int = 0
  inner_loop: int = 0
  net_lr: float = 0.01
  batch_real: int = 256
  batch_train: int = 256
  dsa_strategy: str = "none"

  def __post_init__(self):
    check_net(self.net)
    check_norm(self.norm)
    augment.parse_strategy(self.dsa_strategy)
    for name in ("lr", "net_lr"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not 0 <= self.momentum < 1:
      raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
    for name in ("steps", "width", "depth", "batch_real", "batch_train"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("outer_loop", "inner_loop"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0 (0: the reference table), got "
                         f"{getattr(self, name)}")

  def loops(self, ipc: int) -> tuple[int, int]:
    """`(outer_loop, inner_loop)` for a support of `ipc` per class (0 fields from the table)."""
    outer, inner = loops_for_ipc(ipc)
    return self.outer_loop or outer, self.inner_loop or inner

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DsaConfig(MatchingConfig):
  """DSA: DC with siamese augmentation (arXiv:2102.08259); THE defaults.

  Attributes:
    steps: outer iterations (1000 in the paper).
    lr: SGD learning rate of the images (0.1).
    momentum: SGD momentum of the images (0.5).
    net: 'convnet' (images) or 'mlp' (vectors).
    width: ConvNet channels (128 in the paper).
    depth: ConvNet blocks.
    norm: 'instance' or 'none'.
    outer_loop: image updates per outer iteration (0: `loops_for_ipc`).
    inner_loop: inner training epochs (0: `loops_for_ipc`).
    net_lr: SGD learning rate of the inner training (0.01).
    batch_real: real examples per class (256).
    batch_train: synthetic examples per inner step (256).
    dsa_strategy: DSA's 'color_crop_cutout_flip_scale_rotate' ('dsa'); use
      'dsa_noflip' for digits (`augment.default_strategy`).
  """
  dsa_strategy: str = "dsa"


# Named paper settings (arXiv:2006.05929 Sec. 3, the reference code's defaults):
# ConvNet w128 d3 instance norm, 1000 outer iterations, images SGD 0.1 momentum
# 0.5, the network SGD 0.01, 256 real images per class, loops by ipc.
NAMED_CONFIGS: dict[str, dict] = {
    f"ipc{ipc}": {"steps": 1000, "width": 128, "depth": 3, "outer_loop": outer,
                  "inner_loop": inner}
    for ipc, (outer, inner) in ((1, REFERENCE_LOOPS[1]), (10, REFERENCE_LOOPS[10]),
                                (50, REFERENCE_LOOPS[50]))
}


def named(name: str, cls: type = MatchingConfig, **overrides) -> MatchingConfig:
  """The paper config `NAMED_CONFIGS[name]` of `cls` (DC or DSA) with `overrides`."""
  if name not in NAMED_CONFIGS:
    raise ValueError(f"Unknown matching config {name!r}; valid: {', '.join(NAMED_CONFIGS)}")
  return base.replace_config(cls(), **{**NAMED_CONFIGS[name], **overrides})


# --------------------------------------------------------------------------- shared pieces


def build_net(config, input_shape, num_classes: int) -> nn.Module:
  """The matching network for inputs of `input_shape` (`(H, W, C)`).

  A ConvNet takes the 'dc' evaluation protocol's padding of 28x28 inputs (the
  one place that fact lives), with `config.width/depth/norm`.
  """
  if config.net == "mlp":
    return models.MLP(num_classes=num_classes, widths=(config.width,) * config.depth)
  padding = protocols.get_protocol("dc").model_kwargs(tuple(input_shape))["input_padding"]
  return models.ConvNet(num_classes=num_classes, width=config.width, depth=config.depth,
                        norm=config.norm, input_padding=padding)


def sample_class_batches(key: jax.Array, data: base.Data, batch: int):
  """A uniformly random batch of `batch` examples of every class (jit-able).

  For class `c` the examples are the top `batch` of `uniform + [label == c]`:
  a uniformly random subset of `min(batch, n_c)` members of class `c`; when the
  class has fewer than `batch` members the rest are other examples with weight 0.

  Returns:
    `(x, weights)`: `(c, b, ...)` inputs and `(c, b)` float32 weights (1 for a
    member of the row's class), `b = min(batch, n)`.
  """
  n, c = data.x.shape[0], data.num_classes
  classes = jnp.arange(c)[:, None]
  scores = jax.random.uniform(key, (c, n)) + (data.labels[None, :] == classes)
  idx = jax.lax.top_k(scores, int(min(batch, n)))[1]
  return data.x[idx], (data.labels[idx] == classes).astype(jnp.float32)


def weighted_cross_entropy(logits, label, weights) -> jax.Array:
  """Weighted mean of `-log softmax(logits)[:, label]`: `(b, c), (), (b,) -> ()`."""
  nll = -jax.nn.log_softmax(logits)[:, label]
  return jnp.sum(weights * nll) / jnp.maximum(jnp.sum(weights), 1.0)


def class_gradient(apply_fn: Callable, params, x, label, weights):
  """`grad_params` of the weighted cross-entropy of `apply_fn(params, x)` against `label`."""
  return jax.grad(lambda p: weighted_cross_entropy(apply_fn(p, x), label, weights))(params)


def layer_distance(g_real: jax.Array, g_syn: jax.Array) -> jax.Array:
  """DC's distance of one gradient tensor (arXiv:2006.05929 Eq. 10; module docstring).

  Args:
    g_real, g_syn: gradients of one parameter, the output channel on the last
      axis (flax layout: conv `(kh, kw, in, out)`, dense `(in, out)`).

  Returns:
    `sum_i 1 - cos(g_real[..., i], g_syn[..., i])` with 1e-6 added to the
    product of norms; 0 for 1-D tensors (biases, norm parameters).
  """
  if g_real.ndim <= 1:
    return jnp.zeros((), g_real.dtype)
  a = jnp.reshape(g_real, (-1, g_real.shape[-1]))
  b = jnp.reshape(g_syn, (-1, g_syn.shape[-1]))
  dots = jnp.sum(a * b, axis=0)
  norms = jnp.linalg.norm(a, axis=0) * jnp.linalg.norm(b, axis=0)
  return jnp.sum(1.0 - dots / (norms + MATCH_EPS))


def gradient_distance(g_real, g_syn) -> jax.Array:
  """`D(g_real, g_syn)`: `layer_distance` summed over the leaves of two gradient pytrees."""
  dists = jax.tree_util.tree_map(layer_distance, g_real, g_syn)
  return sum(jax.tree_util.tree_leaves(dists))


def matching_loss(apply_fn: Callable, params, x_real, w_real, x_syn, keys,
                  strategy: str = "none") -> jax.Array:
  """The matching loss of one repetition: `sum_c D(g_real_c, g_syn_c)`.

  Args:
    apply_fn: `apply_fn(params, x) -> logits`.
    params: the network's parameters.
    x_real: `(c, b, ...)` real examples per class; w_real: `(c, b)` their weights.
    x_syn: `(c, ipc, ...)` synthetic examples per class (differentiated).
    keys: `(c, 2)` keys of the per-class siamese augmentation draws.
    strategy: `nets.augment` strategy ('none' for DC).

  Returns:
    Scalar loss; the real gradients are held fixed (`stop_gradient`).
  """

  def per_class(args):
    xr, wr, xs, label, key = args
    if augment.parse_strategy(strategy):
      xr, xs = augment.siamese(key, xr, xs, strategy)
    g_real = jax.lax.stop_gradient(class_gradient(apply_fn, params, xr, label, wr))
    g_syn = class_gradient(apply_fn, params, xs, label, jnp.ones(xs.shape[:1], xs.dtype))
    return gradient_distance(g_real, g_syn)

  labels = jnp.arange(x_syn.shape[0])
  return jnp.sum(jax.lax.map(per_class, (x_real, w_real, x_syn, labels, keys)))


def support_labels(y_init, num_classes: int) -> tuple[int, np.ndarray]:
  """`(ipc, labels)` of a class-ordered support (`ipc` examples of class 0, then 1, ...).

  Raises:
    ValueError: if the support is not class-ordered with equal counts (gradient
      and distribution matching pair class `c` with rows `c * ipc ... `).
  """
  labels = np.argmax(np.asarray(y_init), axis=-1)
  n = len(labels)
  ipc = n // num_classes
  if ipc < 1 or n != ipc * num_classes or not np.array_equal(
      labels, np.repeat(np.arange(num_classes), ipc)):
    raise ValueError(f"matching methods need a class-ordered support with equal counts per "
                     f"class ({num_classes} classes, {n} examples)")
  return ipc, labels


@flax.struct.dataclass
class MatchingState:
  """State of a DC / DSA / DM run.

  Attributes:
    x_support: `(n_s, ...)` learned images, class-ordered.
    y_support: `(n_s, c)` fixed labels.
    opt_state: optax SGD-momentum state of the images.
    step: int32 scalar, outer iterations taken.
  """
  x_support: jax.Array
  y_support: jax.Array
  opt_state: Any
  step: jax.Array


def image_optimizer(config) -> optax.GradientTransformation:
  """SGD with momentum on the images (the reference's `torch.optim.SGD(..., momentum=0.5)`)."""
  return optax.sgd(config.lr, momentum=config.momentum or None)


def make_init(optimizer: optax.GradientTransformation):
  """`init(key, data, x_init, y_init) -> MatchingState` (checks the class order)."""

  def init(key, data: base.Data, x_init, y_init) -> MatchingState:
    del key
    support_labels(y_init, data.num_classes)
    x = jnp.asarray(x_init, jnp.float32)
    return MatchingState(x_support=x, y_support=jnp.asarray(y_init, jnp.float32),
                         opt_state=optimizer.init(x), step=jnp.zeros((), jnp.int32))

  return init


def _apply(model: nn.Module) -> Callable:
  return lambda params, x: model.apply({"params": params}, x)


# --------------------------------------------------------------------------- DC / DSA


def train_on_support(apply_fn: Callable, params, x_syn, labels, key, steps: int,
                     batch: int, lr: float, strategy: str = "none"):
  """`steps` SGD steps of the network on the synthetic set (cross-entropy, hard labels).

  Each step takes a random batch of `min(batch, n_s)` examples (all of them when
  they fit), augmented per example when `strategy` is not 'none'.
  """
  n = x_syn.shape[0]
  b = int(min(batch, n))

  def body(i, params):
    k_batch, k_aug = jax.random.split(jax.random.fold_in(key, i))
    idx = jnp.arange(n) if b == n else jax.random.permutation(k_batch, n)[:b]
    x, y = x_syn[idx], labels[idx]
    if augment.parse_strategy(strategy):
      x = augment.augment(k_aug, x, strategy)

    def loss(p):
      return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(apply_fn(p, x)), y[:, None], 1))

    grads = jax.grad(loss)(params)
    return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

  return jax.lax.fori_loop(0, steps, body, params)


def make(config: MatchingConfig) -> base.Condenser:
  """DC (or DSA, by `config.dsa_strategy`) as a `base.Condenser`; one update = one outer iteration.

  `sample_batch` is `base.whole_data`: the update draws its own per-class real
  batches at every repetition. Metrics: 'loss' (mean over repetitions of the
  matching loss before each image step).
  """
  optimizer = image_optimizer(config)
  strategy = config.dsa_strategy

  def update(state: MatchingState, data: base.Data, key):
    c = data.num_classes
    n_s = state.x_support.shape[0]
    ipc = n_s // c
    outer, inner = config.loops(ipc)
    inner_steps = inner * -(-n_s // config.batch_train)
    model = build_net(config, state.x_support.shape[1:], c)
    apply_fn = _apply(model)
    labels = jnp.repeat(jnp.arange(c), ipc)
    k_init, k_loop = jax.random.split(key)
    params = model.init(k_init, state.x_support[:1])["params"]

    def repetition(carry, xs):
      x_syn, opt_state, params = carry
      i, k = xs
      k_real, k_aug, k_inner = jax.random.split(k, 3)
      x_real, w_real = sample_class_batches(k_real, data, config.batch_real)
      aug_keys = jax.random.split(k_aug, c)

      def loss_fn(x):
        x_c = jnp.reshape(x, (c, ipc) + x.shape[1:])
        return matching_loss(apply_fn, params, x_real, w_real, x_c, aug_keys, strategy)

      loss, grads = jax.value_and_grad(loss_fn)(x_syn)
      updates, opt_state = optimizer.update(grads, opt_state, x_syn)
      x_syn = optax.apply_updates(x_syn, updates)
      params = jax.lax.cond(
          i < outer - 1,
          lambda p: train_on_support(apply_fn, p, x_syn, labels, k_inner, inner_steps,
                                     config.batch_train, config.net_lr, strategy),
          lambda p: p, params)
      return (x_syn, opt_state, params), loss

    (x_syn, opt_state, _), losses = jax.lax.scan(
        repetition, (state.x_support, state.opt_state, params),
        (jnp.arange(outer), jax.random.split(k_loop, outer)))
    new_state = state.replace(x_support=x_syn, opt_state=opt_state, step=state.step + 1)
    return new_state, {"loss": jnp.mean(losses)}

  return base.Condenser(init=make_init(optimizer), update=update, sample_batch=base.whole_data)
