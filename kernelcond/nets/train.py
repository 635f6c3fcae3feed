"""Training of the finite networks of `models.py`: state, step, evaluation, loop.

The pieces, from low to high level:

* `TrainConfig`: every setting that changes the result (frozen, hashable).
* `create_train_state(...)` -> `TrainState`: a `flax.struct` pytree of params,
  batch_stats, opt_state (`optim.make_optimizer`; lr, schedule length, weight
  decay and momentum are arrays in it), an RNG key `rng`, the loss's numeric
  hyper-parameters `hparams` and, for `f - f0` training, `init_params`. Only
  the Module, the optimiser name, the schedule kind, the loss name and the
  augmentation strategy are static, so configs that differ in lr, epochs,
  weight decay, momentum, label smoothing or mixup share one compilation.
* `train_step(state, batch) -> (state, metrics)` and
  `eval_step(state, batch) -> metrics`: pure, jitted. Randomness (mixup, data
  augmentation) uses `fold_in(state.rng, state.step)`, so a resumed run takes
  the same steps as an uninterrupted one.
* `train_and_evaluate(config, x_train, y_train, x_test, y_test)`: the whole loop
  with deterministic shuffling, resumable checkpoints, optional early stopping
  on a validation set and test evaluation.

Targets are integer labels `(n,)` or float targets `(n, c)`; the losses
('xent', 'soft_xent', 'mse') and target transforms are in `losses.py`. By
default (`TrainConfig.loss=None`) integer labels use 'xent' and float targets
'mse'; the loss used is returned in the metrics.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import flax
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kernelcond import io
from kernelcond.nets import losses
from kernelcond.nets import models
from kernelcond.nets import optim


def _freeze_kwargs(kwargs: Any) -> tuple:
  """A dict or (key, value) pairs -> sorted tuple of pairs with list values as tuples."""
  if isinstance(kwargs, Mapping):
    kwargs = kwargs.items()
  out = []
  for key, value in kwargs:
    if isinstance(value, list):
      value = tuple(value)
    out.append((str(key), value))
  return tuple(sorted(out))


def parse_model_kwargs(text: str) -> dict:
  """Parses 'width=32,norm=batch,widths=256:256' into model keyword arguments.

  Values are read as int, then float, then left as strings; a value with ':'
  becomes a tuple of ints (e.g. MLP `widths`). An empty string gives `{}`.

  Raises:
    ValueError: for an item without '='.
  """
  out = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    if "=" not in item:
      raise ValueError(f"model kwargs must be key=value items, got {item!r} in {text!r}")
    key, value = (s.strip() for s in item.split("=", 1))
    if ":" in value:
      out[key] = tuple(int(v) for v in value.split(":") if v)
      continue
    for cast in (int, float):
      try:
        out[key] = cast(value)
        break
      except ValueError:
        continue
    else:
      out[key] = value
  return out


def _jsonable(value: Any) -> Any:
  return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of one training run (everything that changes its result).

  Attributes:
    model: a name in `models.MODELS` ('mlp', 'convnet', 'resnet18', 'spec_net').
    model_kwargs: the model's attributes as a dict or (key, value) pairs, e.g.
      `{'width': 64, 'norm': 'batch'}`; stored as a sorted tuple of pairs.
    epochs: passes over the training set (used when `steps` is None).
    steps: total optimisation steps; overrides `epochs` when set (Data Diet's
      protocol trains pruned sets for as many steps as the full set).
    batch_size: examples per step. A set smaller than this (e.g. 10 distilled
      images) is used whole at every step.
    lr: peak learning rate.
    momentum: SGD (heavy-ball) momentum; 0 for plain SGD.
    weight_decay: L2 decay added to the gradient of every parameter
      (`optax.add_decayed_weights`), normalisation scales and biases included.
    schedule: a name in `optim.SCHEDULES`: 'cosine' (decay to 0 over the run),
      'step' (x0.1 at 50% and again at 75% of the steps), 'step_half' (x0.1 at
      50%, DC's protocol) or 'constant'.
    loss: a name in `losses.LOSSES` ('xent', 'soft_xent', 'mse'), or None to
      use 'xent' for integer labels and 'mse' for float targets.
    seed: seeds the initialisation and the step key `rng`
      (`split(PRNGKey(seed))`) and the shuffling (`np.random.default_rng([seed, epoch])`).
    optimizer: a name in `optim.OPTIMIZERS`: 'sgd' (heavy-ball `momentum`) or
      'adam' (`momentum` unused); both with `weight_decay` and the `schedule`.
    label_smoothing: weight `eps` of the uniform distribution mixed into the
      targets, `(1 - eps) t + eps / c` (0: off).
    mixup_alpha: mixup's Beta(alpha, alpha) parameter (arXiv:1710.09412; 0: off).
    augment: a differentiable-siamese-augmentation strategy of
      `kernelcond.nets.augment` (e.g. 'color_crop_cutout_flip_scale_rotate',
      arXiv:2102.08259) applied to every training batch, or 'none'.
    centre_output: train and evaluate `f(x) - f_0(x)`, the network minus its
      output at initialisation (centring, Lee et al., arXiv:2007.15801; RFAD,
      arXiv:2210.12067), so the function starts at zero.
    val_every: with a validation set, its accuracy is checked before training
      and every this many steps (and at the end); the parameters of the best
      check are returned (0: no validation).
    patience: stop when this many steps passed since the best check (0: never
      stop early).
  """

  model: str = "convnet"
  model_kwargs: Any = ()
  epochs: int = 10
  steps: Optional[int] = None
  batch_size: int = 128
  lr: float = 0.05
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = "cosine"
  loss: Optional[str] = None
  seed: int = 0
  optimizer: str = "sgd"
  label_smoothing: float = 0.0
  mixup_alpha: float = 0.0
  augment: str = "none"
  centre_output: bool = False
  val_every: int = 0
  patience: int = 0

  def __post_init__(self):
    object.__setattr__(self, "model_kwargs", _freeze_kwargs(self.model_kwargs))
    models.MODELS.get(self.model)
    optim.OPTIMIZERS.get(self.optimizer)
    optim.SCHEDULES.get(self.schedule)
    if self.loss is not None:
      losses.LOSSES.get(self.loss)
    if self.epochs < 0 or (self.steps is not None and self.steps < 0):
      raise ValueError(f"epochs and steps must be >= 0, got {self.epochs}, {self.steps}")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
    if not self.lr > 0:
      raise ValueError(f"lr must be > 0, got {self.lr}")
    if not 0 <= self.momentum < 1:
      raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
    if self.weight_decay < 0:
      raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
    if not 0 <= self.label_smoothing < 1:
      raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
    if self.mixup_alpha < 0:
      raise ValueError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
    if not isinstance(self.augment, str) or not self.augment:
      raise ValueError(f"augment must be a strategy string or 'none', got {self.augment!r}")
    if self.val_every < 0 or self.patience < 0:
      raise ValueError(f"val_every and patience must be >= 0, got {self.val_every}, "
                       f"{self.patience}")

  @property
  def model_kwargs_dict(self) -> dict:
    """The model's attributes as a dict."""
    return dict(self.model_kwargs)

  def to_dict(self) -> dict:
    """A JSON-friendly dict (model_kwargs as a dict, specs as dicts)."""
    d = dataclasses.asdict(self)
    d["model_kwargs"] = {k: _jsonable(v) for k, v in self.model_kwargs}
    return d


