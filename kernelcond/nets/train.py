"""Training of the finite networks of `models.py` with optax SGD.

The pieces, from low to high level:

* `TrainConfig`: every setting that changes the result (frozen, hashable).
* `make_optimizer(config, total_steps)`: `optax.chain(add_decayed_weights, sgd)`
  with momentum and a 'cosine' | 'step' | 'constant' learning-rate schedule.
* `create_train_state(...)` -> `TrainState` (a `flax.struct` pytree of params,
  batch_stats, opt_state and step; the model's `apply` and the optimiser are
  static fields).
* `train_step(state, batch) -> (state, metrics)` and
  `eval_step(state, batch) -> metrics`: pure, jitted.
* `train_and_evaluate(config, x_train, y_train, x_test, y_test)`: the whole loop
  with deterministic shuffling, resumable checkpoints and test evaluation.

Targets are either integer labels `(n,)` or float targets `(n, c)` (soft or
learned labels, e.g. the `y_support` of KIP, arXiv:2011.00050). The loss is
'xent' (softmax cross-entropy; with float targets, against those targets as a
distribution) or 'mse' (`0.5 * ||logits - targets||^2` summed over classes,
averaged over examples; integer labels become one-hot targets). By default
(`TrainConfig.loss=None`) integer labels use 'xent' and float targets 'mse'.
"""

from __future__ import annotations

import dataclasses
import functools
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
from kernelcond.nets import models

LOSSES = ("xent", "mse")
SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adam")


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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of one training run (everything that changes its result).

  Attributes:
    model: a name of `models.MODELS` ('mlp', 'convnet', 'resnet18').
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
      (`optax.add_decayed_weights`), BatchNorm scales and biases included.
    schedule: 'cosine' (decay to 0 over the run), 'step' (x0.1 at 50% and again
      at 75% of the steps) or 'constant'.
    loss: 'xent', 'mse', or None to use 'xent' for integer labels and 'mse' for
      float targets.
    seed: seeds the initialisation (`jax.random.PRNGKey(seed)`) and the
      shuffling (`np.random.default_rng([seed, epoch])`).
    optimizer: 'sgd' (heavy-ball `momentum`) or 'adam' (`momentum` unused);
      both with `weight_decay` added to the gradient and the `schedule`.
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

  def __post_init__(self):
    object.__setattr__(self, "model_kwargs", _freeze_kwargs(self.model_kwargs))
    if self.model not in models.MODELS:
      raise ValueError(f"Unknown model {self.model!r}; valid: {', '.join(sorted(models.MODELS))}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"Unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"Unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
    if self.loss is not None and self.loss not in LOSSES:
      raise ValueError(f"Unknown loss {self.loss!r}; valid: {', '.join(LOSSES)} (or None)")
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

  @property
  def model_kwargs_dict(self) -> dict:
    """The model's attributes as a dict."""
    return dict(self.model_kwargs)

  def to_dict(self) -> dict:
    """A JSON-friendly dict (model_kwargs as a dict)."""
    d = dataclasses.asdict(self)
    d["model_kwargs"] = self.model_kwargs_dict
    return d


@struct.dataclass
class TrainState:
  """Training state: a pytree of arrays plus static `apply_fn`, `tx` and `loss`.

  Attributes:
    step: scalar int32, optimisation steps taken.
    params: the model's parameters.
    batch_stats: BatchNorm running statistics (`{}` for models without BatchNorm).
    opt_state: the optax state.
    apply_fn: the model's `apply` (static).
    tx: the optax `GradientTransformation` (static).
    loss: 'xent' or 'mse' (static).
  """

  step: Any
  params: Any
  batch_stats: Any
  opt_state: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)
  loss: str = struct.field(pytree_node=False, default="xent")

  def variables(self, params=None) -> dict:
    """The linen variables dict `{'params': ..., ['batch_stats': ...]}`."""
    variables = {"params": self.params if params is None else params}
    if self.batch_stats:
      variables["batch_stats"] = self.batch_stats
    return variables


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> Callable:
  """The schedule `step -> learning rate` of `config` over `total_steps` steps."""
  lr, total = float(config.lr), max(int(total_steps), 1)
  if config.schedule == "cosine":
    return optax.cosine_decay_schedule(lr, total)
  if config.schedule == "step":
    b1, b2 = int(0.5 * total), int(0.75 * total)
    return lambda count: lr * jnp.where(count >= b2, 0.01, jnp.where(count >= b1, 0.1, 1.0))
  return optax.constant_schedule(lr)


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
  """SGD with momentum, weight decay and the schedule of `config`.

  Configs with the same optimiser settings and `total_steps` get the same
  (cached) transformation object, so the jitted `train_step` compiled for one
  run is reused by the next (e.g. the cells of a pruning sweep).
  """
  return _cached_optimizer(float(config.lr), float(config.momentum),
                           float(config.weight_decay), config.schedule, int(total_steps),
                           config.optimizer)


