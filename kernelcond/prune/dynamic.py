"""Dynamic pruning: the kept set changes during training, steered by forgetting.

Static pruning picks a subset once, before training. Here a network trains on a
changing active set of `k = num_kept(n, fraction)` examples under the same
steps budget: every `every` epochs of the budget (`every * (n // batch_size)`
steps, epochs of the full set) the whole training set is classified once, the
forgetting events since the previous check are counted (an example correct at
one check and wrong at the next, Toneva et al., arXiv:1812.05159, counted at
these checks), and the active set is redrawn per class: the most-forgotten
examples of the class are kept (never-learned ones first), the least-forgotten
dropped, and a `restore` share of the class's places goes to examples drawn
uniformly from the rest, so dropped examples come back and get re-measured
(the epsilon-greedy choice of Raju et al., "Accelerating deep learning with
dynamic data pruning", arXiv:2111.12621). The first active set is a class-
stratified random subset.

`train_dynamic(config, x, y, x_test, y_test, ...)` returns `(state, metrics)`
like `nets.train.train_and_evaluate`; with `checkpoint_dir` it saves and resumes
at the refresh points.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import jax
import numpy as np

from kernelcond import io
from kernelcond.nets import train
from kernelcond.prune import scores as kscores
from kernelcond.prune import select


@dataclasses.dataclass(frozen=True)
class DynamicConfig:
  """How the active set changes.

  Attributes:
    every: epochs of the budget (full-set epochs, `n // batch_size` steps each)
      between refreshes of the active set.
    restore: share of each class's places given to examples drawn at random from
      the rest (dropped ones come back), in [0, 1].
  """
  every: int = 1
  restore: float = 0.2

  def __post_init__(self):
    if self.every < 1:
      raise ValueError(f"dynamic every must be >= 1 epoch, got {self.every}")
    if not 0 <= self.restore <= 1:
      raise ValueError(f"dynamic restore must lie in [0, 1], got {self.restore}")


def forgetting_update(tracker: dict, correct) -> dict:
  """Adds one check of `(n,)` correctness to a forgetting tracker.

  Args:
    tracker: `{'events': (n,) int32, 'ever': (n,) bool, 'last': (n,) bool,
      'checks': int}` (`new_tracker(n)` before the first check).
    correct: `(n,)` bool, correctness at this check.

  Returns:
    The updated tracker: `events` counts correct -> wrong transitions between
    consecutive checks, `ever` marks examples correct at some check.
  """
  correct = np.asarray(correct, bool)
  first = tracker["checks"] == 0
  events = tracker["events"] + (0 if first else (tracker["last"] & ~correct).astype(np.int32))
  return {"events": events, "ever": tracker["ever"] | correct, "last": correct,
          "checks": tracker["checks"] + 1}


def new_tracker(n: int) -> dict:
  """A forgetting tracker before any check."""
  return {"events": np.zeros(n, np.int32), "ever": np.zeros(n, bool),
          "last": np.zeros(n, bool), "checks": 0}


def forgetting_score(tracker: dict) -> np.ndarray:
  """`(n,)` float32: events, or `checks + 1` for never-learned examples
  (the convention of `scores.forgetting_from_correctness`)."""
  return np.where(tracker["ever"], tracker["events"].astype(np.float32),
                  np.float32(tracker["checks"] + 1))


def next_active(score, labels, k: int, restore: float, rng: np.random.Generator) -> np.ndarray:
  """The next active set: per class, the most forgotten plus a random restored share.

  Class `c` gets `m_c` places (`select.stratified_counts(labels, k)`):
  `r_c = round(restore * m_c)` are drawn uniformly from the class, the other
  `m_c - r_c` are the class's highest `score`s among the rest (ties broken at
  random).

  Args:
    score: `(n,)` forgetting scores (`forgetting_score`).
    labels: `(n,)` integer labels.
    k: size of the active set.
    restore: share of the places drawn at random.
    rng: the random generator (ties and restored draws).

  Returns:
    Sorted int64 indices, `k` of them.
  """
  score = np.asarray(score, np.float64)
  chosen = []
  for c, m in select.stratified_counts(labels, k).items():
    members = rng.permutation(np.flatnonzero(labels == c))  # random tie order
    ranked = members[np.argsort(-score[members], kind="stable")]
    keep = m - int(np.floor(restore * m + 0.5))
    rest = ranked[keep:]
    chosen += [ranked[:keep], rng.choice(rest, size=m - keep, replace=False)]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def _segment(state, x, y, active, steps: int, batch_size: int, seed: int, epoch: int):
  """`steps` SGD steps on `x[active]`; returns `(state, next epoch number)`.

  Subset epoch `e` visits `active[train.epoch_permutation(k, seed, e)]` in full
  batches (the remainder is dropped), as `train.train_and_evaluate` does on
  `x[active]`; a segment starts a fresh epoch `epoch`.
  """
  window, pos, perm = [], None, None
  k = len(active)
  bs = min(batch_size, k)
  for _ in range(steps):
    if pos is None or pos + bs > k:
      perm, pos = active[train.epoch_permutation(k, seed, epoch)], 0
      epoch += 1
    idx = perm[pos:pos + bs]
    pos += bs
    state, metrics = train.train_step(state, {"x": x[idx], "y": y[idx]})
    window.append(metrics["loss"])
  loss = float(np.mean(jax.device_get(window))) if window else 0.0
  if not np.isfinite(loss):
    raise FloatingPointError(f"Non-finite training loss {loss} in dynamic pruning; "
                             "lower the learning rate.")
  return state, epoch


def train_dynamic(config: train.TrainConfig, dynamic: DynamicConfig, fraction: float, x, y,
                  x_test=None, y_test=None, *, num_classes: int, total_steps: int,
                  checkpoint_dir: Optional[str] = None,
                  eval_batch_size: int = 1000) -> tuple[train.TrainState, dict]:
  """Trains `config.model` from scratch on a changing active set of `fraction` of (x, y).

  Args:
    config: training settings (its `seed` seeds the network, the batches, the
      first active set and every redraw; `epochs` / `steps` are ignored).
    dynamic: the refresh settings.
    fraction: fraction of the training set active at any time, in (0, 1].
    x: `(n, H, W, C)` training inputs; y: `(n,)` integer labels.
    x_test, y_test: the test set, or None.
    num_classes: number of classes.
    total_steps: the steps budget (e.g. `--epochs` epochs of the full set).
    checkpoint_dir: save after every refresh and resume from the latest.
    eval_batch_size: examples per compiled inference call.

  Returns:
    `(state, metrics)`: 'test_accuracy', 'test_loss' (with a test set), 'steps',
    'epochs' (of the full set), 'n_kept', 'refreshes', 'ever_active' (fraction of
    the training set that was ever active), 'wall_time_s'.
  """
  start_time = time.time()
  x, y = kscores._check_xy(x, y)
  n = x.shape[0]
  k = select.num_kept(n, fraction)
  _, steps_per_epoch, batch_size = train.schedule_steps(config, n)
  period = dynamic.every * steps_per_epoch
  loss = train.resolve_loss(config, False)
  state = train.create_train_state(config, x.shape[1:], num_classes, total_steps, loss)
  tracker = new_tracker(n)
  active = select.random_subset(y, fraction, config.seed)
  ever_active = np.zeros(n, bool)
  done, epoch = 0, 0
  if checkpoint_dir is not None:
    io.check_run_config(checkpoint_dir, {**config.to_dict(), **dataclasses.asdict(dynamic),
                                         "fraction": fraction, "total_steps": total_steps,
                                         "train_fingerprint": io.fingerprint(x, y)})
    template = {"state": state, "tracker": {**tracker, "checks": np.int64(0)},
                "active": active, "ever_active": ever_active, "epoch": np.int64(0)}
    restored, done = io.restore_checkpoint(checkpoint_dir, template)
    state, active = restored["state"], np.asarray(restored["active"], np.int64)
    epoch = int(restored["epoch"])
    ever_active = np.asarray(restored["ever_active"], bool)
    tracker = {**{key: np.asarray(v) for key, v in restored["tracker"].items()},
               "checks": int(restored["tracker"]["checks"])}
  while done < total_steps:
    steps = min(period, total_steps - done)
    ever_active[active] = True
    state, epoch = _segment(state, x, y, active, steps, batch_size, config.seed, epoch)
    done += steps
    if done < total_steps:
      tracker = forgetting_update(tracker, kscores.correctness(state, x, y, eval_batch_size))
      rng = np.random.default_rng([config.seed, done])
      active = next_active(forgetting_score(tracker), y, k, dynamic.restore, rng)
    if checkpoint_dir is not None:
      io.save_checkpoint(checkpoint_dir, done, {
          "state": state, "tracker": {**tracker, "checks": np.int64(tracker["checks"])},
          "active": active, "ever_active": ever_active, "epoch": np.int64(epoch)})
  metrics = {"steps": int(total_steps), "epochs": total_steps / steps_per_epoch,
             "n_kept": int(k), "refreshes": int(tracker["checks"]),
             "ever_active": float(ever_active.mean()), "steps_per_epoch": steps_per_epoch}
  if x_test is not None and y_test is not None:
    test = train.evaluate(state, *kscores._check_xy(x_test, y_test), eval_batch_size)
    metrics.update(test_accuracy=test["accuracy"], test_loss=test["loss"])
  metrics["wall_time_s"] = time.time() - start_time
  return state, metrics
