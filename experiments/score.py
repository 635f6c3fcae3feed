r"""Score every training example's difficulty: EL2N, GraNd or forgetting.

    python experiments/score.py --dataset=digits --method=el2n --epochs=5 \
        --num_inits=2 --model=convnet --model_kwargs=depth=2 --workdir=/tmp/scores_digits
    python experiments/score.py --dataset=fashion_mnist --method=grand --epochs=0 \
        --num_inits=4 --workdir=runs/scores_fmnist

The network (`--model`, `--model_kwargs`) is trained from scratch `--epochs` epochs on
the whole (preprocessed) training set from `--num_inits` initialisations (seeds
`--seed`, `--seed`+1, ...) and the scores are averaged (Data Diet, arXiv:2107.07075;
forgetting: Toneva et al., arXiv:1812.05159). `--epochs=0` scores at initialisation.

Writes `--workdir/config.json` (a workdir belongs to one configuration) and
`--workdir/scores_<method>.npz` (`scores` in dataset order, `method`, the dataset
`fingerprint`, `n`, `config`), which `experiments/prune.py --scores_dir` reads and
refuses for another dataset. A re-run with the scores file present does nothing.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_train_flags()
flags.DEFINE_enum("method", "el2n", ["el2n", "grand", "forgetting"], "Score to compute.")
flags.DEFINE_integer("num_inits", 2, "Independent initialisations to average over.")
flags.DEFINE_integer("epochs", 5, "Training epochs before scoring (0: at initialisation; "
                     "forgetting needs >= 1).")
flags.DEFINE_bool("last_layer_only", False, "GraNd: gradient of the classifier only.")
flags.DEFINE_integer("seed", 0, "Seed of the first initialisation.")
flags.DEFINE_string("workdir", None, "Output directory (created; an existing one resumes).")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start = time.time()
  with _common.user_errors():
    from kernelcond import io
    from kernelcond.prune import scores

    config = _common.train_config_from_flags(epochs=FLAGS.epochs, seed=FLAGS.seed)
    if FLAGS.num_inits < 1 or FLAGS.epochs < (1 if FLAGS.method == "forgetting" else 0):
      raise ValueError(f"{FLAGS.method} needs --num_inits >= 1 and --epochs >= "
                       f"{1 if FLAGS.method == 'forgetting' else 0}, got {FLAGS.num_inits} "
                       f"and {FLAGS.epochs}")
    run_config = {"experiment": "score", **_common.data_config(), "method": FLAGS.method,
                  "num_inits": FLAGS.num_inits, "epochs": FLAGS.epochs,
                  "last_layer_only": FLAGS.last_layer_only, "train": config.to_dict()}
    io.check_run_config(FLAGS.workdir, run_config)
    data = _common.load_data_from_flags()
    fingerprint = data.fingerprint()
    path = os.path.join(FLAGS.workdir, f"scores_{FLAGS.method}.npz")
    if os.path.exists(path):
      values, _ = scores.load_scores(path, fingerprint, FLAGS.method)
      logging.info("Scores already computed: %s", path)
    else:
      logging.info("Computing %s on %s (%d examples): %d init(s) x %d epoch(s)", FLAGS.method,
                   data.name, data.num_train, FLAGS.num_inits, FLAGS.epochs)
      values = scores.compute_scores(FLAGS.method, data.x_train, data.y_train, config,
                                     FLAGS.num_inits, FLAGS.epochs, FLAGS.seed,
                                     num_classes=data.num_classes,
                                     last_layer_only=FLAGS.last_layer_only)
      scores.save_scores(path, values, method=FLAGS.method, fingerprint=fingerprint,
                         config={**run_config, "versions": io.environment()["versions"],
                                 "wall_time_s": time.time() - start})
      logging.info("Wrote %s (%.1fs)", path, time.time() - start)

  hardest = np.argsort(-values, kind="stable")[:10]
  print(f"\n{FLAGS.method} scores of {data.name} ({values.shape[0]} examples, "
        f"{FLAGS.num_inits} init(s), {FLAGS.epochs} epoch(s))")
  print(f"  mean {values.mean():.4f}  std {values.std():.4f}  min {values.min():.4f}  "
        f"median {np.median(values):.4f}  max {values.max():.4f}")
  print("  hardest 10 (index:label): "
        + " ".join(f"{i}:{data.y_train[i]}" for i in hardest))
  print(f"scores: {path}")


if __name__ == "__main__":
  app.run(main)