@functools.lru_cache(maxsize=64)
def _cached_optimizer(lr: float, momentum: float, weight_decay: float, schedule: str,
                      total_steps: int, optimizer: str = "sgd") -> optax.GradientTransformation:
  config = TrainConfig(lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule)
  schedule_fn = learning_rate_schedule(config, total_steps)
  if optimizer == "adam":
    update = optax.adam(schedule_fn)
  else:
    update = optax.sgd(schedule_fn, momentum=momentum if momentum > 0 else None)
  return optax.chain(optax.add_decayed_weights(weight_decay), update)


@functools.lru_cache(maxsize=64)
def _cached_model(name: str, num_classes: int, model_kwargs: tuple):
  """One Module object per architecture, so jitted functions keyed on it are reused."""
  return models.get_model(name, num_classes, **dict(model_kwargs))


def resolve_loss(config: TrainConfig, soft_targets: bool) -> str:
  """The loss name: `config.loss`, else 'mse' for float targets and 'xent' for labels."""
  if config.loss is not None:
    return config.loss
  return "mse" if soft_targets else "xent"


def create_train_state(config: TrainConfig, input_shape, num_classes: int,
                       total_steps: int, loss: str = "xent") -> TrainState:
  """Initialises the model of `config` with `jax.random.PRNGKey(config.seed)`.

  Args:
    config: the run's settings.
    input_shape: shape of one example, e.g. `(28, 28, 1)`.
    num_classes: number of logits.
    total_steps: length of the learning-rate schedule.
    loss: 'xent' or 'mse'.

  Returns:
    A `TrainState` at step 0.
  """
  if loss not in LOSSES:
    raise ValueError(f"Unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
  model = _cached_model(config.model, int(num_classes), config.model_kwargs)
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = model.init(jax.random.PRNGKey(config.seed), dummy, train=False)
  variables = flax.core.unfreeze(variables)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  tx = make_optimizer(config, total_steps)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), apply_fn=model.apply, tx=tx, loss=loss)


def _targets(y, num_classes: int):
  """Integer labels -> one-hot float targets; float targets unchanged."""
  if jnp.issubdtype(y.dtype, jnp.integer):
    return jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
  return y.astype(jnp.float32)


