r"""Choose condensation settings on a validation split, then report test accuracy.

    python experiments/tune_kip.py --dataset=fashion_mnist --ipc=10 \
        --grid='[{"lr": 0.01}, {"lr": 0.04, "lr_schedule": "constant"}]' --out=runs/tune.jsonl
    python experiments/tune_kip.py --summarize=runs/tune.jsonl

`--val_size` training examples (a fixed draw that depends on `--seed` only) are
held out: the support set is drawn from, and target batches come from, the rest.
Every grid entry overrides fields of the method's config (`--method`, default
KIP), `seed` or `zca`, and runs as one `kernelcond.experiment.distill` in
`<out without .jsonl>/<n>/` (resumable: a killed search resumes). The validation
accuracy (KRR on the held-out examples, or with `--select_by=<protocol>` the
validation accuracy of finite networks trained on the set under `--protocols`)
chooses; the test set is read once per run (KRR), at its end, and plays no part in
choosing. Each finished entry appends one line to `--out` naming its workdir;
evaluate the chosen set's networks on the test set with `experiments/evaluate.py
--support=<workdir>/distilled.npz`.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _flags  # noqa: E402
import _run  # noqa: E402

from kernelcond import condense  # noqa: E402
from kernelcond import evaluate  # noqa: E402
from kernelcond import experiment  # noqa: E402
from kernelcond import io  # noqa: E402
from kernelcond import tuning  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
flags.DEFINE_enum("method", "kip", list(condense.METHODS.names()), "Condensation method.")
flags.DEFINE_integer("ipc", 10, "Examples per class.")
flags.DEFINE_integer("seed", 0, "Base seed (support draw, batches, validation split).")
flags.DEFINE_integer("val_size", 10000, "Training examples held out for validation.")
flags.DEFINE_integer("eval_points", 4, "Validation evaluations per run (the last at the end).")
flags.DEFINE_string("grid", "[{}]", "JSON list of overrides (inline, or a .json path).")
flags.DEFINE_string("out", "runs/tune_kip.jsonl", "JSONL file of results (appended; "
                    "resumable); the runs go to a directory of the same name without .jsonl.")
flags.DEFINE_list("summarize", [], "Run nothing: print markdown tables of these JSONL files.")
flags.DEFINE_list("protocols", [], "Also train finite networks (these protocols) on the natural "
                  "and condensed sets and score them on the validation split.")
flags.DEFINE_list("net_seeds", ["0"], "Network seeds of --protocols.")
flags.DEFINE_integer("net_epochs", 0, "Epochs of --protocols' networks (0: the protocol's own).")
flags.DEFINE_string("select_by", "krr", "What chooses the best entry: 'krr' (validation KRR "
                    "accuracy) or a protocol of --protocols (its validation accuracy).")
_flags.define_config_flags(*(condense.METHODS.get(n).config_cls for n in condense.METHODS.names()),
                           labels=condense.METHODS.names())
flags.adopt_module_key_flags(_common)
flags.adopt_module_key_flags(_flags)


def _entry_config(overrides: dict) -> experiment.DistillConfig:
  method = condense.METHODS.get(FLAGS.method)
  overrides = dict(overrides)
  seed = int(overrides.pop("seed", FLAGS.seed))
  overrides.pop("zca", None)
  base = _flags.config_from_flags(method.config_cls)
  method_config = condense.base.replace_config(base, **overrides)
  steps = getattr(method_config, "steps", 1)
  ev = evaluate.EvalConfig(protocols=(), **evaluate.kernel_fields(method_config))
  return experiment.DistillConfig(
      method=FLAGS.method, method_config=method_config, ipc=FLAGS.ipc, seed=seed,
      val_size=FLAGS.val_size, eval_every=max(1, steps // FLAGS.eval_points),
      checkpoint_every=max(1, steps // FLAGS.eval_points), evaluation=ev,
      data=_common.data_config())


def _network_config(config: experiment.DistillConfig) -> evaluate.EvalConfig:
  """The evaluation of --protocols' networks on the validation split (checked up front)."""
  try:
    seeds = tuple(int(s) for s in FLAGS.net_seeds)
  except ValueError:
    raise ValueError(f"--net_seeds must be integers, got {','.join(FLAGS.net_seeds)!r}") from None
  return dataclasses.replace(config.evaluation, protocols=tuple(FLAGS.protocols),
                             net_seeds=seeds, net_epochs=FLAGS.net_epochs)


