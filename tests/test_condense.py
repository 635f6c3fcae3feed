"""The condensation seam: registry, the one run loop (resume, NaN guard, signals,
metrics log) and Label Solve through the loop against the direct solve."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from kernelcond import condense
from kernelcond import kernels
from kernelcond import metrics as kmetrics
from kernelcond.condense import base
from kernelcond.condense import label_solve
from kernelcond.condense import loop

C = 3


def _data(n=30, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % C
  return base.Data.create(rng.standard_normal((n, 4, 4, 1)), np.eye(C)[labels], labels)


@functools.lru_cache(maxsize=None)
def _kip():
  """One KIP condenser for the module: the loop's jitted chunk compiles once for it."""
  method = condense.METHODS.get("kip")
  config = method.config(kernel="fc2", kernel_backend="native", lr=0.02, reg=1e-3,
                         target_batch=8, lr_schedule="constant", steps=50)
  return method.make(config)


def _fresh(condenser, data):
  return condenser.init(jax.random.PRNGKey(0), data, data.x[:6], data.y[:6])


def test_registry_names_and_errors():
  assert {"kip", "ls"} <= set(condense.METHODS.names())
  with pytest.raises(ValueError, match="valid: kip, ls"):
    condense.METHODS.get("kpi")
  with pytest.raises(ValueError, match="valid:.*target_batch"):
    condense.METHODS.get("kip").config(batch=3)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  data, condenser = _data(), _kip()
  key = jax.random.PRNGKey(1)
  whole, _ = loop.run(condenser, data, _fresh(condenser, data), steps=6, key=key)
  workdir = str(tmp_path / "run")
  part, stats = loop.run(condenser, data, _fresh(condenser, data), steps=4, key=key,
                         workdir=workdir, checkpoint_every=2, tensorboard=False)
  assert stats["resumed_from_step"] == 0 and int(part.step) == 4
  resumed, stats = loop.run(condenser, data, _fresh(condenser, data), steps=6, key=key,
                            workdir=workdir, checkpoint_every=2, tensorboard=False)
  assert stats["resumed_from_step"] == 4
  np.testing.assert_allclose(resumed.x_support, whole.x_support, rtol=1e-6, atol=1e-7)
  steps = [r["step"] for r in kmetrics.read_records(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == [1, 2, 3, 4, 5, 6]


def test_torn_checkpoint_and_metrics_line_fall_back(tmp_path):
  data, condenser = _data(), _kip()
  key = jax.random.PRNGKey(1)
  workdir = str(tmp_path / "run")
  loop.run(condenser, data, _fresh(condenser, data), steps=4, key=key, workdir=workdir,
           checkpoint_every=2, tensorboard=False)
  ckpt = os.path.join(workdir, "checkpoints", "ckpt_000000004.npz")
  with open(ckpt, "r+b") as f:
    f.truncate(100)  # a newest checkpoint cut mid-write
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 5, "lo')  # a torn last line
  _, stats = loop.run(condenser, data, _fresh(condenser, data), steps=4, key=key,
                      workdir=workdir, checkpoint_every=2, tensorboard=False)
  assert stats["resumed_from_step"] == 2  # the previous checkpoint
  records = kmetrics.read_records(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records] == [1, 2, 3, 4]


@struct.dataclass
class _CountState:
  x_support: jax.Array
  y_support: jax.Array
  step: jax.Array


def _nan_at(bad_step):
  """A condenser whose metric becomes NaN at step `bad_step` (counted from 1)."""

  def update(state, batch, key):
    del batch, key
    step = state.step + 1
    value = jnp.where(step == bad_step, jnp.nan, step.astype(jnp.float32))
    return state.replace(x_support=state.x_support + 1.0, step=step), {"loss": value}

  def init(key, data, x, y):
    return _CountState(jnp.asarray(x), jnp.asarray(y), jnp.zeros((), jnp.int32))

  return base.Condenser(init=init, update=update, sample_batch=base.whole_data)


def test_nan_guard_names_the_step_and_keeps_the_last_state(tmp_path):
  data = _data()
  condenser = _nan_at(5)
  workdir = str(tmp_path / "nan")
  state = condenser.init(None, data, data.x[:6], data.y[:6])
  with pytest.raises(FloatingPointError, match="step 5"):
    loop.run(condenser, data, state, steps=8, key=jax.random.PRNGKey(0), workdir=workdir,
             checkpoint_every=2, tensorboard=False)
  restored, step = __import__("kernelcond.io", fromlist=["io"]).restore_checkpoint(
      os.path.join(workdir, "checkpoints"), state)
  assert step == 4
  np.testing.assert_allclose(restored.x_support, data.x[:6] + 4.0, rtol=1e-6)


def test_interrupt_checkpoints_and_raises(tmp_path):
  data, condenser = _data(), _kip()
  workdir = str(tmp_path / "int")

  def stop(step, record):
    if step >= 2:
      raise KeyboardInterrupt

  with pytest.raises(loop.Interrupted) as info:
    loop.run(condenser, data, _fresh(condenser, data), steps=50, key=jax.random.PRNGKey(0),
             workdir=workdir, checkpoint_every=100, on_chunk=stop, tensorboard=False)
  assert info.value.step >= 2
  assert os.path.exists(os.path.join(workdir, "checkpoints",
                                     f"ckpt_{info.value.step:09d}.npz"))


def test_evaluation_is_logged_and_tensorboard_written(tmp_path):
  pytest.importorskip("kernelcond.tensorboard")
  data, condenser = _data(), _kip()
  workdir = str(tmp_path / "ev")
  _, stats = loop.run(condenser, data, _fresh(condenser, data), steps=4,
                      key=jax.random.PRNGKey(0), workdir=workdir, eval_every=2,
                      evaluate=lambda s: {"val_accuracy": float(s.step) / 10})
  assert stats["last_eval"] == {"val_accuracy": 0.4}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r.get("eval/val_accuracy") for r in records] == [None, 0.2, None, 0.4]
  assert any(n.startswith("events.out.tfevents")
             for n in os.listdir(os.path.join(workdir, "tensorboard")))


def test_label_solve_through_the_loop_equals_the_direct_solve():
  data = _data()
  method = condense.METHODS.get("ls")
  config = method.config(kernel="fc2", kernel_backend="native", reg=1e-3)
  condenser = method.make(config)
  state = _fresh(condenser, data)
  state, stats = loop.run(condenser, data, state, steps=1, key=jax.random.PRNGKey(0))
  kernel_fn = kernels.make_kernel_fn("fc2", "native")
  direct = label_solve.label_solve(kernel_fn, data.x[:6], data.x, data.y, reg=1e-3)
  np.testing.assert_allclose(state.y_support, direct, rtol=1e-5, atol=1e-6)
  assert stats["steps"] == 1 and int(state.step) == 1
