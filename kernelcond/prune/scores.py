"""Per-example difficulty scores for data pruning.

* EL2N (Paul, Ganguli, Dziugaite, arXiv:2107.07075, eq. 2): the L2 norm of the
  error vector `softmax(f(x)) - onehot(y)`.
* GraNd (same paper, eq. 1): the L2 norm of the gradient of the example's loss
  with respect to all parameters (or only the last layer), computed for many
  examples at once with `jax.vmap(jax.grad(...))` over memory-bounded chunks.
* Forgetting (Toneva et al., arXiv:1812.05159): how often an example goes from
  correctly to incorrectly classified between consecutive epochs.
* Curvature (Garg & Roy, "Samples with Low Loss Curvature Improve Data
  Efficiency", CVPR 2023): a finite-difference Hutchinson-type estimate of
  `E_v ||H_x v||`, the input Hessian of the example's loss applied to
  Rademacher directions, `||grad_x L(x + h v) - grad_x L(x)|| / h`.
* Kernel scores, no network training: `krr_loo`, the norm of the
  leave-one-out residual of kernel ridge regression (`kernelcond.loo`: exact, or
  Nystrom above `loo.EXACT_AUTO_MAX_N` examples), and
  `krr_el2n`, the EL2N of a KRR prediction made without the example (fit on one
  random half, predict the other, then swap).

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
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from kernelcond import io
from kernelcond import krr
from kernelcond import loo
from kernelcond import preprocess
from kernelcond.registry import Registry
from kernelcond.nets import losses
from kernelcond.nets import train

CURVATURE_H = 1e-3  # finite-difference step (Garg & Roy, CVPR 2023)
CURVATURE_DRAWS = 10  # Rademacher directions per example
# Above loo.EXACT_AUTO_MAX_N examples the kernel scores use a Nystrom kernel with
# this many random landmarks (kernelcond.loo.make_loo_fn).
NYSTROM_LANDMARKS = 4000
# Relative ridges `krr_loo` / `krr_el2n` choose from by exact leave-one-out error.
KRR_REGS = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclasses.dataclass(frozen=True)
class ScoreOptions:
  """Settings of one score computation beyond the network's `TrainConfig`.

  Attributes:
    epochs: training epochs before scoring (0: at initialisation).
    num_classes: number of classes.
    batch_size: examples per compiled forward pass.
    last_layer_only: GraNd with the classifier's gradient only.
    kernel: kernel spec of the KRR scores (`kernels.get_spec`), its NTK is used.
    kernel_reg: their relative ridge (`krr.regularized`); None: the one of
      `KRR_REGS` with the lowest exact leave-one-out error on the whole set.
  """
  epochs: int = 0
  num_classes: int = 10
  batch_size: int = 1000
  last_layer_only: bool = False
  kernel: str = "fc3"
  kernel_reg: Optional[float] = None


class Score(NamedTuple):
  """A registered score: `compute(config, x, y, options) -> (n,)` for one seed
  (`config.seed`); `min_epochs` of training it needs; `seeded`: whether seeds
  change it (a seedless score is computed once, not averaged over inits)."""
  min_epochs: int
  compute: Callable
  seeded: bool = True


def _end_state_score(score_fn):
  """A score computed from the network at the end of training: `fn(state, x, y, options)`."""

  def compute(config, x, y, options):
    state = _train_for_scores(config, x, y, options.epochs, options.num_classes)
    return score_fn(state, x, y, options)

  return compute


def _forgetting(config, x, y, options):
  rows = []
  record = lambda epoch, state: rows.append(correctness(state, x, y, options.batch_size))
  _train_for_scores(config, x, y, options.epochs, options.num_classes, record)
  return forgetting_from_correctness(np.stack(rows))


def _krr_loo_score(config, x, y, options):
  del config  # no network, no randomness
  return krr_loo(x, y, options.num_classes, options.kernel, options.kernel_reg)


def _krr_el2n_score(config, x, y, options):
  return krr_el2n(x, y, options.num_classes, options.kernel, options.kernel_reg,
                  seed=config.seed)


def _curvature_of_state(state, x, y, options):
  return curvature(state, x, y, seed=0, batch_size=min(options.batch_size, 256))


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


def curvature_directions(seed: int, index, shape, draws: int = CURVATURE_DRAWS) -> jax.Array:
  """`(draws,) + shape` Rademacher (+-1) directions of example `index` under `seed`.

  Keyed by the example's index, so a score does not depend on how examples are
  chunked.
  """
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index), draws)
  return jax.vmap(lambda k: jax.random.rademacher(k, tuple(shape), dtype=jnp.float32))(keys)


def input_gradient_fn(state: train.TrainState) -> Callable:
  """`g(x_i, y_i) -> (H, W, C)`: gradient of the example's loss with respect to its
  input, network in inference mode (BatchNorm running averages)."""

  def example_loss(xi, label):
    logits = state.apply_fn(state.variables(), xi[None], train=False)
    return losses.per_example_loss(logits, label[None], state.loss)[0]

  return jax.grad(example_loss)


@functools.partial(jax.jit, static_argnames=("draws",))
def _curvature_chunk(state: train.TrainState, x, y, index, seed, h, draws: int):
  input_grad = input_gradient_fn(state)

  def one(xi, label, i):
    g0 = input_grad(xi, label)
    directions = curvature_directions(seed, i, xi.shape, draws)
    diff = jax.vmap(lambda v: input_grad(xi + h * v, label) - g0)(directions)
    return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(diff.reshape(draws, -1)), axis=1))) / h

  return jax.vmap(one)(x, y, index)


def curvature(state: train.TrainState, x, y, *, h: float = CURVATURE_H,
              draws: int = CURVATURE_DRAWS, seed: int = 0,
              batch_size: int = 256) -> np.ndarray:
  """Input-space loss curvature of every example (Garg & Roy, CVPR 2023).

  `(1/R) sum_r ||grad_x L(x_i + h v_r) - grad_x L(x_i)||_2 / h` with `R = draws`
  Rademacher directions `v_r` (`curvature_directions(seed, i, ...)`): a finite
  difference of the input gradient, i.e. `(1/R) sum_r ||H_x v_r||` up to
  `O(h)`, the Hutchinson-type estimate of the loss curvature at the example
  (Garg & Roy average it without squaring; they also drop the `1/h`, a constant
  factor that does not change the ranking). Loss of `state` ('xent' or 'mse'),
  network in inference mode, uncentred outputs (as GraNd). For ReLU networks the
  input gradient jumps where a unit changes sign: a step that crosses such a
  kink adds `|jump| / h`, so the score then also measures closeness to kinks
  (the finite difference is what Garg & Roy compute; the exact-HVP test uses a
  smooth network).

  Args:
    state: a `train.TrainState`.
    x: `(n, H, W, C)` inputs.
    y: `(n,)` integer labels.
    h: finite-difference step.
    draws: Rademacher directions per example.
    seed: seed of the directions.
    batch_size: examples per vmapped chunk (the last one is padded).

  Returns:
    `(n,)` float32 scores, higher = more curved.
  """
  x, y = _check_xy(x, y)
  if not h > 0 or draws < 1:
    raise ValueError(f"curvature needs h > 0 and draws >= 1, got {h}, {draws}")
  index = np.arange(x.shape[0], dtype=np.int32)
  fn = lambda rows: _curvature_chunk(state, x[rows], y[rows], rows, seed, h, int(draws))
  return train.map_batched(fn, index, batch_size).astype(np.float32)


def _loo_fn(x, t, spec: str):
  """`loo_fn(reg) -> (n, c)` leave-one-out predictions of the NTK of `spec` on `x`.

  Exact (the `(n, n)` kernel) up to `loo.EXACT_AUTO_MAX_N` examples; above, the
  Nystrom kernel of `loo.make_loo_fn` (`NYSTROM_LANDMARKS` random landmarks,
  leave-one-out exact for that kernel). `loo_fn.method` says which.
  """
  from kernelcond import kernels  # local: kernels pull in optional backends

  return loo.make_loo_fn(kernels.make_kernel_fn(spec, "auto"), x, t, method="auto",
                         num_landmarks=NYSTROM_LANDMARKS)


def _centred_targets(y, num_classes: int) -> np.ndarray:
  return preprocess.one_hot(y, num_classes, center=True)


def krr_reg_by_loo(loo_fn, targets, regs=KRR_REGS) -> float:
  """The ridge of `regs` whose leave-one-out predictions `loo_fn(reg)` misclassify
  fewest examples (ties: the smaller ridge); a ridge with a non-finite solve is skipped."""
  labels = np.argmax(targets, axis=1)
  best, best_err = None, np.inf
  for reg in regs:
    try:
      pred = np.asarray(loo_fn(reg))
    except ValueError:
      continue
    err = float(np.mean(np.argmax(pred, axis=1) != labels))
    if err < best_err:
      best, best_err = float(reg), err
  if best is None:
    raise ValueError(f"leave-one-out KRR is not finite for any ridge in {list(regs)}")
  return best


def krr_loo(x, y, num_classes: int, kernel: str = "fc3",
            reg: Optional[float] = None) -> np.ndarray:
  """Kernel leave-one-out residual: `||t_i - f_{-i}(x_i)||_2` for every example.

  `f_{-i}` is KRR with the NTK of `kernel`, fitted on every example but `i`, on
  centred one-hot targets `t` (`preprocess.one_hot(center=True)`); all `n`
  predictions come from one factorisation (`kernelcond.loo`, the PRESS identity;
  above `loo.EXACT_AUTO_MAX_N` examples with a Nystrom kernel, see `_loo_fn`). Examples the rest of the data does not explain (atypical or
  mislabelled) score high. No network is trained.

  Args:
    x: `(n, ...)` inputs.
    y: `(n,)` integer labels.
    num_classes: number of classes.
    kernel: kernel spec.
    reg: relative ridge; None: `krr_reg_by_loo` over `KRR_REGS`.

  Returns:
    `(n,)` float32 scores.
  """
  x, y = _check_xy(x, y)
  t = _centred_targets(y, num_classes)
  loo_fn = _loo_fn(x, t, kernel)
  reg = krr_reg_by_loo(loo_fn, t) if reg is None else reg
  pred = np.asarray(loo_fn(reg))
  return np.linalg.norm(t - pred, axis=1).astype(np.float32)


def krr_el2n(x, y, num_classes: int, kernel: str = "fc3", reg: Optional[float] = None, *,
             seed: int = 0, max_n: Optional[int] = None) -> np.ndarray:
  """EL2N of a kernel prediction made without the example: `||f(x_i) - t_i||_2`.

  The training set is split into two class-stratified random halves
  (`select.random_subset(y, 0.5, seed)` and the rest); KRR with the NTK of
  `kernel` is fitted on one half (centred one-hot targets `t`) and predicts the
  other, then the halves swap. The error vector is the regression residual,
  the MSE analogue of Data Diet's EL2N (arXiv:2107.07075, eq. 2). No network is
  trained.

  Up to `max_n` examples the `(n, n)` kernel is held and each half is solved
  exactly; above, the kernel is the Nystrom kernel `Phi Phi^T` of
  `NYSTROM_LANDMARKS` random landmarks (`loo.nystrom_features`, as `krr_loo`)
  and each half is solved in feature space,
  `W = (Phi_h^T Phi_h + lam I)^{-1} Phi_h^T t_h`, `lam = reg * ||Phi_h||_F^2 / n_h`
  (the same relative ridge: `trace(K_hh) = ||Phi_h||_F^2`), so nothing of size
  `(n, n)` is built (60,000 examples: a `(60000, 4000)` float32 block).

  Args:
    x: `(n, ...)` inputs.
    y: `(n,)` integer labels.
    num_classes: number of classes.
    kernel: kernel spec.
    reg: relative ridge; None: `krr_reg_by_loo` over `KRR_REGS` on the whole set.
    seed: seed of the split.
    max_n: largest `n` solved with the exact kernel (default
      `loo.EXACT_AUTO_MAX_N`).

  Returns:
    `(n,)` float32 scores.
  """
  from kernelcond import kernels  # local: kernels pull in optional backends
  from kernelcond.prune import select  # local: select is a sibling module

  x, y = _check_xy(x, y)
  max_n = loo.EXACT_AUTO_MAX_N if max_n is None else max_n
  t = _centred_targets(y, num_classes)
  kernel_fn = kernels.make_kernel_fn(kernel, "auto")
  first = np.zeros(x.shape[0], bool)
  first[select.random_subset(y, 0.5, seed)] = True
  pred = np.zeros_like(t)
  if x.shape[0] <= max_n:
    k = np.asarray(kernels.kernel_matrix(kernel_fn, x, get="ntk"), np.float32)
    reg = krr_reg_by_loo(lambda r: loo.loo_predictions(k, t, r), t) if reg is None else reg
    for fit_on in (first, ~first):
      predict_fn = krr.fit(k[np.ix_(fit_on, fit_on)], t[fit_on], reg)
      pred[~fit_on] = np.asarray(predict_fn(k[np.ix_(~fit_on, fit_on)]))
  else:
    phi = loo.nystrom_features(kernel_fn, x, loo.landmarks(len(x), NYSTROM_LANDMARKS))
    reg = krr_reg_by_loo(loo.make_feature_loo_fn(phi, t), t) if reg is None else reg
    for fit_on in (first, ~first):
      pred[~fit_on] = phi[~fit_on] @ feature_ridge_weights(phi[fit_on], t[fit_on], reg)
  return np.linalg.norm(pred - t, axis=1).astype(np.float32)


def feature_ridge_weights(phi, t, reg: float) -> np.ndarray:
  """`(m, c)` weights `(Phi^T Phi + lam I)^{-1} Phi^T t`, `lam = reg * ||Phi||_F^2 / n` (float64)."""
  phi = np.asarray(phi, np.float64)
  gram = phi.T @ phi
  lam = float(reg) * np.trace(gram) / phi.shape[0]
  return np.linalg.solve(gram + lam * np.eye(gram.shape[0]), phi.T @ np.asarray(t, np.float64))


def spearman_matrix(named_scores: dict) -> tuple[list, np.ndarray]:
  """Spearman rank correlations between scores of the same examples.

  Args:
    named_scores: `{name: (n,) scores}`, at least two, all of one length.

  Returns:
    `(names, rho)`: the names in order and the `(m, m)` correlation matrix
    (`scipy.stats.spearmanr`; ties get average ranks).
  """
  from scipy import stats

  names = list(named_scores)
  columns = [np.asarray(named_scores[name], np.float64) for name in names]
  if len(names) < 2 or len({c.shape for c in columns}) != 1 or columns[0].ndim != 1:
    raise ValueError("Spearman correlations need at least two score vectors of one length, "
                     f"got {[(m, c.shape) for m, c in zip(names, columns)]}")
  rho = np.ones((len(names), len(names)))
  for i in range(len(names)):
    for j in range(i + 1, len(names)):
      rho[i, j] = rho[j, i] = stats.spearmanr(columns[i], columns[j])[0]
  return names, rho


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
                   batch_size: int = 1000, kernel: str = "fc3",
                   kernel_reg: Optional[float] = None) -> np.ndarray:
  """A score averaged over independent initialisations.

  For each seed in `init_seeds(seed, num_inits)`, the network of `config` (with
  that seed) is trained from scratch for `epochs` epochs on the full
  `(x_train, y_train)` and every example is scored; the `num_inits` score
  vectors are averaged. With `epochs=0` the freshly initialised parameters are
  scored (no step is taken). For 'forgetting', the correctness of every example
  is recorded after each of the `epochs` epochs. Kernel scores train nothing
  (`config` only gives the seed of `krr_el2n`'s random halves; `krr_loo` has no
  randomness and is computed once).

  Args:
    method: a name of `SCORES`.
    x_train: `(n, H, W, C)` preprocessed training inputs.
    y_train: `(n,)` integer labels.
    config: training settings; its `epochs`, `steps` and `seed` are replaced.
    num_inits: independent initialisations K to average over, `>= 1`.
    epochs: training epochs T before scoring (`>= 1` for forgetting).
    seed: seed of the first initialisation.
    num_classes: default `1 + max(y_train)`.
    last_layer_only: GraNd only: gradient with respect to the classifier only.
    batch_size: examples per compiled forward pass (GraNd chooses its own).
    kernel: kernel spec of the KRR scores.
    kernel_reg: relative ridge of the KRR scores (None: chosen by exact
      leave-one-out error among `KRR_REGS`).

  Returns:
    `(n,)` float32 scores in the order of `x_train`.
  """
  min_epochs, compute, seeded = SCORES.get(method)
  x_train, y_train = _check_xy(x_train, y_train)
  if num_inits < 1:
    raise ValueError(f"num_inits must be >= 1, got {num_inits}")
  if epochs < min_epochs:
    raise ValueError(f"{method} needs epochs >= {min_epochs}, got {epochs}")
  num_classes = int(num_classes if num_classes is not None else y_train.max() + 1)
  options = ScoreOptions(epochs=int(epochs), num_classes=num_classes, batch_size=int(batch_size),
                         last_layer_only=bool(last_layer_only), kernel=kernel,
                         kernel_reg=kernel_reg)
  seeds = init_seeds(seed, num_inits if seeded else 1)
  total = np.zeros(x_train.shape[0], np.float64)
  for init_seed in seeds:
    cfg = dataclasses.replace(config, seed=init_seed)
    total += compute(cfg, x_train, y_train, options)
  return (total / len(seeds)).astype(np.float32)


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


# name -> Score(min training epochs, compute(config, x, y, options), seeded).
SCORES: Registry = Registry("pruning score")
SCORES.register("el2n", Score(0, _end_state_score(
    lambda state, x, y, o: el2n(state, x, y, o.batch_size))))
SCORES.register("grand", Score(0, _end_state_score(
    lambda state, x, y, o: grand(state, x, y, last_layer_only=o.last_layer_only))))
SCORES.register("forgetting", Score(1, _forgetting))
SCORES.register("curvature", Score(0, _end_state_score(_curvature_of_state)))
SCORES.register("krr_loo", Score(0, _krr_loo_score, seeded=False))
SCORES.register("krr_el2n", Score(0, _krr_el2n_score))
# Scores that train no network (no proxy model, no score epochs).
KERNEL_SCORES = ("krr_loo", "krr_el2n")
METHODS = SCORES.names()