def per_example_loss(logits, y, loss: str):
  """Loss of every example.

  Args:
    logits: `(n, c)`.
    y: `(n,)` integer labels or `(n, c)` float targets.
    loss: 'xent' or 'mse' (see the module docstring).

  Returns:
    `(n,)` losses.
  """
  targets = _targets(y, logits.shape[-1])
  if loss == "xent":
    return -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  if loss == "mse":
    return 0.5 * jnp.sum(jnp.square(logits - targets), axis=-1)
  raise ValueError(f"Unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


def _correct(logits, y):
  """1.0 where argmax(logits) equals the label (or the argmax of the target)."""
  labels = y if jnp.issubdtype(y.dtype, jnp.integer) else jnp.argmax(y, axis=-1)
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def _train_step(state: TrainState, batch: Mapping[str, Any]):
  x, y = batch["x"], batch["y"]

  def loss_fn(params):
    if state.batch_stats:
      logits, updates = state.apply_fn(state.variables(params), x, train=True,
                                       mutable=["batch_stats"])
      batch_stats = updates["batch_stats"]
    else:
      logits = state.apply_fn(state.variables(params), x, train=True)
      batch_stats = state.batch_stats
    return jnp.mean(per_example_loss(logits, y, state.loss)), (logits, batch_stats)

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, {"loss": loss, "accuracy": jnp.mean(_correct(logits, y))}


train_step = jax.jit(_train_step)
train_step.__doc__ = """One SGD step (jitted, pure).

Args:
  state: a `TrainState`.
  batch: `{'x': (b, H, W, C) float32, 'y': (b,) int labels or (b, c) float targets}`.

Returns:
  `(new_state, {'loss': mean batch loss, 'accuracy': batch accuracy})`; BatchNorm
  uses the batch's statistics and its running averages are updated.
"""


def _eval_step(state: TrainState, batch: Mapping[str, Any]):
  logits = state.apply_fn(state.variables(), batch["x"], train=False)
  mask = batch.get("mask")
  mask = jnp.ones(logits.shape[0]) if mask is None else mask.astype(jnp.float32)
  return {"loss_sum": jnp.sum(mask * per_example_loss(logits, batch["y"], state.loss)),
          "correct": jnp.sum(mask * _correct(logits, batch["y"])),
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
  return state.apply_fn(state.variables(), x, train=False)


@jax.jit
def _features(state: TrainState, x):
  return state.apply_fn(state.variables(), x, train=False, return_features=True)


def predict(state: TrainState, x, batch_size: int = 1000) -> np.ndarray:
  """Inference-mode logits `(n, num_classes)` of `x` `(n, H, W, C)`, batched."""
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


def rescale_targets(y) -> np.ndarray:
  """Float targets scaled by one positive factor to the RMS of centred one-hot labels.

  KIP's learned labels and Label Solve's labels have an arbitrary overall scale
  (KRR predictions, hence KRR accuracy, are linear in the labels): after long
  KIP runs their entries reach tens, and MSE training of a finite network on
  them diverges at learning rates that suit one-hot targets. Dividing by their
  root-mean-square and multiplying by `sqrt(c - 1) / c` (the RMS of centred
  one-hot rows of `c` classes) keeps every row's argmax and relative sizes.

  Args:
    y: `(n, c)` float targets with a non-zero entry.

  Returns:
    `(n, c)` float32 targets with the RMS of centred one-hot rows.
  """
  y = np.asarray(y, np.float32)
  if y.ndim != 2 or y.shape[1] < 2:
    raise ValueError(f"targets must be (n, classes >= 2), got shape {y.shape}")
  rms = float(np.sqrt(np.mean(np.square(y))))
  if not rms > 0 or not np.isfinite(rms):
    raise ValueError(f"targets have RMS {rms}; cannot rescale")
  c = y.shape[1]
  return y * np.float32(np.sqrt(c - 1) / c / rms)


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


def train_and_evaluate(config: TrainConfig, x_train, y_train, x_test=None, y_test=None, *,
                       num_classes: Optional[int] = None,
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
    `(state, metrics)` with the final `TrainState` and a dict of floats:
    'test_accuracy', 'test_loss' (when a test set is given), 'train_loss' and
    'train_accuracy' (final parameters, inference mode, whole training set),
    'steps', 'steps_per_epoch', 'batch_size', 'epochs' (steps / steps per epoch),
    'n_train', 'num_classes', 'loss' (the loss name) and 'wall_time_s'.

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
  soft = y_train.ndim == 2
  if num_classes is None:
    if soft:
      num_classes = y_train.shape[1]
    else:
      num_classes = int(y_train.max()) + 1
      if has_test and y_test.ndim == 1:
        num_classes = max(num_classes, int(y_test.max()) + 1)
  num_classes = int(num_classes)
  if soft and y_train.shape[1] != num_classes:
    raise ValueError(f"y_train has {y_train.shape[1]} target columns, num_classes={num_classes}")
  if not soft and y_train.max() >= num_classes:
    raise ValueError(f"y_train holds label {y_train.max()} >= num_classes={num_classes}")

  n = x_train.shape[0]
  total, steps_per_epoch, batch_size = schedule_steps(config, n)
  loss = resolve_loss(config, soft)
  state = create_train_state(config, x_train.shape[1:], num_classes, total, loss)
  start_step = 0
  if checkpoint_dir is not None:
    io.check_run_config(checkpoint_dir, {**config.to_dict(), "num_classes": num_classes,
                                         "train_fingerprint": io.fingerprint(x_train, y_train)})
    state, start_step = io.restore_checkpoint(checkpoint_dir, state)
    if start_step:
      logging.info("Resuming from step %d of %d (%s)", start_step, total, checkpoint_dir)

  window, perm, perm_epoch = [], None, -1
  for step in range(start_step, total):
    epoch, i = divmod(step, steps_per_epoch)
    if epoch != perm_epoch:
      perm, perm_epoch = epoch_permutation(n, config.seed, epoch), epoch
    idx = perm[i * batch_size:(i + 1) * batch_size]
    state, metrics = train_step(state, {"x": x_train[idx], "y": y_train[idx]})
    window.append(metrics["loss"])
    done = step + 1
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
    if checkpoint_dir is not None and (done % checkpoint_every == 0 or done == total):
      io.save_checkpoint(checkpoint_dir, done, state)
    if record_fn is not None and end_of_epoch:
      record_fn(done // steps_per_epoch, state)

  train_metrics = evaluate(state, x_train, y_train, eval_batch_size)
  out = {"train_loss": train_metrics["loss"], "train_accuracy": train_metrics["accuracy"]}
  if has_test:
    test_metrics = evaluate(state, x_test, y_test, eval_batch_size)
    out.update(test_loss=test_metrics["loss"], test_accuracy=test_metrics["accuracy"])
  out.update(steps=total, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
             epochs=total / steps_per_epoch, n_train=n, num_classes=num_classes, loss=loss,
             wall_time_s=time.time() - start_time)
  return state, out
