"""Per-example difficulty scores for data pruning: EL2N, GraNd and forgetting.

* EL2N (Paul, Ganguli, Dziugaite, arXiv:2107.07075, eq. 2): the L2 norm of the
  error vector `softmax(f(x)) - onehot(y)`.
* GraNd (same paper, eq. 1): the L2 norm of the gradient of the example's loss
  with respect to all parameters (or only the last layer), computed for many
  examples at once with `jax.vmap(jax.grad(...))` over memory-bounded chunks.
* Forgetting (Toneva et al., arXiv:1812.05159): how often an example goes from
  correctly to incorrectly classified between consecutive epochs.

Every score is computed with the network in inference mode (BatchNorm uses its
running averages, `train=False`), so an example's score does not depend on the
other examples of its batch. Higher means harder / more important; pruning
keeps the highest (`select.keep_by_score`).

`compute_scores` averages a score over `num_inits` independent initialisations,
each trained `epochs` epochs on the full training set (`epochs=0`: scored at
initialisation, as GraNd at init in Data Diet), and returns scores in the
original example order. `save_scores` / `load_scores` store them with the
training set's fingerprint; a scores file is refused for another dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from kernelcond import io
from kernelcond.registry import Registry
from kernelcond.nets import losses
from kernelcond.nets import train

def _end_state_score(score_fn):
  """A score computed from the network at the end of training: `fn(state, x, y, **kw)`."""

  def compute(config, x, y, epochs, num_classes, batch_size, last_layer_only):
    state = _train_for_scores(config, x, y, epochs, num_classes)
    return score_fn(state, x, y, batch_size, last_layer_only)

  return compute


def _forgetting(config, x, y, epochs, num_classes, batch_size, last_layer_only):
  del last_layer_only
  rows = []
  record = lambda epoch, state: rows.append(correctness(state, x, y, batch_size))
  _train_for_scores(config, x, y, epochs, num_classes, record)
  return forgetting_from_correctness(np.stack(rows))


# name -> (minimum training epochs, `compute(config, x, y, epochs, num_classes,
# batch_size, last_layer_only) -> (n,)` scores of one initialisation).
SCORES: Registry = Registry("pruning score")
SCORES.register("el2n", (0, _end_state_score(
    lambda state, x, y, batch_size, _: el2n(state, x, y, batch_size))))
SCORES.register("grand", (0, _end_state_score(
    lambda state, x, y, batch_size, last: grand(state, x, y, last_layer_only=last))))
SCORES.register("forgetting", (1, _forgetting))
METHODS = SCORES.names()


def _check_method(method: str) -> None:
  SCORES.get(method)


def _check_xy(x, y):
  x, y = np.asarray(x, np.float32), np.asarray(y)
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.shape[0] != x.shape[0]:
    raise ValueError(f"scores need integer labels of shape ({x.shape[0]},), got "
                     f"{y.shape} {y.dtype}")
  return x, y.astype(np.int32)


def el2n_from_logits(logits, labels) -> np.ndarray:
  """EL2N score `||softmax(logits) - onehot(labels)||_2` of every example.

  Args:
    logits: `(n, c)`.
    labels: `(n,)` integer labels.

  Returns:
    `(n,)` float32 scores in `[0, sqrt(2)]`.
  """
  logits = jnp.asarray(logits, jnp.float32)
  error = jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(labels, logits.shape[-1])
  return np.asarray(jnp.linalg.norm(error, axis=-1))


def el2n(state: train.TrainState, x, y, batch_size: int = 1000) -> np.ndarray:
  """EL2N scores of `(x, y)` under `state` (inference mode), batched.

  Args:
    state: a `train.TrainState`.
    x: `(n, H, W, C)` inputs.
    y: `(n,)` integer labels.
    batch_size: examples per compiled forward pass.

  Returns:
    `(n,)` float32 scores.
  """
  x, y = _check_xy(x, y)
  return el2n_from_logits(train.predict(state, x, batch_size), y)


def _tree_sq_norm(tree) -> jax.Array:
  return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


def _num_params(tree) -> int:
  return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


@jax.jit
def _grand_all(state: train.TrainState, x, y):
  """`(b,)` norms of per-example gradients w.r.t. all parameters (inference mode)."""
  def example_loss(params, xi, label):
    logits = state.apply_fn(state.variables(params), xi[None], train=False)
    return losses.per_example_loss(logits, label[None], state.loss)[0]
  grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(state.params, x, y)
  return jnp.sqrt(jax.vmap(_tree_sq_norm)(grads))


@functools.partial(jax.jit, static_argnames="loss")
def _grand_head(head, features, y, loss: str):
  """`(b,)` norms of per-example gradients w.r.t. the classifier `head` only."""
  def example_loss(head_params, f, label):
    logits = f[None] @ head_params["kernel"] + head_params["bias"]
    return losses.per_example_loss(logits, label[None], loss)[0]
  grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(head, features, y)
  return jnp.sqrt(jax.vmap(_tree_sq_norm)(grads))


def grand(state: train.TrainState, x, y, *, batch_size: Optional[int] = None,
          last_layer_only: bool = False, max_bytes: int = 2 ** 30) -> np.ndarray:
  """GraNd scores: the L2 norm of each example's loss gradient.

  `||d loss(f_w(x_i), y_i) / d w||_2` for every example, with the loss of
  `state` ('xent' or 'mse') and the network in inference mode (BatchNorm uses
  its running averages), computed as `jax.vmap(jax.grad(loss))` over chunks of
  examples. Data Diet, arXiv:2107.07075, eq. 1.

  Args:
    state: a `train.TrainState`.
    x: `(n, H, W, C)` inputs.
    y: `(n,)` integer labels.
    batch_size: examples per vmapped chunk; default: as many as fit
      `max_bytes` of per-example gradients (at most 256).
    last_layer_only: differentiate only with respect to the classifier
      (`params['head']`), with the penultimate features held fixed.
    max_bytes: memory budget used for the default `batch_size`.

  Returns:
    `(n,)` float32 scores.
  """
  x, y = _check_xy(x, y)
  if last_layer_only:
    if "head" not in state.params:
      raise ValueError("last_layer_only needs a model whose classifier is params['head']")
    head = state.params["head"]
    fn = lambda f, labels: _grand_head(head, f, labels, state.loss)
    inputs, params_count = train.features(state, x), _num_params(head)
  else:
    fn = lambda xb, labels: _grand_all(state, xb, labels)
    inputs, params_count = x, _num_params(state.params)

  if batch_size is None:
    batch_size = int(max(1, min(256, max_bytes // (8 * max(params_count, 1)))))
  n = inputs.shape[0]
  bs = min(int(batch_size), n)
  out = []
  for start in range(0, n, bs):
    stop = min(start + bs, n)
    xb, yb = inputs[start:stop], y[start:stop]
    if stop - start < bs:  # pad to a fixed shape: one compilation
      xb = np.concatenate([xb, np.repeat(xb[:1], bs - (stop - start), axis=0)])
      yb = np.concatenate([yb, np.repeat(yb[:1], bs - (stop - start), axis=0)])
    out.append(np.asarray(fn(xb, yb))[: stop - start])
  return np.concatenate(out).astype(np.float32)


def correctness(state: train.TrainState, x, y, batch_size: int = 1000) -> np.ndarray:
  """`(n,)` bool: whether `state` (inference mode) classifies each example correctly."""
  x, y = _check_xy(x, y)
  return np.argmax(train.predict(state, x, batch_size), axis=-1) == y


def forgetting_from_correctness(correct) -> np.ndarray:
  """Forgetting-event counts from a recorded correctness matrix.

  A forgetting event is a transition from correct at epoch t to incorrect at
  epoch t+1 (Toneva et al., arXiv:1812.05159; we record correctness of the
  whole training set after every epoch rather than at each mini-batch visit).
  An example never classified correctly in any recorded epoch counts as the
  most forgotten: its score is `T + 1` for `T` recorded epochs, larger than any
  possible count (at most `T // 2`), so it ranks above every learned example.

  Args:
    correct: `(T, n)` booleans, row t = correctness after epoch t+1.

  Returns:
    `(n,)` float32 scores.
  """
  correct = np.asarray(correct, bool)
  if correct.ndim != 2 or correct.shape[0] < 1:
    raise ValueError(f"correctness must be a (T >= 1, n) matrix, got shape {correct.shape}")
  events = np.sum(correct[:-1] & ~correct[1:], axis=0).astype(np.float32)
  never_learned = ~correct.any(axis=0)
  return np.where(never_learned, np.float32(correct.shape[0] + 1), events)


def init_seeds(seed: int, num_inits: int) -> list[int]:
  """Seeds of the `num_inits` independent initialisations: `seed, seed+1, ...`."""
  return [int(seed) + k for k in range(int(num_inits))]


def _train_for_scores(config: train.TrainConfig, x, y, epochs: int, num_classes: int,
                      record_fn: Optional[Callable] = None) -> train.TrainState:
  """`config` trained `epochs` epochs on (x, y); `epochs=0` is the initial state."""
  config = dataclasses.replace(config, epochs=int(epochs), steps=None)
  if epochs == 0:
    total, _, _ = train.schedule_steps(config, x.shape[0])
    return train.create_train_state(config, x.shape[1:], num_classes, total,
                                    train.resolve_loss(config, False))
  state, _ = train.train_and_evaluate(config, x, y, num_classes=num_classes,
                                      record_fn=record_fn)
  return state


def compute_scores(method: str, x_train, y_train, config: train.TrainConfig,
                   num_inits: int = 1, epochs: int = 0, seed: int = 0, *,
                   num_classes: Optional[int] = None, last_layer_only: bool = False,
                   batch_size: int = 1000) -> np.ndarray:
  """A score averaged over independent initialisations.

  For each seed in `init_seeds(seed, num_inits)`, the network of `config` (with
  that seed) is trained from scratch for `epochs` epochs on the full
  `(x_train, y_train)` and every example is scored; the `num_inits` score
  vectors are averaged. With `epochs=0` the freshly initialised parameters are
  scored (no step is taken). For 'forgetting', the correctness of every example
  is recorded after each of the `epochs` epochs.

  Args:
    method: 'el2n', 'grand' or 'forgetting'.
    x_train: `(n, H, W, C)` preprocessed training inputs.
    y_train: `(n,)` integer labels.
    config: training settings; its `epochs`, `steps` and `seed` are replaced.
    num_inits: independent initialisations K to average over, `>= 1`.
    epochs: training epochs T before scoring (`>= 1` for forgetting).
    seed: seed of the first initialisation.
    num_classes: default `1 + max(y_train)`.
    last_layer_only: GraNd only: gradient with respect to the classifier only.
    batch_size: examples per compiled forward pass (GraNd chooses its own).

  Returns:
    `(n,)` float32 scores in the order of `x_train`.
  """
  min_epochs, compute = SCORES.get(method)
  x_train, y_train = _check_xy(x_train, y_train)
  if num_inits < 1:
    raise ValueError(f"num_inits must be >= 1, got {num_inits}")
  if epochs < min_epochs:
    raise ValueError(f"{method} needs epochs >= {min_epochs}, got {epochs}")
  num_classes = int(num_classes if num_classes is not None else y_train.max() + 1)
  total = np.zeros(x_train.shape[0], np.float64)
  for init_seed in init_seeds(seed, num_inits):
    cfg = dataclasses.replace(config, seed=init_seed)
    total += compute(cfg, x_train, y_train, epochs, num_classes, batch_size, last_layer_only)
  return (total / num_inits).astype(np.float32)


def compute_features(x_train, y_train, config: train.TrainConfig, epochs: int = 0,
                     seed: int = 0, *, num_classes: Optional[int] = None,
                     batch_size: int = 1000) -> np.ndarray:
  """Penultimate features of a network trained `epochs` epochs (0: at init).

  The embedding used by the herding and k-center baselines (`select.py`).

  Returns:
    `(n, d)` float32 features in the order of `x_train`.
  """
  x_train, y_train = _check_xy(x_train, y_train)
  num_classes = int(num_classes if num_classes is not None else y_train.max() + 1)
  cfg = dataclasses.replace(config, seed=int(seed))
  state = _train_for_scores(cfg, x_train, y_train, epochs, num_classes)
  return train.features(state, x_train, batch_size).astype(np.float32)


def save_scores(path: str, scores, *, method: str, fingerprint: str, config: dict) -> None:
  """Writes scores with what produced them (atomically, `kernelcond.io.save_npz`).

  Args:
    path: the `.npz` to write.
    scores: `(n,)` scores in the dataset's order.
    method: the score's name.
    fingerprint: the training set's fingerprint (`Dataset.fingerprint()` or
      `kernelcond.io.fingerprint(x_train, y_train)`), checked by `load_scores`.
    config: JSON-friendly settings (model, epochs, inits, ...).
  """
  scores = np.asarray(scores, np.float32)
  if scores.ndim != 1:
    raise ValueError(f"scores must be a vector, got shape {scores.shape}")
  io.save_npz(path, scores=scores, method=method, fingerprint=fingerprint,
              n=np.asarray(scores.shape[0]), config=dict(config))


def load_scores(path: str, fingerprint: Optional[str] = None,
                method: Optional[str] = None) -> tuple[np.ndarray, dict]:
  """Reads a scores file, refusing one computed for another dataset or score.

  Args:
    path: a file written by `save_scores`.
    fingerprint: the fingerprint of the dataset the scores will index; a file
      with another fingerprint is refused. None skips the check.
    method: if given, the score name the file must hold.

  Returns:
    `(scores, meta)`: `(n,)` float32 scores and `{'method', 'fingerprint', 'n', 'config'}`.

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: for a corrupt file or a fingerprint / method mismatch.
  """
  data = io.load_npz(path)
  missing = {"scores", "method", "fingerprint", "n", "config"} - set(data)
  if missing:
    raise ValueError(f"{path} is not a scores file (lacks {sorted(missing)})")
  meta = {"method": json.loads(str(data["method"])),
          "fingerprint": json.loads(str(data["fingerprint"])),
          "n": int(data["n"]), "config": json.loads(str(data["config"]))}
  scores = data["scores"].astype(np.float32)
  if scores.shape != (meta["n"],):
    raise ValueError(f"{path}: scores of shape {scores.shape} but n={meta['n']}")
  if fingerprint is not None and meta["fingerprint"] != fingerprint:
    raise ValueError(f"Scores file {path} was computed for a dataset with fingerprint "
                     f"{meta['fingerprint']} (n={meta['n']}), not for the given one "
                     f"({fingerprint}): recompute the scores for this dataset.")
  if method is not None and meta["method"] != method:
    raise ValueError(f"Scores file {path} holds {meta['method']!r} scores, not {method!r}")
  if not math.isfinite(float(np.sum(scores))):
    raise ValueError(f"Scores file {path} holds non-finite scores")
  return scores, meta
