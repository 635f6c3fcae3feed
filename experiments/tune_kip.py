r"""Choose KIP hyper-parameters on a validation split, then report test accuracy.

    python experiments/tune_kip.py --dataset=fashion_mnist --ipc=10 \
        --grid='[{"lr": 0.01}, {"lr": 0.04}, {"lr": 0.04, "lr_schedule": "cosine"}]' \
        --out=runs/tune_fmnist_ipc10.jsonl

`--val_size` training examples (a fixed random draw) are held out: the support
set is initialised from, and target batches are drawn from, the remaining
training examples only, and every configuration is scored by KRR accuracy on
the held-out examples. The test set is only evaluated at the end of each run and
plays no part in choosing; `--select` prints the configuration with the best
validation accuracy and its test accuracy.

`--grid` is a JSON list (inline or a path to a .json file) of objects whose keys
override the base settings given by flags: `kernel`, `lr`, `reg`, `steps`,
`target_batch`, `kernel_type`, `learn_labels`, `lr_schedule` (cosine decays
over `steps`), `optimizer`, `init`, `zca`, `seed`. Each finished configuration
appends one JSON line to `--out` (validation accuracy at `--eval_points`
points of the run, final test accuracy, natural-subset accuracies, seconds per
step); re-running skips configurations already in the file, so a killed search
resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
flags.DEFINE_integer("ipc", 10, "Images per class.")
flags.DEFINE_string("kernel", "fc3", "Base kernel spec.")
flags.DEFINE_enum("kernel_backend", "auto", ["auto", "nt", "native"], "Kernel backend.")
flags.DEFINE_float("lr", 0.01, "Base Adam learning rate.")
flags.DEFINE_float("reg", 1e-6, "Base relative ridge.")
flags.DEFINE_integer("steps", 1000, "Base number of KIP steps.")
flags.DEFINE_integer("target_batch", 5000, "Base target batch.")
flags.DEFINE_string("grid", "[{}]", "JSON list of overrides (inline, or a .json path).")
flags.DEFINE_integer("val_size", 10000, "Training examples held out for validation.")
flags.DEFINE_integer("eval_points", 4, "Validation evaluations per run (the last at the end).")
flags.DEFINE_integer("seed", 0, "Base seed (support init, targets, validation split).")
flags.DEFINE_string("out", None, "JSONL file of results (appended; resumable).")
flags.DEFINE_bool("select", True, "Print the best configuration by validation accuracy.")
flags.DEFINE_list("summarize", [], "Run nothing: print a markdown table (per dataset "
                  "and ipc, best validation accuracy first) of these JSONL result files.")

_KEYS = ("kernel", "lr", "reg", "steps", "target_batch", "kernel_type", "learn_labels",
         "lr_schedule", "optimizer", "init", "zca", "seed")


def _parse_grid(text: str) -> list[dict]:
  if text.endswith(".json") and os.path.exists(text):
    with open(text) as f:
      text = f.read()
  try:
    grid = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"--grid is not valid JSON: {e}") from None
  if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
    raise ValueError("--grid must be a JSON list of objects")
  for g in grid:
    unknown = sorted(set(g) - set(_KEYS))
    if unknown:
      raise ValueError(f"--grid: unknown key(s) {unknown}; valid: {', '.join(_KEYS)}")
  return grid


def _base_config() -> dict:
  """The settings a grid entry overrides (from flags; fixed for the rest)."""
  return {"kernel": FLAGS.kernel, "lr": FLAGS.lr, "reg": FLAGS.reg, "steps": FLAGS.steps,
          "target_batch": FLAGS.target_batch, "kernel_type": "ntk", "learn_labels": True,
          "lr_schedule": "constant", "optimizer": "adam", "init": "real", "zca": FLAGS.zca,
          "seed": FLAGS.seed}


def _full_config(overrides: dict) -> dict:
  return {**_base_config(), **overrides, "dataset": FLAGS.dataset, "ipc": FLAGS.ipc,
          "val_size": FLAGS.val_size}


def _key(config: dict) -> str:
  return json.dumps(config, sort_keys=True)


def _done_keys(path: str) -> set[str]:
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    return {_key(json.loads(line)["config"]) for line in f if line.strip()}


_DATA_CACHE: dict = {}
_CHUNK = 1000  # KIP steps per jitted call


def _data(zca: float):
  """The dataset preprocessed with ZCA strength `zca` (cached per strength)."""
  if zca not in _DATA_CACHE:
    _DATA_CACHE[zca] = _common.load_data_from_flags(zca=zca)
  return _DATA_CACHE[zca]


def _run_one(config: dict, backend: str) -> dict:
  import jax
  import jax.numpy as jnp
  from kernelcond import kernels
  from kernelcond.condense import kip
  from kernelcond import krr
  from kernelcond import preprocess

  data = _data(float(config["zca"]))
  if FLAGS.val_size >= data.num_train:
    raise ValueError(f"--val_size={FLAGS.val_size} leaves no training examples "
                     f"({data.num_train} in {data.name})")
  # The split depends on the base seed only, so all configurations share it.
  perm = np.random.default_rng(FLAGS.seed + 7919).permutation(data.num_train)
  val_idx, pool_idx = perm[:FLAGS.val_size], perm[FLAGS.val_size:]
  x_pool, labels_pool = data.x_train[pool_idx], data.y_train[pool_idx]
  y_pool = preprocess.one_hot(labels_pool, data.num_classes, center=True)
  x_val, labels_val = data.x_train[val_idx], data.y_train[val_idx]

  seed = int(config["seed"])
  kip_config = kip.KipConfig(lr=config["lr"], reg=config["reg"],
                             target_batch=config["target_batch"],
                             learn_labels=config["learn_labels"], kernel=config["kernel_type"],
                             optimizer=config["optimizer"], lr_schedule=config["lr_schedule"],
                             decay_steps=config["steps"])
  kernel_fn = kernels.make_kernel_fn(kernels.get_spec(config["kernel"]), backend)
  get = "ntk" if config["kernel_type"] == "sample" else config["kernel_type"]
  x_nat, y_nat, _ = kip.init_support(x_pool, y_pool, labels_pool, FLAGS.ipc, seed, "real",
                                     data.num_classes)
  x_init, y_init, _ = kip.init_support(x_pool, y_pool, labels_pool, FLAGS.ipc, seed,
                                       config["init"], data.num_classes)

  def acc(x_s, y_s, x, labels):
    return krr.evaluate(kernel_fn, x_s, y_s, x, labels, reg=config["reg"], get=get,
                        batch_size=1000)["accuracy"]

  optimizer = kip.make_optimizer(kip_config)
  state = kip.init_state(x_init, y_init, optimizer, seed=seed)
  run = kip.make_run(kernel_fn, kip_config, optimizer, max_steps=_CHUNK)
  x_pool_d, y_pool_d = jnp.asarray(x_pool), jnp.asarray(y_pool)
  base_key = jax.random.PRNGKey(seed + 1)
  steps = int(config["steps"])
  points = sorted({max(1, round(steps * (i + 1) / FLAGS.eval_points))
                   for i in range(FLAGS.eval_points)})
  curve, seconds = [], 0.0
  for point in points:
    t0 = time.perf_counter()
    loss = []
    while int(state.step) < point:
      n = min(point - int(state.step), _CHUNK)
      state, metrics = run(state, x_pool_d, y_pool_d, base_key, n)
      loss.append(np.asarray(metrics["loss"])[:n])
    loss = np.concatenate(loss)
    seconds_chunk = time.perf_counter() - t0
    if point != points[0]:  # the first chunk includes compilation
      seconds += seconds_chunk
    if not np.all(np.isfinite(loss)):
      raise FloatingPointError(f"KIP loss is not finite by step {point}")
    curve.append({"step": point, "val_accuracy": acc(state.x_support, state.y_support,
                                                     x_val, labels_val),
                  "loss": float(loss[-1])})
  timed_steps = steps - points[0]
  return {
      "config": config,
      "val_accuracy": curve[-1]["val_accuracy"],
      "test_accuracy": acc(state.x_support, state.y_support, data.x_test, data.y_test),
      "natural_val_accuracy": acc(x_nat, y_nat, x_val, labels_val),
      "natural_test_accuracy": acc(x_nat, y_nat, data.x_test, data.y_test),
      "curve": curve,
      "seconds_per_step": seconds / timed_steps if timed_steps else None,
      "devices": f"{jax.local_device_count()} x {jax.devices()[0].platform}",
      "backend": backend,
  }


def _select(path: str) -> None:
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  records = [r for r in records if r["config"]["ipc"] == FLAGS.ipc
             and r["config"]["dataset"] == FLAGS.dataset]
  if not records:
    return
  best = max(records, key=lambda r: r["val_accuracy"])
  print(f"\n{len(records)} configurations; best by validation accuracy:")
  print(f"  {json.dumps({k: best['config'][k] for k in _KEYS})}")
  print(f"  val {best['val_accuracy']:.4f}, test {best['test_accuracy']:.4f} "
        f"(natural: val {best['natural_val_accuracy']:.4f}, "
        f"test {best['natural_test_accuracy']:.4f})")


def summarize(paths) -> str:
  """Markdown tables of tune_kip.py results: one per (dataset, ipc), best validation first."""
  records = []
  for path in paths:
    with open(path) as f:
      records += [json.loads(line) for line in f if line.strip()]
  base = {k: v for k, v in _base_config().items() if k != "steps"}  # steps: own column
  base_text = (f"{base['kernel']}, lr {base['lr']} {base['lr_schedule']}, "
               f"target batch {base['target_batch']}")
  out = []
  groups = sorted({(r["config"]["dataset"], r["config"]["ipc"]) for r in records})
  for dataset, ipc in groups:
    rows = sorted((r for r in records if (r["config"]["dataset"], r["config"]["ipc"])
                   == (dataset, ipc) and "error" not in r),
                  key=lambda r: -r["val_accuracy"])
    out += [f"#### {dataset}, {ipc} images per class", "",
            f"| settings (differences from {base_text}) | steps "
            "| val acc | test acc | natural test acc | s/step | devices |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
      c = r["config"]
      diff = ", ".join(f"{k}={c[k]}" for k in base if c.get(k) != base[k]) or "(base)"
      per_step = r.get("seconds_per_step")
      out.append(f"| {diff} | {c['steps']} | {100 * r['val_accuracy']:.2f} | "
                 f"{100 * r['test_accuracy']:.2f} | {100 * r['natural_test_accuracy']:.2f} | "
                 f"{'–' if per_step is None else f'{per_step * 1e3:.2f} ms'} | "
                 f"{r.get('devices', '?')} |")
    out.append("")
  return "\n".join(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.summarize:
    print(summarize(FLAGS.summarize))
    return
  if not FLAGS.out:
    raise app.UsageError("--out is required (or --summarize to only print results)")
  with _common.user_errors():
    from kernelcond import kernels
    grid = _parse_grid(FLAGS.grid)
    configs = [_full_config(g) for g in grid]
    backends = [kernels.resolve_backend(FLAGS.kernel_backend, config["kernel"])
                for config in configs]  # fails on a bad spec before any run
    done = _done_keys(FLAGS.out)
    if os.path.dirname(FLAGS.out):
      os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
    for i, config in enumerate(configs):
      if _key(config) in done:
        continue
      t0 = time.time()
      try:
        record = _run_one(config, backends[i])
      except FloatingPointError as e:
        record = {"config": config, "val_accuracy": float("-inf"), "error": str(e)}
      record["wall_time_s"] = time.time() - t0
      with open(FLAGS.out, "a") as f:
        f.write(json.dumps(record) + "\n")
      summary = {k: v for k, v in config.items() if k in grid[i]}
      if "error" in record:
        print(f"[{i + 1}/{len(configs)}] {summary}: {record['error']}", flush=True)
      else:
        print(f"[{i + 1}/{len(configs)}] {summary}: val {record['val_accuracy']:.4f} "
              f"test {record['test_accuracy']:.4f} natural {record['natural_test_accuracy']:.4f}"
              f" ({record['wall_time_s']:.0f} s)", flush=True)
    if FLAGS.select:
      _select(FLAGS.out)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