@struct.dataclass
class TrainState:
  """Training state: a pytree of arrays plus the static Module and names.

  Attributes:
    step: scalar int32, optimisation steps taken.
    params: the model's parameters.
    batch_stats: BatchNorm running statistics (`{}` for models without BatchNorm).
    opt_state: the `optim.make_optimizer` state (its `hyperparams` hold lr,
      total_steps, weight_decay, momentum).
    rng: PRNG key; step `s` uses `fold_in(rng, s)` (mixup, augmentation).
    hparams: `{'label_smoothing', 'mixup_alpha'}` float32 scalars.
    init_params: the parameters at initialisation when the output is centred
      (`f - f0`), else `{}`.
    model: the linen Module (static).
    optimizer: optimiser name (static).
    schedule: schedule kind (static).
    loss: loss name (static).
    augment: augmentation strategy or 'none' (static).
    mixup: whether mixup is on (static; its alpha is `hparams['mixup_alpha']`,
      so runs with different alphas > 0 share a compilation while runs without
      mixup do not compile its Beta sampler).
  """

  step: Any
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: Any
  hparams: Any
  init_params: Any
  model: Any = struct.field(pytree_node=False)
  optimizer: str = struct.field(pytree_node=False, default="sgd")
  schedule: str = struct.field(pytree_node=False, default="constant")
  loss: str = struct.field(pytree_node=False, default="xent")
  augment: str = struct.field(pytree_node=False, default="none")
  mixup: bool = struct.field(pytree_node=False, default=False)

  @property
  def apply_fn(self) -> Callable:
    """The Module's `apply` (uncentred)."""
    return self.model.apply

  @property
  def tx(self) -> optax.GradientTransformation:
    """The optimiser; its update reads every numeric hyper-parameter from `opt_state`."""
    return optim.make_optimizer(self.optimizer, self.schedule)

  def variables(self, params=None) -> dict:
    """The linen variables dict `{'params': ..., ['batch_stats': ...]}`."""
    variables = {"params": self.params if params is None else params}
    if self.batch_stats:
      variables["batch_stats"] = self.batch_stats
    return variables


