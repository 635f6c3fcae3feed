"""Finite Flax (linen) networks: an MLP, a DC-style ConvNet and a CIFAR ResNet-18.

These are the finite networks of the training-based parts of kernelcond: they
are trained on pruned or distilled sets (`train.py`) and scored (`scores.py`).

Conventions shared by every model here:

* Inputs are images `(n, H, W, C)` (the MLP flattens them).
* `model.apply(variables, x, train=...)` returns logits `(n, num_classes)`;
  `train=True` uses batch statistics in BatchNorm (and then the caller must pass
  `mutable=['batch_stats']`), `train=False` uses the running averages.
* `model.apply(variables, x, train=False, return_features=True)` returns the
  penultimate features `(n, d)` instead: the input of the classifier, used by the
  herding and k-center selection baselines.
* The classifier is always `nn.Dense(num_classes, name='head')` applied to those
  features, so `variables['params']['head']` is the last layer (used by GraNd
  with `last_layer_only=True`).

The ConvNet is the network of Dataset Condensation (Zhao et al., arXiv:2006.05929)
and KIP's finite-network transfer (Nguyen et al., arXiv:2107.13034): `depth`
blocks of conv3x3 -> norm -> ReLU -> avgpool2x2. The ResNet-18 is the CIFAR
variant of He et al. (arXiv:1512.03385) used by Data Diet (arXiv:2107.07075): a
3x3 stem convolution without max-pooling, four stages of two basic blocks.
`SpecNet` is the finite network of a kernel `ArchSpec` (`kernelcond.kernels`),
in the same (NTK) parameterisation as its infinite-width kernels; it has no
feature output and no 'head' (its readout is scaled by `W_std / sqrt(fan_in)`).

Models are chosen by name from `MODELS` (a `Registry`) with `get_model`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kernelcond import kernels
from kernelcond.nets import conv
from kernelcond.registry import Registry

NORMS = ("batch", "instance", "none")


def _norm_layer(norm: str, train: bool) -> Callable[[Any], Any]:
  """Returns a normalisation layer (or the identity) for `norm` in NORMS."""
  if norm == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
  if norm == "instance":
    # One group per channel: statistics over (H, W) of each example and channel.
    return nn.GroupNorm(num_groups=None, group_size=1, epsilon=1e-5)
  if norm == "none":
    return lambda x: x
  raise ValueError(f"Unknown norm {norm!r}; valid: {', '.join(NORMS)}")


class MLP(nn.Module):
  """Fully connected ReLU network on flattened inputs.

  Attributes:
    num_classes: number of output logits.
    widths: hidden layer widths; the last one is the feature dimension.
  """

  num_classes: int
  widths: Sequence[int] = (512, 512)

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    """Maps `(n, ...)` inputs to `(n, num_classes)` logits (or `(n, widths[-1])` features)."""
    del train  # no normalisation or dropout
    h = jnp.reshape(x, (x.shape[0], -1))
    for i, width in enumerate(self.widths):
      h = nn.relu(nn.Dense(int(width), name=f"dense_{i}")(h))
    if return_features:
      return h
    return nn.Dense(self.num_classes, name="head")(h)


class ConvNet(nn.Module):
  """DC-style ConvNet: `depth` x (conv3x3 -> norm -> ReLU -> avgpool2x2), then a linear head.

  The default (width 32, depth 3, instance norm; 21.9k parameters for 28x28x1
  inputs and 10 classes) is sized for CPUs: one epoch of Fashion-MNIST (60k
  28x28 images, batch 128) took about 70 s on 2 CPU cores that were shared
  with other jobs (~150 ms per step; roughly half of that on idle cores).
  Dataset Condensation uses width 128. On 8x8 inputs (digits) use depth 2:
  instance norm over a 2x2 map in a third block discards most information.

  Attributes:
    num_classes: number of output logits.
    width: channels of every convolution.
    depth: number of blocks; each halves H and W (floor), so inputs need
      `H, W >= 2**depth` (8x8 digits work with depth 3).
    norm: 'batch', 'instance' or 'none'.
    input_padding: zero pixels added on each side of H and W before the first
      convolution. DC's ConvNet maps 28x28 inputs to 32x32 maps with padding 3
      in its first 3x3 convolution, which equals `input_padding=2`.
    conv_impl: how the convolutions are differentiated (`nets.conv.IMPLS`):
      'auto' takes the im2col tangent on CPU, where `lax` convolution
      derivatives inside `fori_loop` / `scan` bodies are 10-90x slower
      (`kernelcond.nets.conv`); the forward pass and the parameters are the
      same either way.
  """

  num_classes: int
  width: int = 32
  depth: int = 3
  norm: str = "instance"
  input_padding: int = 0
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    """Maps `(n, H, W, C)` images to `(n, num_classes)` logits (or flattened features)."""
    if x.ndim != 4:
      raise ValueError(f"ConvNet expects (n, H, W, C) images, got shape {x.shape}")
    p = int(self.input_padding)
    h = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    for i in range(self.depth):
      if min(h.shape[1], h.shape[2]) < 2:
        raise ValueError(f"ConvNet depth {self.depth} is too deep for {x.shape[1:3]} inputs: "
                         f"block {i} sees {h.shape[1:3]}")
      h = conv.Conv(self.width, (3, 3), impl=self.conv_impl, name=f"conv_{i}")(h)
      h = _norm_layer(self.norm, train)(h)
      h = nn.relu(h)
      h = nn.avg_pool(h, (2, 2), strides=(2, 2))
    h = jnp.reshape(h, (h.shape[0], -1))
    if return_features:
      return h
    return nn.Dense(self.num_classes, name="head")(h)


class _BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

  channels: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool):
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                     epsilon=1e-5, name=name)
    h = nn.Conv(self.channels, (3, 3), strides=(self.stride, self.stride), padding="SAME",
                use_bias=False, name="conv1")(x)
    h = nn.relu(norm("bn1")(h))
    h = nn.Conv(self.channels, (3, 3), padding="SAME", use_bias=False, name="conv2")(h)
    h = norm("bn2")(h)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.channels:
      shortcut = nn.Conv(self.channels, (1, 1), strides=(self.stride, self.stride),
                         use_bias=False, name="proj")(x)
      shortcut = norm("proj_bn")(shortcut)
    return nn.relu(h + shortcut)


class ResNet18(nn.Module):
  """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool) and BatchNorm.

  Attributes:
    num_classes: number of output logits.
    width: channels of the first stage (64 in the paper); stages use
      width, 2*width, 4*width, 8*width.
  """

  num_classes: int
  width: int = 64

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    """Maps `(n, H, W, C)` images to `(n, num_classes)` logits (or `(n, 8*width)` features)."""
    if x.ndim != 4:
      raise ValueError(f"ResNet18 expects (n, H, W, C) images, got shape {x.shape}")
    h = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False, name="stem")(x)
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     name="stem_bn")(h)
    h = nn.relu(h)
    for stage in range(4):
      for block in range(2):
        stride = 2 if stage > 0 and block == 0 else 1
        h = _BasicBlock(self.width * 2 ** stage, stride, name=f"stage{stage}_block{block}")(
            h, train)
    h = jnp.mean(h, axis=(1, 2))
    if return_features:
      return h
    return nn.Dense(self.num_classes, name="head")(h)


class SpecNet(nn.Module):
  """The finite network of a kernel `ArchSpec`, in its parameterisation.

  Wraps `kernels.init_and_apply(spec, width, out_dim=num_classes)` (standard
  normal weights scaled by `W_std / sqrt(fan_in)` in the forward pass for the
  'ntk' parameterisation), so that its infinite-width NNGP / NTK are those of
  `kernels.make_kernel_fn(spec)`. The parameters are stored as
  `{'net': {'layer_<i>': {'w', ['b']}}}` (no 'b' when `b_std == 0`).

  Attributes:
    num_classes: number of outputs.
    spec: an `ArchSpec` or a spec string ('conv3', 'fc3:W_std=1.5', ...).
    width: hidden width (channels for conv specs); default `spec.width`.
  """

  num_classes: int
  spec: Any = "conv3"
  width: Optional[int] = None

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    """Maps `(n, ...)` inputs to `(n, num_classes)` outputs."""
    del train  # no normalisation or dropout
    if return_features:
      raise ValueError("SpecNet has no feature output (its readout is not a plain 'head')")
    spec = kernels.get_spec(self.spec)
    init_fn, apply_fn = kernels.init_and_apply(spec, self.width, out_dim=self.num_classes)

    def init(key):
      layers = init_fn(key, x.shape[1:])
      return {f"layer_{i}": {"w": w} if b is None else {"w": w, "b": b}
              for i, (w, b) in enumerate(layers)}

    params = self.param("net", init)
    layers = [(params[f"layer_{i}"]["w"], params[f"layer_{i}"].get("b"))
              for i in range(len(params))]
    return apply_fn(layers, x)


MODELS: Registry[type] = Registry("model")
MODELS.register("mlp", MLP)
MODELS.register("convnet", ConvNet)
MODELS.register("resnet18", ResNet18)
MODELS.register("spec_net", SpecNet)


def get_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a model by name.

  Args:
    name: a name in `MODELS` ('mlp', 'convnet', 'resnet18', 'spec_net').
    num_classes: number of output logits.
    **kwargs: the model's attributes, e.g. `widths=(256,)` for 'mlp',
      `width=64, depth=3, norm='batch'` for 'convnet', `width=64` for
      'resnet18', `spec='conv3', width=1024` for 'spec_net'.

  Returns:
    An unbound linen Module (equal arguments give equal, equally hashed
    Modules, so jitted functions that take it as a static argument are reused).

  Raises:
    ValueError: for an unknown name (listing valid names), an unknown keyword,
      or an unknown norm.
  """
  cls = MODELS.get(name)
  fields = {f for f in cls.__dataclass_fields__ if f not in ("parent", "name", "num_classes")}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(f"Unknown argument(s) {unknown} for model {name!r}; valid: {sorted(fields)}")
  if "norm" in kwargs and kwargs["norm"] not in NORMS:
    raise ValueError(f"Unknown norm {kwargs['norm']!r}; valid: {', '.join(NORMS)}")
  if "widths" in kwargs:  # a single int is one hidden layer
    widths = kwargs["widths"]
    widths = (widths,) if isinstance(widths, (int, float)) else widths
    kwargs = {**kwargs, "widths": tuple(int(w) for w in widths)}
  return cls(num_classes=int(num_classes), **kwargs)