def _check_out(path: str) -> None:
  """--out must be a file that can be appended to (checked before any run writes)."""
  if os.path.isdir(path):
    raise ValueError(f"--out={path} is a directory; give a .jsonl file")
  io.check_workdir(os.path.dirname(os.path.abspath(path)), "the directory of --out")
  if os.path.exists(path) and not os.access(path, os.W_OK):
    raise ValueError(f"--out={path} is not writable")


def _validation_networks(config, dataset, workdir: str) -> dict:
  """Validation accuracy of --protocols networks on the natural and the condensed set."""
  if not FLAGS.protocols:
    return {}
  from kernelcond import support
  parts = experiment.split(config, dataset)
  ev = _network_config(config)
  x_s, y_s, _ = support.load_support(os.path.join(workdir, "distilled.npz"), dataset)
  sets = {"natural": (parts.x_natural, parts.y_natural, parts.y_natural.argmax(-1)),
          "distilled": (x_s, y_s, evaluate.hard_labels(y_s, parts.y_natural))}
  out = {}
  for name, (x, y, labels) in sets.items():
    result = evaluate.evaluate_support(ev, x, y, parts.x_val, parts.y_val,
                                       num_classes=dataset.num_classes, labels=labels)
    for protocol, r in result["networks"].items():
      out.setdefault(protocol, {})[name] = r["mean"]
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.summarize:
    print(tuning.summarize(FLAGS.summarize))
    return
  if not FLAGS.out:
    raise app.UsageError("--out is required (or --summarize to only print results)")
  with _common.user_errors():
    if FLAGS.select_by != "krr" and FLAGS.select_by not in FLAGS.protocols:
      raise ValueError(f"--select_by={FLAGS.select_by} must be 'krr' or one of --protocols")
    if FLAGS.eval_points < 1:
      raise ValueError(f"--eval_points must be >= 1, got {FLAGS.eval_points}")
    _check_out(FLAGS.out)
    grid = tuning.parse_grid(FLAGS.grid)
    configs = [_entry_config(g) for g in grid]  # every entry validated before any run
    for config in configs:
      _network_config(config)
    root = FLAGS.out[:-len(".jsonl")] if FLAGS.out.endswith(".jsonl") else FLAGS.out + ".runs"
    io.check_workdir(root, "the runs directory of --out")
    done = tuning.done_entries(FLAGS.out)
    datasets = {}
  for i, (overrides, config) in enumerate(zip(grid, configs)):
    entry = {**dataclasses.asdict(config.method_config), "seed": config.seed,
             "zca": overrides.get("zca", FLAGS.zca), "dataset": FLAGS.dataset,
             "ipc": FLAGS.ipc, "val_size": FLAGS.val_size, "method": FLAGS.method}
    if tuning.entry_key(entry) in done:
      continue
    zca = float(entry["zca"])
    with _common.user_errors():
      if zca not in datasets:
        datasets[zca] = _common.load_data_from_flags(zca=zca)
    workdir = os.path.join(root, tuning.entry_name(entry))
    with _run.run_errors():
      try:
        results = experiment.distill(config, datasets[zca], workdir)
        record = tuning.record(entry, results, workdir)
        record["val_networks"] = _validation_networks(config, datasets[zca], workdir)
      except FloatingPointError as e:
        record = {"config": entry, "val_accuracy": float("-inf"), "error": str(e)}
    tuning.append(FLAGS.out, record)
    shown = {k: entry[k] for k in overrides}
    print(f"[{i + 1}/{len(configs)}] {shown}: " + tuning.record_line(record), flush=True)
  best = tuning.best(FLAGS.out, select_by=FLAGS.select_by, dataset=FLAGS.dataset, ipc=FLAGS.ipc)
  if best:
    print(f"\nbest by validation accuracy: {tuning.record_line(best)}\n  {best['config']}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main, flags_parser=_common.parse_flags)
