r"""Seconds per step of registered condensation methods at the same support and target sizes.

    python benchmarks/condense.py                        # kip (exact conv3), rfad, frepo
    python benchmarks/condense.py --methods=kip,rfad,rfad:paper,frepo:paper --ipc=1 \
        --target_batch=128 --set=kip.kernel_type=nngp

Every method of `kernelcond.condense.METHODS` (or `name:config` for a named
config, `ConfigCls.named(config)`) is built from its defaults, with
`--target_batch` and `--kernel` applied to every config that has those fields
and `--set=method.field=value` to one method, then timed in this one process:
`--repeats` steps (each `sample_batch` + `update`) as runs take them: in one
jitted chunk of `condense.loop` (a `fori_loop`) for jittable methods, divided by
`--repeats`, compilation excluded (target batches split over all local devices,
as the methods do by default).
The last column is the first method's time over each method's (the speed-up
over the baseline, KIP by default).

The defaults time exact ConvNet KIP (the pooled 'conv3' kernel, the native
backend) against rfad and frepo at support 10 (`--ipc=1`, 10 classes) and 64
targets of 28x28x1 Gaussian images (Fashion-MNIST's shape): exact pooled
ConvNet kernels cost milliseconds per entry on CPU, so bigger sizes take
minutes per KIP step there.
"""

import dataclasses
import os
import sys
import typing

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (benchmarks/ helpers)

from kernelcond import condense  # noqa: E402
from kernelcond.condense import base  # noqa: E402
from kernelcond.condense import loop  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("methods", ["kip", "rfad", "frepo"],
                  "Methods to time, the first is the baseline; 'name:config' picks a named config.")
flags.DEFINE_integer("ipc", 1, "Support examples per class (10 classes).")
flags.DEFINE_integer("target_batch", 64, "Target examples per step (every method with the field).")
flags.DEFINE_string("kernel", "conv3", "Kernel / architecture spec (every method with the field).")
flags.DEFINE_multi_string("set", [], "Per-method override 'method.field=value' (repeatable).")
flags.DEFINE_list("image_shape", ["28", "28", "1"], "Per-example shape of the Gaussian inputs.")
flags.DEFINE_integer("n_train", 2000, "Training examples the batches are drawn from.")
flags.DEFINE_integer("repeats", 3, "Timed steps (one chunk; the median of Python steps).")

NUM_CLASSES = 10


def _parse(field: dataclasses.Field, cls: type, text: str):
  """`text` as the type of `field` (bool, int, float or str)."""
  kind = typing.get_type_hints(cls)[field.name]
  if kind is bool:
    if text.lower() not in ("true", "false", "1", "0"):
      raise app.UsageError(f"--set {field.name}: expected a boolean, got {text!r}")
    return text.lower() in ("true", "1")
  return kind(text)


def method_config(entry: str, common: dict, sets: list[str]):
  """`(method, config)` for 'name' or 'name:named_config', with the overrides applied."""
  name, _, named = entry.partition(":")
  method = condense.METHODS.get(name)
  cls = method.config_cls
  fields = {f.name: f for f in dataclasses.fields(cls)}
  overrides = {k: v for k, v in common.items() if k in fields}
  for item in sets:
    target, _, assignment = item.partition(".")
    field, _, value = assignment.partition("=")
    if target not in (name, entry):
      continue
    if field not in fields:
      raise app.UsageError(f"--set {item}: {cls.__name__} has no field {field!r}; "
                           f"valid: {', '.join(sorted(fields))}")
    overrides[field] = _parse(fields[field], cls, value)
  if named:
    if not hasattr(cls, "named"):
      raise app.UsageError(f"{name} has no named configs")
    return method, cls.named(named, **overrides)
  return method, method.config(**overrides)


def seconds_per_step(method, config, data, x_s, y_s, repeats: int) -> float:
  """Seconds per step as runs take them (compilation excluded).

  Jittable methods: `repeats` steps in one chunk of `condense.loop` (the
  `fori_loop` every run uses), timed after a compiling call, divided by
  `repeats`. Others: the median of `repeats` Python-loop steps.
  """
  condenser = method.make(config)
  state = condenser.init(jax.random.PRNGKey(0), data, x_s, y_s)
  key = jax.random.PRNGKey(1)
  if condenser.jittable:
    chunk = loop.make_chunk(condenser, max_chunk=repeats)
    run = lambda: jax.block_until_ready(chunk(state, data, key, repeats))
    run()  # compile
    return _timing.timed(run) / repeats

  def step(i):
    batch_key, update_key = loop.step_keys(key, i)
    return jax.block_until_ready(
        condenser.update(state, condenser.sample_batch(batch_key, data), update_key))

  step(0)
  return float(np.median([_timing.timed(lambda: step(i + 1)) for i in range(repeats)]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  shape = tuple(int(v) for v in FLAGS.image_shape)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((FLAGS.n_train,) + shape).astype(np.float32)
  labels = np.arange(FLAGS.n_train) % NUM_CLASSES
  y = np.eye(NUM_CLASSES, dtype=np.float32)[labels] - 1 / NUM_CLASSES
  data = base.Data.create(x, y, labels)
  x_s, y_s, _ = base.initial_support(x, y, labels, FLAGS.ipc, 0)
  common = {"target_batch": FLAGS.target_batch, "kernel": FLAGS.kernel}
  print(f"devices: {jax.local_device_count()} x "
        f"{jax.devices()[0].platform}, jax {jax.__version__}; float32 matmul rate "
        f"{_timing.matmul_rate() / 1e9:.0f} GFLOP/s; support {len(x_s)}, "
        f"target batch {FLAGS.target_batch}, inputs {shape}")
  header = f"{'method':<16}{'s/step':>10}{'speed-up':>10}  config"
  print(header)
  print("-" * len(header))
  baseline = None
  for entry in FLAGS.methods:
    method, config = method_config(entry, common, FLAGS.set)
    seconds = seconds_per_step(method, config, data, x_s, y_s, FLAGS.repeats)
    baseline = seconds if baseline is None else baseline
    shown = {k: v for k, v in dataclasses.asdict(config).items()
             if k in ("kernel", "kernel_type", "width", "n_models", "target_batch", "loss")}
    print(f"{entry:<16}{seconds:>10.4f}{baseline / seconds:>9.1f}x  {shown}")
    sys.stdout.flush()


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
