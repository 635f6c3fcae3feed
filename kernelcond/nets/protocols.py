"""Named evaluation protocols: how finite networks are trained on a small support set.

A number for a synthetic, selected or cleaned support set means little without
the protocol that produced it. Each protocol here is a frozen `Protocol` that
fixes everything: network, optimiser, schedule, length, losses for hard and
soft labels, target scaling, augmentation and early stopping. They live in
`PROTOCOLS`, a `Registry('evaluation protocol')`:

* 'dc': the `evaluate_synset` protocol of DC / DSA / DM (Zhao et al.,
  arXiv:2006.05929, arXiv:2102.08259; Zhao & Bilen, arXiv:2110.04181):
  ConvNet width 128, depth 3, instance norm, ReLU, 2x2 average pooling (28x28
  inputs padded to 32x32 as in DC's ConvNet); SGD momentum 0.9, lr 0.01,
  weight decay 5e-4, lr x0.1 from half of training, batch 256, 300 epochs,
  cross-entropy, no augmentation.
* 'dsa': 'dc' with DSA augmentation ('color_crop_cutout_flip_scale_rotate')
  on every batch and 1000 epochs. For digit datasets DSA leaves flips out:
  `get_protocol('dsa', augment=augment.default_strategy(dataset_name))`.
* 'kernel': the wide finite network of a kernel `ArchSpec`
  (`models.SpecNet`, NTK parameterisation, default 'conv3' at width 1024 as in
  KIP's transfer, arXiv:2107.13034), trained in the kernel regime as RFAD
  (Loo et al., arXiv:2210.12067): MSE against centred one-hot labels times a
  label scale (8; RFAD uses 2-16), output at initialisation subtracted
  (`f - f0`), full-batch SGD with momentum 0.9 and no weight decay, up to 20000
  steps, and with a validation set (held-out training images) early stopping:
  accuracy checked every 100 steps, patience 500 steps, best parameters kept.
  KIP trains its transfer networks with momentum at a learning rate relative to
  the NTK's maximal one; here lr = 0.1 x the largest stable learning rate of
  the network's own empirical NTK at initialisation on the (first) batch,
  `2 (1 + momentum) b / lambda_max` (`optim.ntk_max_learning_rate`), which
  does not depend on width or parameterisation. (On digits, 10 images per
  class: fc3 width 512 trains at 0.02-0.5 x the bound alike; conv2 width 128
  is best at 0.1 and collapses at 0.5.)
* 'mlp': for FC kernels, the FC `SpecNet` of the spec (default 'fc3', width
  1024), MSE against centred one-hot labels (label scale 1), `f - f0`, Adam
  (arXiv:1412.6980) lr 1e-3 constant, no weight decay, full batch (up to 512),
  up to 2000 steps, early stopping as 'kernel' when a validation set is given.
  (On digits, 10 images per class, 1000 steps: 0.92 test accuracy for lr
  1e-4 to 1e-3 with `f - f0`, 0.60-0.70 without it.)

Cost on 2 shared CPU cores (jax 0.4.23, load about 6): 'dc' trains 10 support
images in about 60 ms a step (18 s for 300 steps) and 100 in about 0.9 s a step
(4.5 min), 28x28x1 and 32x32x3 alike, and tests 10,000 images in about 30 s.
'kernel' at width 1024 (a conv3 forward pass is about 64x that of width 128)
is for accelerators; on a CPU, override `width`.

Hard labels (integer `(n,)`) train with the protocol's `hard_loss` and learned
soft labels (float `(n, c)`) with its `soft_loss`; the loss used is returned.
For 'mse' the targets are `label_scale * (onehot - 1/c)` for hard labels and
`label_scale * losses.rescale_targets(y)` for soft ones; for 'soft_xent' the
soft labels are used as distributions (`losses.distribution`).

    result = evaluate_protocol(get_protocol("dc", epochs=50), x_s, y_s, x_test, y_test,
                               num_classes=10, seeds=(0, 1, 2))
    result["mean"], result["std"], result["loss"]
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence, Union

import jax
import numpy as np

from kernelcond.nets import losses
from kernelcond.nets import models
from kernelcond.nets import optim
from kernelcond.nets import train
from kernelcond.registry import Registry
from kernelcond.registry import choice_validator

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
_CHECK_MODEL = choice_validator("protocol model", ("convnet", "spec_net"))
_CHECK_LR_RULE = choice_validator("lr rule", ("fixed", "ntk_max"))
_CHECK_HARD_LOSS = choice_validator("hard-label loss", ("xent", "mse"))
_CHECK_SOFT_LOSS = choice_validator("soft-label loss", ("mse", "soft_xent"))


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Everything that fixes how finite networks are trained on a support set.

  Attributes:
    name: the protocol's name (its key in `PROTOCOLS`).
    model: 'convnet' (`models.ConvNet`) or 'spec_net' (`models.SpecNet` of a
      kernel spec).
    width: channels of the ConvNet, or hidden width of the SpecNet.
    depth: ConvNet blocks (a SpecNet's depth is its spec's).
    norm: ConvNet normalisation ('instance', 'batch', 'none').
    mnist_padding: zero pixels added to each side of 28x28 inputs before the
      ConvNet's first convolution (DC maps 28x28 to 32x32: 2); other sizes are
      not padded.
    spec: default kernel spec name of a SpecNet (overridable per call).
    spec_family: if set, the spec's family must be this ('fc' for 'mlp').
    epochs: passes over the support set (one step per epoch when the set fits
      in a batch).
    batch_size: examples per step.
    optimizer: 'sgd' or 'adam' (`optim.OPTIMIZERS`).
    lr: the learning rate ('fixed'), or its multiple of the NTK bound ('ntk_max').
    lr_rule: 'fixed' or 'ntk_max' (see the module docstring).
    momentum: SGD heavy-ball momentum.
    weight_decay: L2 decay added to the gradient.
    schedule: a name in `optim.SCHEDULES`.
    hard_loss: loss for integer labels: 'xent' or 'mse'.
    soft_loss: loss for float (learned) labels: 'mse' or 'soft_xent'.
    label_scale: multiplies the 'mse' targets.
    centre_output: train `f - f0` (output at initialisation subtracted).
    augment: augmentation strategy of `kernelcond.nets.augment`, or 'none'.
    label_smoothing: label smoothing weight (0: off).
    mixup_alpha: mixup Beta parameter (0: off).
    val_every: steps between validation checks when a validation set is
      given (0: the protocol never early-stops).
    patience: steps after the best check before stopping (0: never stop).
  """

  name: str
  model: str = "convnet"
  width: int = 128
  depth: int = 3
  norm: str = "instance"
  mnist_padding: int = 0
  spec: Optional[str] = None
  spec_family: Optional[str] = None
  epochs: int = 300
  batch_size: int = 256
  optimizer: str = "sgd"
  lr: float = 0.01
  lr_rule: str = "fixed"
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = "step_half"
  hard_loss: str = "xent"
  soft_loss: str = "soft_xent"
  label_scale: float = 1.0
  centre_output: bool = False
  augment: str = "none"
  label_smoothing: float = 0.0
  mixup_alpha: float = 0.0
  val_every: int = 0
  patience: int = 0

  def __post_init__(self):
    _CHECK_MODEL(self.model)
    _CHECK_LR_RULE(self.lr_rule)
    _CHECK_HARD_LOSS(self.hard_loss)
    _CHECK_SOFT_LOSS(self.soft_loss)
    choice_validator("protocol norm", models.NORMS)(self.norm)
    if self.model == "spec_net" and self.spec is None:
      raise ValueError(f"protocol {self.name!r} trains a SpecNet and needs a default spec")
    if not self.label_scale > 0:
      raise ValueError(f"label_scale must be > 0, got {self.label_scale}")
    if self.mnist_padding < 0:
      raise ValueError(f"mnist_padding must be >= 0, got {self.mnist_padding}")
    self.train_config((8, 8, 1), loss=self.hard_loss)  # validates the shared fields

  def loss_for(self, y) -> str:
    """`hard_loss` for integer labels `(n,)`, `soft_loss` for float targets `(n, c)`."""
    return self.soft_loss if np.ndim(y) == 2 else self.hard_loss

  def model_kwargs(self, input_shape: Sequence[int], spec=None) -> dict:
    """The model's attributes for examples of `input_shape` (and a resolved spec)."""
    if self.model == "spec_net":
      return {"spec": spec if spec is not None else self.spec, "width": self.width}
    padding = self.mnist_padding if tuple(input_shape[:2]) == (28, 28) else 0
    return {"width": self.width, "depth": self.depth, "norm": self.norm,
            "input_padding": padding}

  def train_config(self, input_shape: Sequence[int], *, loss: str, spec=None, seed: int = 0,
                   validate: bool = False) -> train.TrainConfig:
    """The `TrainConfig` of one network ('ntk_max' protocols then replace its lr).

    Args:
      input_shape: shape of one example.
      loss: the loss name (`loss_for(y)`).
      spec: the resolved kernel spec of a SpecNet.
      seed: the network's seed (init, data order, augmentation).
      validate: whether a validation set is given (early stopping).
    """
    return train.TrainConfig(
        model=self.model, model_kwargs=self.model_kwargs(input_shape, spec),
        epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
        momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule,
        loss=loss, seed=int(seed), optimizer=self.optimizer,
        label_smoothing=self.label_smoothing, mixup_alpha=self.mixup_alpha,
        augment=self.augment, centre_output=self.centre_output,
        val_every=self.val_every if validate else 0,
        patience=self.patience if validate else 0)

  def to_dict(self) -> dict:
    """The protocol's fields as a JSON-friendly dict."""
    return dataclasses.asdict(self)


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")

