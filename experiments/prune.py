r"""Data pruning: train from scratch on kept fractions chosen by scores and baselines.

    python experiments/prune.py --dataset=digits --model=convnet --model_kwargs=depth=2 \
        --epochs=10 --workdir=runs/prune_digits
    python experiments/prune.py --dataset=fashion_mnist --methods=random,el2n,forgetting \
        --strategy=hardest,ccs --fractions=1.0,0.5,0.2 --epochs=10 --workdir=runs/prune_fmnist

The run is `kernelcond.prune.experiment.run` (its docstring lists the methods and
the outputs): for every method, fraction kept and seed it selects a subset, trains
`--model` from scratch on it and tests on the full test set. Score methods select
by each `--strategy` (hardest, easiest, ccs; random, herding, kcenter and dynamic
ignore it). Scores are averaged over `--score_inits` networks (or a proxy:
`--proxy_model`, `--proxy_epochs`), computed once and cached under
`--workdir/scores/` or read from `--scores_dir` (files of `experiments/score.py`).
`--budget=steps` (Data Diet's protocol) trains every subset for as many steps as
`--epochs` epochs of the full set. Every setting is checked before anything is
written; a re-run skips finished cells (a finished run says so and prints its
results); another configuration in the same workdir is refused.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _flags  # noqa: E402

from kernelcond.prune import experiment  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_train_flags()
_flags.define_config_flags(experiment.PruneConfig, skip=("train", "data", "fractions"))
flags.DEFINE_list("fractions", None, "Fractions of the training set to keep, each in (0, 1] "
                  "[default " + ",".join(f"{f:g}" for f in experiment.PruneConfig.fractions)
                  + "].")
flags.DEFINE_integer("epochs", 10, "Training epochs (of the full set, with --budget=steps).")
flags.DEFINE_string("workdir", "runs/prune", "Output directory (created; an existing one of "
                    "the same configuration resumes).")
flags.adopt_module_key_flags(_common)
flags.adopt_module_key_flags(_flags)


def build_config() -> experiment.PruneConfig:
  fixed = {}
  if FLAGS.fractions is not None:
    try:
      fixed["fractions"] = tuple(float(f) for f in FLAGS.fractions)
    except ValueError:
      raise ValueError(f"--fractions must be numbers, got {','.join(FLAGS.fractions)!r}") from None
  if FLAGS.methods is not None:
    fixed["methods"] = tuple(m.strip() for m in FLAGS.methods if m.strip())
  return _flags.config_from_flags(
      experiment.PruneConfig, train=_common.train_config_from_flags(epochs=FLAGS.epochs),
      data=_common.data_config(), **fixed)


def _log(name, key, seed, kept, metrics):
  if kept is None:  # finished in an earlier session
    logging.info("%s fraction=%s seed=%d done: %.4f", name, key, seed, metrics)
    return
  logging.info("%s fraction=%s seed=%d kept=%d steps=%d test_accuracy=%.4f", name, key,
               seed, kept, metrics["steps"], metrics["test_accuracy"])


def _print_results(config: experiment.PruneConfig, results: dict) -> None:
  cells = results["results"]
  proxy = results.get("proxy")
  print(f"\nTest accuracy (mean ± std over seeds {list(config.seeds)}) of "
        f"{config.train.model} on {results['dataset']}, budget={config.budget} "
        f"({results['full_steps']} steps for the full set)"
        + (f"; scores by proxy {proxy['model']} {proxy['model_kwargs']} trained "
           f"{proxy['epochs']} epochs" if proxy else ""))
  names = ["full"] + [name for name, _, _ in experiment.cells(config)]
  width = max(len(n) for n in names) + 2
  header = f"{'method':<{width}}" + "".join(f"{f:>17g}" for f in config.fractions)
  print(header + "\n" + "-" * len(header))
  for name in names[1:]:
    row = f"{name:<{width}}"
    for f in config.fractions:
      c = experiment.cell(cells, name, f)
      row += (f"{c['test_accuracy_mean']:.4f} ± {c['test_accuracy_std']:.4f}".rjust(17)
              if c and c.get("test_accuracy") else f"{'-':>17}")
    print(row)
  corr = results.get("score_correlations")
  if corr:
    print("\nSpearman correlation of the scores")
    w = max(len(m) for m in corr["methods"]) + 2
    print(" " * w + "".join(f"{m:>{w}}" for m in corr["methods"]))
    for m, row in zip(corr["methods"], corr["spearman"]):
      print(f"{m:<{w}}" + "".join(f"{r:>{w}.3f}" for r in row))
  print(f"results: {os.path.join(FLAGS.workdir, 'results.json')}\n"
        f"plot: {os.path.join(FLAGS.workdir, 'accuracy_vs_fraction.png')}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  with _common.user_errors():
    config = build_config()
    stored = experiment.finished(config, FLAGS.workdir)
    if stored is not None:
      print(f"already finished: every cell of this command is in {FLAGS.workdir}; "
            "stored results below (nothing was recomputed; a new --workdir runs it again).")
      _print_results(config, stored)
      return
    dataset = _common.load_data_from_flags()
    results = experiment.run(config, dataset, FLAGS.workdir, log=_log)
  _print_results(config, results)


if __name__ == "__main__":
  app.run(main, flags_parser=_common.parse_flags)