def _check_augment(strategy: str) -> None:
  """Fails early (not inside jit) when `strategy` cannot be applied."""
  if strategy == "none":
    return
  from kernelcond.nets import augment as augment_lib  # imported only when used

  augment_lib.parse_strategy(strategy)  # ValueError naming the valid transforms


def create_train_state(config: TrainConfig, input_shape, num_classes: int,
                       total_steps: int, loss: Optional[str] = None) -> TrainState:
  """Initialises the model of `config` with the first key of `split(PRNGKey(config.seed))`.

  Args:
    config: the run's settings.
    input_shape: shape of one example, e.g. `(28, 28, 1)`.
    num_classes: number of logits.
    total_steps: length of the learning-rate schedule.
    loss: a name in `losses.LOSSES`; default `config.loss`, else 'xent'.

  Returns:
    A `TrainState` at step 0.
  """
  loss = loss or config.loss or "xent"
  losses.LOSSES.get(loss)
  _check_augment(config.augment)
  model = models.get_model(config.model, int(num_classes), **config.model_kwargs_dict)
  init_key, rng = jax.random.split(jax.random.PRNGKey(config.seed))
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = flax.core.unfreeze(model.init(init_key, dummy, train=False))
  params = variables["params"]
  tx = optim.make_optimizer(config.optimizer, config.schedule, lr=config.lr,
                            total_steps=int(total_steps), weight_decay=config.weight_decay,
                            momentum=config.momentum)
  hparams = {"label_smoothing": jnp.float32(config.label_smoothing),
             "mixup_alpha": jnp.float32(config.mixup_alpha)}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    rng=rng, hparams=hparams,
                    init_params=jax.tree_util.tree_map(jnp.copy, params)
                    if config.centre_output else {},
                    model=model, optimizer=config.optimizer, schedule=config.schedule,
                    loss=loss, augment=config.augment, mixup=config.mixup_alpha > 0)


def _outputs(state: TrainState, params, x, train: bool):
  """`(logits, batch_stats)`: the model (minus its initial output when centred)."""
  variables = state.variables(params)
  if train and state.batch_stats:
    logits, updates = state.model.apply(variables, x, train=True, mutable=["batch_stats"])
    batch_stats = updates["batch_stats"]
  else:
    logits, batch_stats = state.model.apply(variables, x, train=train), state.batch_stats
  if state.init_params:
    f0 = state.model.apply(state.variables(state.init_params), x, train=False)
    logits = logits - jax.lax.stop_gradient(f0)
  return logits, batch_stats