_DC = Protocol(name="dc", model="convnet", width=128, depth=3, norm="instance",
               mnist_padding=2, epochs=300, batch_size=256, optimizer="sgd", lr=0.01,
               momentum=0.9, weight_decay=5e-4, schedule="step_half", hard_loss="xent",
               soft_loss="soft_xent")
PROTOCOLS.register("dc", _DC)
PROTOCOLS.register("dsa", dataclasses.replace(_DC, name="dsa", epochs=1000,
                                              augment=DSA_STRATEGY))
PROTOCOLS.register("kernel", Protocol(
    name="kernel", model="spec_net", spec="conv3", width=1024, epochs=20000, batch_size=512,
    optimizer="sgd", lr=0.1, lr_rule="ntk_max", momentum=0.9, weight_decay=0.0,
    schedule="constant", hard_loss="mse", soft_loss="mse", label_scale=8.0,
    centre_output=True, val_every=100, patience=500))
PROTOCOLS.register("mlp", Protocol(
    name="mlp", model="spec_net", spec="fc3", spec_family="fc", width=1024, epochs=2000,
    batch_size=512, optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=0.0,
    schedule="constant", hard_loss="mse", soft_loss="mse", label_scale=1.0,
    centre_output=True, val_every=100, patience=500))


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Protocol)}


