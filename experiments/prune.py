r"""Data pruning: train from scratch on kept fractions chosen by scores and baselines.

    python experiments/prune.py --dataset=digits --model=convnet --model_kwargs=depth=2 \
        --epochs=10 --workdir=/tmp/prune_digits
    python experiments/prune.py --dataset=fashion_mnist --methods=random,el2n,forgetting \
        --fractions=1.0,0.7,0.5,0.3 --epochs=10 --score_epochs=5 --workdir=runs/prune_fmnist

The run is `kernelcond.prune.experiment.run` (its docstring lists the methods and
the outputs): for every method, fraction kept and seed it selects a subset, trains
`--model` from scratch on it and tests on the full test set. Scores are averaged
over `--score_inits` networks, computed once and cached under `--workdir/scores/`
or read from `--scores_dir` (files of `experiments/score.py`). `--budget=steps`
(Data Diet's protocol) trains every subset for as many steps as `--epochs` epochs
of the full set. A re-run skips finished cells; another configuration is refused.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

from kernelcond.prune import experiment  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_train_flags()
flags.DEFINE_list("methods", list(experiment.PruneConfig.methods),
                  f"Selection methods, any of {', '.join(experiment.methods())}.")
flags.DEFINE_list("fractions", ["1.0", "0.8", "0.6", "0.4", "0.2"],
                  "Fractions of the training set to keep, each in (0, 1].")
flags.DEFINE_list("seeds", ["0", "1"], "Training seeds (and seeds of random / k-center).")
flags.DEFINE_enum("budget", "steps", list(experiment.BUDGETS),
                  "steps: as many SGD steps as --epochs on the full set; epochs: --epochs "
                  "passes over each subset.")
flags.DEFINE_integer("epochs", 10, "Training epochs (of the full set, with --budget=steps).")
flags.DEFINE_integer("score_epochs", 5, "Epochs of training before scoring / embedding "
                     "(0: at initialisation; forgetting needs >= 1).")
flags.DEFINE_integer("score_inits", 2, "Initialisations the scores are averaged over.")
flags.DEFINE_integer("score_seed", 100, "Seed of the first scoring network.")
flags.DEFINE_bool("last_layer_only", False, "GraNd: gradient of the classifier only.")
flags.DEFINE_float("offset", 0.0, "Score methods: fraction of the hardest examples skipped.")
flags.DEFINE_string("scores_dir", None, "Read scores_<method>.npz from here instead of "
                    "computing them (experiments/score.py output).")
flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints of a cell.")
flags.DEFINE_string("workdir", None, "Output directory (created; an existing one resumes).")
flags.mark_flag_as_required("workdir")
flags.adopt_module_key_flags(_common)


def build_config() -> experiment.PruneConfig:
  try:
    fractions = tuple(float(f) for f in FLAGS.fractions)
    seeds = tuple(int(s) for s in FLAGS.seeds)
  except ValueError as e:
    raise ValueError(f"--fractions must be numbers and --seeds integers: {e}") from None
  return experiment.PruneConfig(
      train=_common.train_config_from_flags(epochs=FLAGS.epochs),
      methods=tuple(m.strip() for m in FLAGS.methods if m.strip()), fractions=fractions,
      seeds=seeds, budget=FLAGS.budget, score_epochs=FLAGS.score_epochs,
      score_inits=FLAGS.score_inits, score_seed=FLAGS.score_seed,
      last_layer_only=FLAGS.last_layer_only, offset=FLAGS.offset, scores_dir=FLAGS.scores_dir,
      checkpoint_every=FLAGS.checkpoint_every, data=_common.data_config())


def _log(method, key, seed, kept, metrics):
  if kept is None:  # finished in an earlier session
    logging.info("%s fraction=%s seed=%d done: %.4f", method, key, seed, metrics)
    return
  logging.info("%s fraction=%s seed=%d kept=%d steps=%d test_accuracy=%.4f", method, key,
               seed, kept, metrics["steps"], metrics["test_accuracy"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  with _common.user_errors():
    config = build_config()
    dataset = _common.load_data_from_flags()
    results = experiment.run(config, dataset, FLAGS.workdir, log=_log)
  cells = results["results"]
  print(f"\nTest accuracy (mean ± std over seeds {list(config.seeds)}) of "
        f"{config.train.model} on {dataset.name}, budget={config.budget} "
        f"({results['full_steps']} steps for the full set)")
  header = f"{'method':<11}" + "".join(f"{f:>17g}" for f in config.fractions)
  print(header + "\n" + "-" * len(header))
  for method in config.methods:
    row = f"{method:<11}"
    for f in config.fractions:
      c = experiment.cell(cells, method, f)
      row += (f"{c['test_accuracy_mean']:.4f} ± {c['test_accuracy_std']:.4f}".rjust(17)
              if c and c.get("test_accuracy") else f"{'-':>17}")
    print(row)
  print(f"results: {os.path.join(FLAGS.workdir, 'results.json')}\n"
        f"plot: {os.path.join(FLAGS.workdir, 'accuracy_vs_fraction.png')}")


if __name__ == "__main__":
  app.run(main)