def _train_step(state: TrainState, batch: Mapping[str, Any]):
  x, y = batch["x"], batch["y"]
  key_augment, key_mixup = jax.random.split(jax.random.fold_in(state.rng, state.step))
  if state.augment != "none":
    from kernelcond.nets import augment as augment_lib  # imported only when used
    x = augment_lib.augment(key_augment, x, state.augment)
  t = losses.targets(y, state.model.num_classes)
  if state.loss == "soft_xent":
    t = losses.distribution(t)
  t = losses.smooth_labels(t, state.hparams["label_smoothing"])
  if state.mixup:
    x, t, _ = losses.mixup(key_mixup, x, t, state.hparams["mixup_alpha"])

  def loss_fn(params):
    logits, batch_stats = _outputs(state, params, x, train=True)
    return jnp.mean(losses.per_example_loss(logits, t, state.loss)), (logits, batch_stats)

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, {"loss": loss, "accuracy": jnp.mean(losses.correct(logits, y))}


train_step = jax.jit(_train_step)
train_step.__doc__ = """One optimisation step (jitted, pure).

The batch is augmented (`state.augment`), its targets made float (one-hot for
labels; a distribution for 'soft_xent'), smoothed and mixed up (both no-ops at
0; mixup only when `state.mixup`), then one gradient step is taken on the mean loss.

Args:
  state: a `TrainState`.
  batch: `{'x': (b, H, W, C) float32, 'y': (b,) int labels or (b, c) float targets}`.

Returns:
  `(new_state, {'loss': mean batch loss, 'accuracy': batch accuracy against the
  unmixed labels})`; BatchNorm uses the batch's statistics and its running
  averages are updated.
"""


def _eval_step(state: TrainState, batch: Mapping[str, Any]):
  logits, _ = _outputs(state, state.params, batch["x"], train=False)
  mask = batch.get("mask")
  mask = jnp.ones(logits.shape[0]) if mask is None else mask.astype(jnp.float32)
  return {"loss_sum": jnp.sum(mask * losses.per_example_loss(logits, batch["y"], state.loss)),
          "correct": jnp.sum(mask * losses.correct(logits, batch["y"])),
          "count": jnp.sum(mask)}


eval_step = jax.jit(_eval_step)
eval_step.__doc__ = """Summed inference-mode loss and correct count of one batch (jitted, pure).

Args:
  state: a `TrainState` (BatchNorm uses its running averages).
  batch: `{'x', 'y'}` as in `train_step`, optionally `'mask'`: `(b,)` 1 for real
    and 0 for padding examples.

Returns:
  `{'loss_sum', 'correct', 'count'}` scalars over the unmasked examples.
"""


def _padded_batches(n: int, batch_size: int):
  """Yields (start, stop) of consecutive batches covering range(n)."""
  for start in range(0, n, batch_size):
    yield start, min(start + batch_size, n)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
  """Pads axis 0 of `a` with copies of its first row up to `size` rows."""
  if a.shape[0] == size:
    return a
  return np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)], axis=0)


def map_batched(fn: Callable, x, batch_size: int = 1000) -> np.ndarray:
  """Applies a jitted `fn(x_batch) -> (b, ...)` to `x` in fixed-size padded batches.

  The last batch is padded to `batch_size` (so `fn` compiles once) and the
  padding rows are dropped from the output.

  Args:
    fn: a function of a `(b, ...)` batch returning an array with leading axis b.
    x: `(n, ...)` inputs.
    batch_size: rows per call (reduced to n when n is smaller).

  Returns:
    `(n, ...)` numpy array, the concatenated outputs.
  """
  x = np.asarray(x)
  n = x.shape[0]
  if n == 0:
    raise ValueError("map_batched got an empty input")
  bs = min(int(batch_size), n)
  out = [np.asarray(fn(_pad(x[a:b], bs)))[: b - a] for a, b in _padded_batches(n, bs)]
  return np.concatenate(out, axis=0)


@jax.jit
def _logits(state: TrainState, x):
  return _outputs(state, state.params, x, train=False)[0]


@jax.jit
def _features(state: TrainState, x):
  return state.model.apply(state.variables(), x, train=False, return_features=True)


def predict(state: TrainState, x, batch_size: int = 1000) -> np.ndarray:
  """Inference-mode logits `(n, num_classes)` of `x` `(n, H, W, C)`, batched (centred if so trained)."""
  return map_batched(lambda xb: _logits(state, xb), x, batch_size)


def features(state: TrainState, x, batch_size: int = 1000) -> np.ndarray:
  """Inference-mode penultimate features `(n, d)` of `x`, batched (see models.py)."""
  return map_batched(lambda xb: _features(state, xb), x, batch_size)


