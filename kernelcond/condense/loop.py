"""The one run loop of every condensation method.

`run(condenser, data, state, ...)` takes the steps of any `base.Condenser`:

* jitted chunks: up to `max_chunk` steps per dispatch (`lax.fori_loop`, the
  step count traced, so every chunk length shares one compilation), sized to
  about `chunk_seconds` so that Ctrl-C and progress stay responsive;
* a NaN guard: a chunk with any non-finite metric is discarded (the state
  stays at the chunk's start, the last checkpoint intact) and
  `FloatingPointError` names the step;
* running evaluation: `evaluate(state) -> {name: float}` every `eval_every`
  steps and at the end, logged with the step's metrics as `eval/<name>`;
* atomic checkpoints every `checkpoint_every` steps, at the end and on
  Ctrl-C / SIGTERM (then `Interrupted` is raised); a workdir with checkpoints
  resumes from the newest readable one;
* `metrics.jsonl` and TensorBoard events (`kernelcond.metrics.MetricsLog`).

Step `t` draws its batch and update keys from `fold_in(key, t)`, so chunked,
resumed and step-by-step runs follow one trajectory.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from kernelcond import io
from kernelcond import metrics as kmetrics
from kernelcond.condense import base

CHECKPOINT_DIR = "checkpoints"


class Interrupted(Exception):
  """Ctrl-C or SIGTERM stopped the run after checkpointing `step` in `checkpoint_dir`."""

  def __init__(self, step: int, checkpoint_dir: Optional[str]):
    super().__init__(f"interrupted at step {step}; checkpoint in {checkpoint_dir}")
    self.step = step
    self.checkpoint_dir = checkpoint_dir


class _Terminated(Exception):
  """Raised by the SIGTERM handler so that the loop checkpoints and stops."""


def step_keys(key: jax.Array, step) -> tuple[jax.Array, jax.Array]:
  """`(batch_key, update_key)` of step `step` (counted from 0) of a run keyed by `key`."""
  batch_key, update_key = jax.random.split(jax.random.fold_in(key, step))
  return batch_key, update_key


def make_chunk(condenser: base.Condenser, max_chunk: int = 256):
  """A jitted `chunk(state, data, key, n) -> (state, metrics)` of `min(n, max_chunk)` steps.

  `metrics` maps each metric name to a `(max_chunk,)` array whose first
  `min(n, max_chunk)` entries are filled. The condenser is a static argument of
  one jitted function, so every chunk function of the same condenser object
  (a resumed run, a second run in the same process) shares its compilation.
  """
  if max_chunk < 1:
    raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
  return functools.partial(_chunk, condenser, max_chunk)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _chunk(condenser: base.Condenser, max_chunk: int, state, data, key, n):

  def one_step(state, data, key):
    batch_key, update_key = step_keys(key, state.step)
    return condenser.update(state, condenser.sample_batch(batch_key, data), update_key)

  shapes = jax.eval_shape(one_step, state, data, key)[1]
  buffers = {k: jnp.zeros((max_chunk,), jnp.float32) for k in shapes}

  def body(i, carry):
    state, buffers = carry
    state, metrics = one_step(state, data, key)
    return state, {k: b.at[i].set(jnp.asarray(metrics[k], jnp.float32))
                   for k, b in buffers.items()}

  return jax.lax.fori_loop(0, jnp.minimum(n, max_chunk), body, (state, buffers))


def _python_chunk(condenser: base.Condenser):
  """The same contract as `make_chunk` for methods that cannot be jitted (one step a call)."""

  def chunk(state, data, key, n):
    del n
    batch_key, update_key = step_keys(key, int(state.step))
    state, metrics = condenser.update(state, condenser.sample_batch(batch_key, data), update_key)
    return state, {k: np.asarray([float(v)], np.float32) for k, v in metrics.items()}

  return chunk


def _next_stop(step: int, steps: int, *everies: int) -> int:
  """The next step at which the loop must stop: an evaluation, a checkpoint or the end."""
  return min([steps] + [(step // e + 1) * e for e in everies if e])


def seconds_per_step(records) -> Optional[float]:
  """Median of the `seconds` per step logged over all sessions (compilation included once)."""
  times = [r["seconds"] for r in records if "seconds" in r]
  return float(np.median(times)) if times else None


def run(condenser: base.Condenser, data: base.Data, state: Any, *, steps: int,
        key: jax.Array, workdir: Optional[str] = None, checkpoint_every: int = 100,
        eval_every: int = 50, evaluate: Optional[Callable[[Any], dict]] = None,
        on_chunk: Optional[Callable[[int, dict], None]] = None, max_chunk: int = 256,
        chunk_seconds: float = 0.5, tensorboard: bool = True) -> tuple[Any, dict]:
  """Runs `condenser` from `state` (or from the newest checkpoint) to `steps` steps.

  Args:
    condenser: the method (`base.Condenser`).
    data: the training set (`base.Data`).
    state: the initial state, `condenser.init(...)`; also the template that
      checkpoints are restored into.
    steps: total steps of the run (a resumed run continues to this).
    key: the run's key; step `t` uses `step_keys(key, t)`.
    workdir: where `checkpoints/`, `metrics.jsonl` and `tensorboard/` go; None
      runs in memory (no checkpoints, no log).
    checkpoint_every: steps between checkpoints.
    eval_every: steps between `evaluate` calls (0: only at the end).
    evaluate: `evaluate(state) -> {name: float}`, e.g. a KRR accuracy.
    on_chunk: called as `on_chunk(step, last_record)` after every chunk (a
      progress bar); `last_record` holds the chunk's last metrics.
    max_chunk: steps per dispatch at most. chunk_seconds: aimed-at chunk time.
    tensorboard: also write TensorBoard events.

  Returns:
    `(state, stats)`; `stats` has `resumed_from_step`, `steps`, `final`
    (the last logged record), `last_eval`, `seconds_per_step` and `records`
    (every step's record, earlier sessions' included).

  Raises:
    FloatingPointError: a non-finite metric (state of the last chunk kept).
    Interrupted: Ctrl-C or SIGTERM (after checkpointing).
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR) if workdir else None
  start = 0
  if ckpt_dir:
    state, start = io.restore_checkpoint(ckpt_dir, state)
  log = kmetrics.MetricsLog(workdir, start, tensorboard) if workdir else None
  records = list(log.records) if log else []
  chunk = make_chunk(condenser, max_chunk) if condenser.jittable else _python_chunk(condenser)
  stats = {"resumed_from_step": start, "last_eval": None}
  step, seconds = int(start), None

  def save(at: int) -> None:
    if ckpt_dir:
      io.save_checkpoint(ckpt_dir, at, state)

  restore_handler = _install_sigterm()
  try:
    while step < steps:
      n = _next_stop(step, steps, eval_every, checkpoint_every) - step
      n = min(n, max_chunk, max(1, int(chunk_seconds / seconds)) if seconds else 1)
      n = n if condenser.jittable else 1
      t0 = time.perf_counter()
      new_state, chunk_metrics = chunk(state, data, key, n)
      chunk_metrics = {k: np.asarray(v)[:n] for k, v in chunk_metrics.items()}
      seconds = (time.perf_counter() - t0) / n
      for name, values in chunk_metrics.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
          raise FloatingPointError(f"{name} is {values[bad[0]]} at step {step + bad[0] + 1}; "
                                   "lower the learning rate or raise the ridge (reg).")
      state, done = new_state, step + n
      evaluated = {}
      if evaluate is not None and ((eval_every and done % eval_every == 0) or done == steps):
        stats["last_eval"] = {k: float(v) for k, v in evaluate(state).items()}
        evaluated = {f"eval/{k}": v for k, v in stats["last_eval"].items()}
      for i in range(n):
        values = {k: v[i] for k, v in chunk_metrics.items()}
        values["seconds"] = seconds
        if i == n - 1:
          values.update(evaluated)
        record = log.write(step + i + 1, values) if log else {"step": step + i + 1, **values}
        records.append(record)
      step = done
      if done % checkpoint_every == 0 or done == steps:
        save(done)
      if on_chunk is not None:
        on_chunk(done, records[-1])
  except (KeyboardInterrupt, _Terminated):
    save(int(state.step))
    raise Interrupted(int(state.step), ckpt_dir) from None
  finally:
    restore_handler()
    if log:
      log.close()
  stats.update(steps=step, final=records[-1] if records else None,
               seconds_per_step=seconds_per_step(records), records=records)
  if stats["last_eval"] is None and evaluate is not None:  # a finished run re-opened
    stats["last_eval"] = {k[len("eval/"):]: v for k, v in (records[-1] if records else {}).items()
                          if k.startswith("eval/")} or None
  return state, stats


def _install_sigterm() -> Callable[[], None]:
  """Turns SIGTERM into `_Terminated` (main thread only); returns the undo."""
  if threading.current_thread() is not threading.main_thread():
    return lambda: None

  def handler(signum, frame):
    del signum, frame
    raise _Terminated()

  previous = signal.signal(signal.SIGTERM, handler)
  return lambda: signal.signal(signal.SIGTERM, previous)