def parse_overrides(text: str) -> tuple[str, dict]:
  """`'name'` or `'name:field=value,...'` -> `(name, {field: value})`, parsed without eval.

  Values are read by the field's type (`kernels.spec.parse_literal`): e.g.
  `'kernel:width=128,epochs=5000'` is the `kernel` protocol with a 128-wide
  network and 5000 epochs (a CPU-sized variant of a protocol, named as written).
  """
  from kernelcond.kernels import spec as kspec  # local: kernels pull in optional backends

  name, _, rest = str(text).partition(":")
  out = {}
  for item in filter(None, (part.strip() for part in rest.split(","))):
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or key not in _FIELD_TYPES or key == "name":
      raise ValueError(f"Bad protocol override {item!r} in {text!r}; fields: "
                       f"{', '.join(f for f in _FIELD_TYPES if f != 'name')}")
    if key in out:
      raise ValueError(f"Field {key} is given twice in protocol {text!r}")
    kind = _FIELD_TYPES[key].replace("Optional[", "").rstrip("]")
    try:
      out[key] = kspec.parse_literal(kind, value)
    except ValueError as e:
      raise ValueError(f"Bad value for {key} in protocol {text!r}: {e}") from None
  return name.strip(), out


def get_protocol(name: str, **overrides) -> Protocol:
  """The protocol `name` with some fields replaced, e.g. `get_protocol('dc', epochs=50)`.

  `name` may carry overrides itself, `'kernel:width=128'` (`parse_overrides`);
  keyword overrides win over the string's.

  Raises:
    ValueError: for an unknown protocol (listing valid names), an unknown field
      (naming it and the valid ones) or an invalid value.
  """
  name, parsed = parse_overrides(name)
  overrides = {**parsed, **overrides}
  base = PROTOCOLS.get(name)
  fields = [f.name for f in dataclasses.fields(Protocol)]
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise ValueError(f"Unknown field(s) {unknown} for protocol {name!r}; valid: "
                     f"{', '.join(f for f in fields if f != 'name')}")
  if "name" in overrides:
    raise ValueError("a protocol's name cannot be overridden")
  return dataclasses.replace(base, **overrides)


def protocol_targets(protocol: Protocol, y, num_classes: int) -> np.ndarray:
  """The training targets of `y` under `protocol` (see the module docstring).

  Args:
    protocol: a `Protocol`.
    y: `(n,)` integer labels or `(n, c)` float targets.
    num_classes: `c`.

  Returns:
    `(n,)` int32 labels for 'xent', else `(n, c)` float32 targets.
  """
  y = np.asarray(y)
  loss = protocol.loss_for(y)
  if y.ndim == 1:
    labels = y.astype(np.int32)
    if loss == "xent":
      return labels
    return np.float32(protocol.label_scale) * losses.centred_one_hot(labels, num_classes)
  if loss == "mse":
    return np.float32(protocol.label_scale) * losses.rescale_targets(y)
  return y.astype(np.float32)