def evaluate(state: TrainState, x, y, batch_size: int = 1000) -> dict:
  """Inference-mode mean loss and accuracy over `(x, y)`, in padded batches.

  Args:
    state: a `TrainState`.
    x: `(n, H, W, C)` inputs.
    y: `(n,)` integer labels or `(n, c)` float targets.
    batch_size: examples per compiled call.

  Returns:
    `{'loss': float, 'accuracy': float}`.
  """
  x, y = np.asarray(x, np.float32), np.asarray(y)
  n = x.shape[0]
  bs = min(int(batch_size), n)
  totals = np.zeros(3)
  for a, b in _padded_batches(n, bs):
    mask = np.zeros(bs, np.float32)
    mask[: b - a] = 1.0
    m = eval_step(state, {"x": _pad(x[a:b], bs), "y": _pad(y[a:b], bs), "mask": mask})
    totals += [float(m["loss_sum"]), float(m["correct"]), float(m["count"])]
  return {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2]}


def schedule_steps(config: TrainConfig, n: int) -> tuple[int, int, int]:
  """How a run of `config` on `n` examples is cut into steps.

  Every epoch is a fresh permutation cut into `n // batch_size` full batches
  (the remainder is dropped that epoch and reshuffled into the next). A set
  smaller than `batch_size` is used whole at every step.

  Returns:
    `(total_steps, steps_per_epoch, batch_size_used)`.
  """
  if n < 1:
    raise ValueError("the training set is empty")
  batch_size = min(int(config.batch_size), n)
  steps_per_epoch = n // batch_size
  total = int(config.steps) if config.steps is not None else int(config.epochs) * steps_per_epoch
  return total, steps_per_epoch, batch_size


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of `epoch` (0-based): `np.random.default_rng([seed, epoch])`."""
  return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def resolve_loss(config: TrainConfig, soft_targets: bool) -> str:
  """The loss name: `config.loss`, else 'mse' for float targets and 'xent' for labels."""
  if config.loss is not None:
    return config.loss
  return "mse" if soft_targets else "xent"


def _check_data(x, y, name: str):
  from kernelcond import preprocess  # local: preprocess is a sibling module

  x = np.asarray(x, np.float32)
  y = np.asarray(y)
  if x.ndim < 2:
    raise ValueError(f"x_{name} must have shape (n, H, W, C), got {x.shape}")
  if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
    raise ValueError(f"y_{name} must have shape ({x.shape[0]},) or ({x.shape[0]}, c), "
                     f"got {y.shape}")
  if y.ndim == 1 and not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"y_{name} of shape (n,) must hold integer labels, got {y.dtype}")
  if y.ndim == 2:
    y = y.astype(np.float32)
  elif y.size and y.min() < 0:
    raise ValueError(f"y_{name} holds negative labels")
  preprocess.check_finite(x, f"x_{name}")
  preprocess.check_finite(y, f"y_{name}")
  return x, (y.astype(np.int32) if y.ndim == 1 else y)


def _num_classes(y_train, y_test, num_classes: Optional[int]) -> int:
  if num_classes is not None:
    num_classes = int(num_classes)
  elif y_train.ndim == 2:
    num_classes = y_train.shape[1]
  else:
    num_classes = int(y_train.max()) + 1
    if y_test is not None and y_test.ndim == 1:
      num_classes = max(num_classes, int(y_test.max()) + 1)
  if y_train.ndim == 2 and y_train.shape[1] != num_classes:
    raise ValueError(f"y_train has {y_train.shape[1]} target columns, num_classes={num_classes}")
  if y_train.ndim == 1 and y_train.max() >= num_classes:
    raise ValueError(f"y_train holds label {y_train.max()} >= num_classes={num_classes}")
  return num_classes


class _Validation:
  """Early-stopping bookkeeping: the best check's step, accuracy and variables.

  `tree()` / `from_tree()` round-trip it through checkpoints, so a resumed run
  keeps the best parameters seen before the restart.
  """

  def __init__(self, config: TrainConfig, x_val, y_val, total: int, batch_size: int):
    self.every, self.patience, self.total = config.val_every, config.patience, total
    self.x, self.y, self.batch_size = x_val, y_val, batch_size
    self.step, self.accuracy, self.variables = -1, -1.0, None

  def tree(self, state: TrainState) -> dict:
    variables = self.variables or (state.params, state.batch_stats)
    return {"step": np.int64(self.step), "accuracy": np.float64(self.accuracy),
            "params": variables[0], "batch_stats": variables[1]}

  def from_tree(self, tree: dict) -> None:
    self.step, self.accuracy = int(tree["step"]), float(tree["accuracy"])
    self.variables = (tree["params"], tree["batch_stats"]) if self.step >= 0 else None

  def check(self, done: int, state: TrainState) -> bool:
    """Validates after `done` steps when due; returns True when training should stop."""
    if not (done % self.every == 0 or done == self.total):
      return False
    accuracy = evaluate(state, self.x, self.y, self.batch_size)["accuracy"]
    if accuracy > self.accuracy:
      self.step, self.accuracy = done, accuracy
      self.variables = (state.params, state.batch_stats)
    return bool(self.patience) and done - self.step >= self.patience


def train_and_evaluate(config: TrainConfig, x_train, y_train, x_test=None, y_test=None, *,
                       num_classes: Optional[int] = None,
                       x_val=None, y_val=None,
                       checkpoint_dir: Optional[str] = None,
                       checkpoint_every: int = 1000,
                       record_fn: Optional[Callable[[int, TrainState], None]] = None,
                       log_every: int = 0,
                       eval_batch_size: int = 1000) -> tuple[TrainState, dict]:
  """Trains `config.model` from scratch on `(x_train, y_train)` and tests it.

  The same protocol for every small set: a pruned subset of real examples, or
  a distilled support set (`x_support`, `y_support` of KIP with learned labels).

  Args:
    config: the run's settings (`TrainConfig`).
    x_train: `(n, H, W, C)` float32 training inputs, already preprocessed the
      same way as `x_test`.
    y_train: `(n,)` integer labels, or `(n, c)` float targets (soft or learned
      labels); with float targets and `config.loss=None` the loss is MSE
      against them, and accuracy on the training set uses their argmax.
    x_test: `(m, H, W, C)` test inputs, or None to skip testing.
    y_test: `(m,)` integer labels (or `(m, c)` targets), or None.
    num_classes: number of logits; default `c` for float targets, else
      `1 + max` of the integer labels of train and test.
    x_val: `(v, H, W, C)` validation inputs (e.g. held-out training images) for
      early stopping when `config.val_every > 0`: the returned state holds the
      parameters (and BatchNorm statistics) of the best validation accuracy
      (the earliest on ties), and training stops `config.patience` steps after
      it (0: never).
    y_val: `(v,)` validation labels (or `(v, c)` targets).
    checkpoint_dir: if set, the state is saved there every `checkpoint_every`
      steps and at the end (`kernelcond.io.save_checkpoint`), and a run whose
      directory already holds checkpoints resumes from the latest one (a
      finished run is not retrained). The directory's `config.json` ties it to
      this config and training set; another one is refused (ValueError).
      `record_fn` is not replayed for epochs finished before the restart.
    checkpoint_every: steps between checkpoints.
    record_fn: called as `record_fn(epoch, state)` after each completed epoch
      (`epoch` counts from 1), e.g. to record per-example correctness for
      forgetting scores.
    log_every: log the running training loss every this many steps (0: never).
    eval_batch_size: examples per compiled evaluation call.

  Returns:
    `(state, metrics)` with the final (or best-validation) `TrainState` and a
    dict: 'test_accuracy', 'test_loss' (when a test set is given), 'train_loss'
    and 'train_accuracy' (returned parameters, inference mode, whole training
    set), 'steps' (planned), 'steps_run', 'steps_per_epoch', 'batch_size',
    'epochs' (steps / steps per epoch), 'n_train', 'num_classes', 'loss' (the
    loss name), 'wall_time_s', and with validation 'val_accuracy' and
    'best_step'.

  Raises:
    ValueError: on mismatched shapes, non-finite inputs or a checkpoint
      directory of another run.
    FloatingPointError: if the training loss becomes NaN or infinite.
  """
  start_time = time.time()
  x_train, y_train = _check_data(x_train, y_train, "train")
  has_test = x_test is not None and y_test is not None
  if has_test:
    x_test, y_test = _check_data(x_test, y_test, "test")
    if x_test.shape[1:] != x_train.shape[1:]:
      raise ValueError(f"x_test examples have shape {x_test.shape[1:]}, "
                       f"x_train {x_train.shape[1:]}")
  num_classes = _num_classes(y_train, y_test if has_test else None, num_classes)
  validation = None
  if config.val_every > 0 and x_val is not None and y_val is not None:
    x_val, y_val = _check_data(x_val, y_val, "val")
  elif config.val_every > 0 or x_val is not None:
    raise ValueError("early stopping needs both config.val_every > 0 and (x_val, y_val)")

  n = x_train.shape[0]
  total, steps_per_epoch, batch_size = schedule_steps(config, n)
  loss = resolve_loss(config, y_train.ndim == 2)
  losses.check_soft_targets(y_train, loss)
  state = create_train_state(config, x_train.shape[1:], num_classes, total, loss)
  if x_val is not None:
    validation = _Validation(config, x_val, y_val, total, eval_batch_size)
  start_step = 0
  if checkpoint_dir is not None:
    io.check_run_config(checkpoint_dir, {**config.to_dict(), "num_classes": num_classes,
                                         "train_fingerprint": io.fingerprint(x_train, y_train)})
    template = {"state": state, "best": validation.tree(state) if validation else {}}
    restored, start_step = io.restore_checkpoint(checkpoint_dir, template)
    state = restored["state"]
    if validation:
      validation.from_tree(restored["best"])
    if start_step:
      logging.info("Resuming from step %d of %d (%s)", start_step, total, checkpoint_dir)

  def save(done):
    io.save_checkpoint(checkpoint_dir, done,
                       {"state": state, "best": validation.tree(state) if validation else {}})

  stop = validation.check(start_step, state) if validation else False
  window, perm, perm_epoch, done = [], None, -1, start_step
  while not stop and done < total:
    epoch, i = divmod(done, steps_per_epoch)
    if epoch != perm_epoch:
      perm, perm_epoch = epoch_permutation(n, config.seed, epoch), epoch
    idx = perm[i * batch_size:(i + 1) * batch_size]
    state, metrics = train_step(state, {"x": x_train[idx], "y": y_train[idx]})
    window.append(metrics["loss"])
    done += 1
    end_of_epoch = done % steps_per_epoch == 0
    if end_of_epoch or done == total or (log_every and done % log_every == 0):
      running = float(np.mean(jax.device_get(window)))
      window = []
      if not np.isfinite(running):
        raise FloatingPointError(
            f"Non-finite training loss {running} by step {done} (lr={config.lr}, "
            f"loss={loss}); lower the learning rate or check the inputs.")
      if log_every and (done % log_every == 0 or done == total):
        logging.info("step %d/%d epoch %.2f loss %.4f", done, total,
                     done / steps_per_epoch, running)
    if validation:
      stop = validation.check(done, state)
    if checkpoint_dir is not None and (done % checkpoint_every == 0 or done == total or stop):
      save(done)
    if record_fn is not None and end_of_epoch:
      record_fn(done // steps_per_epoch, state)

  out = {}
  if validation:
    params, batch_stats = validation.variables
    state = state.replace(params=params, batch_stats=batch_stats)
    out.update(val_accuracy=validation.accuracy, best_step=validation.step)
  train_metrics = evaluate(state, x_train, y_train, eval_batch_size)
  out.update(train_loss=train_metrics["loss"], train_accuracy=train_metrics["accuracy"])
  if has_test:
    test_metrics = evaluate(state, x_test, y_test, eval_batch_size)
    out.update(test_loss=test_metrics["loss"], test_accuracy=test_metrics["accuracy"])
  out.update(steps=total, steps_run=done, steps_per_epoch=steps_per_epoch,
             batch_size=batch_size, epochs=total / steps_per_epoch, n_train=n,
             num_classes=num_classes, loss=loss, wall_time_s=time.time() - start_time)
  return state, out
