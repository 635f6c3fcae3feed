r"""Data pruning: train from scratch on kept fractions chosen by scores and baselines.

    python experiments/prune.py --dataset=digits --model=convnet --model_kwargs=depth=2 \
        --epochs=10 --workdir=/tmp/prune_digits
    python experiments/prune.py --dataset=fashion_mnist --methods=random,el2n,forgetting \
        --fractions=1.0,0.7,0.5,0.3 --epochs=10 --score_epochs=5 --workdir=runs/prune_fmnist

For every method, fraction kept and seed, selects a subset of the (preprocessed)
training set, trains `--model` from scratch on it and tests on the full test set.
Methods: 'random' (class-stratified), 'el2n', 'grand', 'forgetting' (keep the highest
scores, hardest first, after skipping the `--offset` hardest fraction; Data Diet,
arXiv:2107.07075; Toneva et al., arXiv:1812.05159), 'herding' (per-class mean
matching) and 'kcenter' (per-class greedy k-center, Sener & Savarese,
arXiv:1708.00489) on penultimate features of a network trained `--score_epochs`.

Scores are averaged over `--score_inits` networks trained `--score_epochs` epochs on
the full set (seeds `--score_seed`, +1, ...), computed once and cached under
`--workdir/scores/`, or read from `--scores_dir` (files of `experiments/score.py`;
a file for another dataset is refused). Fraction 1.0 is the full training set, one
cell ('full') shared by all methods.

`--budget=steps` (default, Data Diet's protocol): every subset is trained for as
many optimisation steps as `--epochs` epochs of the full set; `--budget=epochs`:
`--epochs` passes over the subset (fewer steps for smaller subsets).

Writes `--workdir/config.json` (a workdir belongs to one configuration),
`results.json` after every finished cell (a re-run skips finished cells):
`results[method][fraction]` = {seeds, test_accuracy (per seed), test_accuracy_mean,
test_accuracy_std, n_kept, steps, wall_time_s}, plus total wall time and library
versions; per-cell checkpoints under `checkpoints/` (a killed cell resumes); and
`accuracy_vs_fraction.png` (mean test accuracy with std error bars). Prints a table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

METHODS = ("random", "el2n", "grand", "forgetting", "herding", "kcenter")
SCORE_METHODS = ("el2n", "grand", "forgetting")
FEATURE_METHODS = ("herding", "kcenter")

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_train_flags()
flags.DEFINE_list("methods", list(METHODS), f"Selection methods, any of {', '.join(METHODS)}.")
flags.DEFINE_list("fractions", ["1.0", "0.8", "0.6", "0.4", "0.2"],
                  "Fractions of the training set to keep, each in (0, 1].")
flags.DEFINE_list("seeds", ["0", "1"], "Training seeds (and seeds of random / k-center).")
flags.DEFINE_enum("budget", "steps", ["steps", "epochs"],
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


def _parse_lists():
  methods = [m.strip() for m in FLAGS.methods if m.strip()]
  unknown = sorted(set(methods) - set(METHODS))
  if unknown or not methods:
    raise ValueError(f"Unknown method(s) {unknown} in --methods; valid: {', '.join(METHODS)}")
  try:
    fractions = [float(f) for f in FLAGS.fractions]
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError as e:
    raise ValueError(f"--fractions must be numbers and --seeds integers: {e}") from None
  bad = [f for f in fractions if not 0 < f <= 1]
  if bad or not fractions:
    raise ValueError(f"--fractions must lie in (0, 1], got {bad or fractions}")
  if not seeds:
    raise ValueError("--seeds is empty")
  if not 0 <= FLAGS.offset < 1:
    raise ValueError(f"--offset must lie in [0, 1), got {FLAGS.offset}")
  return methods, sorted(set(fractions), reverse=True), seeds


def _get_scores(method, data, config, fingerprint):
  """Scores of `method`: read from --scores_dir, the workdir cache, or computed."""
  from kernelcond.prune import scores

  if FLAGS.scores_dir:
    path = os.path.join(FLAGS.scores_dir, f"scores_{method}.npz")
    values, meta = scores.load_scores(path, fingerprint, method)
    logging.info("Read %s scores from %s", method, path)
    return values, {"path": path, **meta["config"]}
  path = os.path.join(FLAGS.workdir, "scores", f"scores_{method}.npz")
  score_config = {"method": method, "epochs": FLAGS.score_epochs, "num_inits": FLAGS.score_inits,
                  "seed": FLAGS.score_seed, "last_layer_only": FLAGS.last_layer_only}
  if os.path.exists(path):
    values, _ = scores.load_scores(path, fingerprint, method)
    logging.info("Using cached %s scores %s", method, path)
  else:
    t0 = time.time()
    logging.info("Computing %s: %d init(s) x %d epoch(s)", method, FLAGS.score_inits,
                 FLAGS.score_epochs)
    values = scores.compute_scores(method, data.x_train, data.y_train, config, FLAGS.score_inits,
                                   FLAGS.score_epochs, FLAGS.score_seed,
                                   num_classes=data.num_classes,
                                   last_layer_only=FLAGS.last_layer_only)
    scores.save_scores(path, values, method=method, fingerprint=fingerprint,
                       config={**score_config, "train": config.to_dict(),
                               "wall_time_s": time.time() - t0})
    logging.info("%s scores computed in %.1fs", method, time.time() - t0)
  return values, {"path": path, **score_config}


def _get_features(data, config, fingerprint):
  """Penultimate features for herding / k-center, cached in the workdir."""
  from kernelcond import io
  from kernelcond.prune import scores

  path = os.path.join(FLAGS.workdir, "scores", "features.npz")
  if os.path.exists(path):
    cached = io.load_npz(path)
    if "fingerprint" in cached and json.loads(str(cached["fingerprint"])) == fingerprint:
      return cached["features"]
    raise ValueError(f"{path} was computed for another dataset; use a new --workdir")
  t0 = time.time()
  features = scores.compute_features(data.x_train, data.y_train, config, FLAGS.score_epochs,
                                     FLAGS.score_seed, num_classes=data.num_classes)
  io.save_npz(path, features=features, fingerprint=fingerprint)
  logging.info("Features %s computed in %.1fs", features.shape, time.time() - t0)
  return features


def _select(method, fraction, seed, data, score_values, features):
  from kernelcond.prune import select

  if method == "full":
    return np.arange(data.num_train)
  if method == "random":
    return select.select("random", fraction, labels=data.y_train, seed=seed)
  if method in SCORE_METHODS:
    return select.select("score", fraction, scores=score_values[method], offset=FLAGS.offset)
  return select.select(method, fraction, labels=data.y_train, features=features, seed=seed)


def _plot(results, methods, fractions, path, model):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  full = results.get("full", {}).get("1")
  for method in methods:
    xs, means, stds = [], [], []
    for f in fractions:
      cell = full if f == 1.0 else results.get(method, {}).get(f"{f:g}")
      if cell and cell.get("test_accuracy"):
        xs.append(f)
        means.append(cell["test_accuracy_mean"])
        stds.append(cell["test_accuracy_std"])
    if xs:
      ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=method)
  ax.set_xlabel("fraction of training set kept")
  ax.set_ylabel("test accuracy")
  ax.invert_xaxis()
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(f"{FLAGS.dataset}: {model}, budget={FLAGS.budget}", fontsize=9)
  fig.tight_layout()
  tmp = path + ".tmp"
  fig.savefig(tmp, format="png", dpi=90)
  plt.close(fig)
  os.replace(tmp, path)


def _print_table(results, methods, fractions):
  header = f"{'method':<11}" + "".join(f"{f:>17g}" for f in fractions)
  print(header)
  print("-" * len(header))
  for method in methods:
    row = f"{method:<11}"
    for f in fractions:
      cell = results.get("full", {}).get("1") if f == 1.0 else results.get(method, {}).get(f"{f:g}")
      if cell and cell.get("test_accuracy"):
        row += f"{cell['test_accuracy_mean']:.4f} ± {cell['test_accuracy_std']:.4f}".rjust(17)
      else:
        row += f"{'-':>17}"
    print(row)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start = time.time()
  with _common.user_errors():
    from kernelcond import io
    from kernelcond.nets import train

    methods, fractions, seeds = _parse_lists()
    config = _common.train_config_from_flags(epochs=FLAGS.epochs)
    if "forgetting" in methods and FLAGS.score_epochs < 1 and not FLAGS.scores_dir:
      raise ValueError("forgetting needs --score_epochs >= 1")
    run_config = {
        "experiment": "prune", **_common.data_config(), "methods": methods,
        "fractions": fractions, "seeds": seeds, "budget": FLAGS.budget, "train": config.to_dict(),
        "score_epochs": FLAGS.score_epochs, "score_inits": FLAGS.score_inits,
        "score_seed": FLAGS.score_seed, "last_layer_only": FLAGS.last_layer_only,
        "offset": FLAGS.offset, "scores_dir": FLAGS.scores_dir,
    }
    io.check_run_config(FLAGS.workdir, run_config, ignore=("methods", "fractions", "seeds"))
    data = _common.load_data_from_flags()
    fingerprint = data.fingerprint()
    full_steps, _, _ = train.schedule_steps(config, data.num_train)

    path = os.path.join(FLAGS.workdir, "results.json")
    results = io.load_json(path) if os.path.exists(path) else {}
    cells = results.setdefault("results", {})
    elapsed_before = results.get("wall_time_s", 0.0)
    score_values, score_meta, features = {}, results.get("scores", {}), None

    def save():
      results.update(config=run_config, dataset=data.name, fingerprint=fingerprint,
                     n_train=data.num_train, n_test=data.num_test, full_steps=full_steps,
                     scores=score_meta, wall_time_s=elapsed_before + time.time() - start,
                     versions=_common.versions())
      io.save_json(path, results)

    for fraction in fractions:
      for method in (["full"] if fraction == 1.0 else methods):
        key = f"{fraction:g}"
        cell = cells.setdefault(method, {}).setdefault(
            key, {"seeds": [], "test_accuracy": [], "wall_time_s": []})
        for seed in seeds:
          if seed in cell["seeds"]:
            logging.info("%s fraction=%s seed=%d done: %.4f", method, key, seed,
                         cell["test_accuracy"][cell["seeds"].index(seed)])
            continue
          if method in SCORE_METHODS and method not in score_values:
            score_values[method], score_meta[method] = _get_scores(method, data, config,
                                                                   fingerprint)
          if method in FEATURE_METHODS and features is None:
            features = _get_features(data, config, fingerprint)
          t0 = time.time()
          idx = _select(method, fraction, seed, data, score_values, features)
          steps = full_steps if FLAGS.budget == "steps" else None
          cell_config = dataclasses.replace(config, steps=steps, seed=seed)
          ckpt = os.path.join(FLAGS.workdir, "checkpoints", f"{method}_{key}_seed{seed}")
          _, metrics = train.train_and_evaluate(
              cell_config, data.x_train[idx], data.y_train[idx], data.x_test, data.y_test,
              num_classes=data.num_classes, checkpoint_dir=ckpt,
              checkpoint_every=FLAGS.checkpoint_every)
          logging.info("%s fraction=%s seed=%d kept=%d steps=%d test_accuracy=%.4f (%.1fs)",
                       method, key, seed, len(idx), metrics["steps"], metrics["test_accuracy"],
                       time.time() - t0)
          cell["seeds"].append(seed)
          cell["test_accuracy"].append(metrics["test_accuracy"])
          cell["wall_time_s"].append(time.time() - t0)
          cell.update(n_kept=int(len(idx)), steps=int(metrics["steps"]),
                      epochs=float(metrics["epochs"]),
                      test_accuracy_mean=float(np.mean(cell["test_accuracy"])),
                      test_accuracy_std=float(np.std(cell["test_accuracy"])))
          save()
    save()
    png = os.path.join(FLAGS.workdir, "accuracy_vs_fraction.png")
    _plot(cells, methods, fractions, png, config.model)

  print(f"\nTest accuracy (mean ± std over seeds {seeds}) of {config.model} on {data.name}, "
        f"budget={FLAGS.budget} ({full_steps} steps for the full set)")
  _print_table(cells, methods, fractions)
  print(f"results: {path}\nplot: {png}")


if __name__ == "__main__":
  app.run(main)