def _resolve_spec(protocol: Protocol, spec):
  """The `ArchSpec` a SpecNet protocol trains (None for ConvNet protocols, which ignore `spec`)."""
  if protocol.model != "spec_net":
    return None
  from kernelcond import kernels

  resolved = kernels.get_spec(spec if spec is not None else protocol.spec)
  if protocol.spec_family is not None and resolved.family != protocol.spec_family:
    raise ValueError(f"protocol {protocol.name!r} needs a {protocol.spec_family!r} kernel spec, "
                     f"got one of family {resolved.family!r}")
  return resolved


def _ntk_learning_rate(protocol: Protocol, config: train.TrainConfig, x, num_classes: int,
                       loss: str) -> float:
  """`protocol.lr` x the NTK bound of the initial network on its first batch."""
  state = train.create_train_state(config, x.shape[1:], num_classes, 1, loss)
  b = min(config.batch_size, x.shape[0])
  batch = x[train.epoch_permutation(x.shape[0], config.seed, 0)[:b]]
  fn = lambda params, xb: state.model.apply(state.variables(params), xb, train=False)
  bound = optim.ntk_max_learning_rate(fn, state.params, batch, config.momentum,
                                      key=jax.random.PRNGKey(config.seed))
  return protocol.lr * bound


def evaluate_protocol(protocol: Union[Protocol, str], x_support, y_support, x_test, y_test, *,
                      num_classes: int, seeds: Sequence[int] = (0, 1), x_val=None, y_val=None,
                      spec=None) -> dict:
  """Trains one network per seed on the support set under `protocol` and tests each.

  Each network's initialisation, data order and augmentation derive from its
  seed (`TrainConfig.seed`).

  Args:
    protocol: a `Protocol` or a name in `PROTOCOLS`.
    x_support: `(n, H, W, C)` preprocessed support inputs.
    y_support: `(n,)` integer labels (hard: `hard_loss`) or `(n, c)` float
      learned labels (soft: `soft_loss`).
    x_test: `(m, H, W, C)` test inputs, preprocessed as `x_support`.
    y_test: `(m,)` integer test labels.
    num_classes: `c`.
    seeds: one network per seed.
    x_val: `(v, H, W, C)` held-out training inputs for early stopping (used by
      protocols with `val_every > 0`; others ignore it), or None.
    y_val: `(v,)` integer labels of `x_val`.
    spec: kernel spec (`ArchSpec` or string) of SpecNet protocols (default
      `protocol.spec`; 'mlp' needs an FC spec); ConvNet protocols ignore it.

  Returns:
    `{'protocol': name, 'config': dict (the protocol, with the resolved spec),
    'loss': loss name used, 'accuracies': test accuracy per network,
    'mean', 'std' (over networks), 'seconds', 'seeds', 'lrs' (learning rate per
    network), 'steps_run' (per network), 'early_stopping': bool,
    'val_accuracies' (per network, with early stopping)}`.

  Raises:
    ValueError: for bad shapes, an unknown protocol, a spec a protocol cannot use.
  """
  start = time.time()
  if isinstance(protocol, str):
    protocol = get_protocol(protocol)
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("seeds is empty: evaluate at least one network")
  x_support = np.asarray(x_support, np.float32)
  y_support = np.asarray(y_support)
  if (x_val is None) != (y_val is None):
    raise ValueError("give both x_val and y_val, or neither")
  resolved = _resolve_spec(protocol, spec)
  loss = protocol.loss_for(y_support)
  targets = protocol_targets(protocol, y_support, num_classes)
  validate = x_val is not None and protocol.val_every > 0
  accuracies, lrs, steps_run, val_accuracies = [], [], [], []
  for seed in seeds:
    config = protocol.train_config(x_support.shape[1:], loss=loss, spec=resolved, seed=seed,
                                   validate=validate)
    if protocol.lr_rule == "ntk_max":
      config = dataclasses.replace(
          config, lr=_ntk_learning_rate(protocol, config, x_support, num_classes, loss))
    _, metrics = train.train_and_evaluate(
        config, x_support, targets, x_test, y_test, num_classes=num_classes,
        x_val=x_val if validate else None, y_val=y_val if validate else None)
    accuracies.append(float(metrics["test_accuracy"]))
    lrs.append(float(config.lr))
    steps_run.append(int(metrics["steps_run"]))
    if validate:
      val_accuracies.append(float(metrics["val_accuracy"]))
  config_dict = protocol.to_dict()
  if resolved is not None:
    config_dict["spec"] = resolved.to_dict()
  out = {"protocol": protocol.name, "config": config_dict, "loss": loss,
         "accuracies": accuracies, "mean": float(np.mean(accuracies)),
         "std": float(np.std(accuracies)), "seconds": time.time() - start, "seeds": seeds,
         "lrs": lrs, "steps_run": steps_run, "early_stopping": validate}
  if validate:
    out["val_accuracies"] = val_accuracies
  return out
