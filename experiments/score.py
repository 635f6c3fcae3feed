r"""Score every training example's difficulty (any score of `kernelcond.prune.scores.SCORES`).

    python experiments/score.py --dataset=digits --method=el2n --epochs=5 \
        --num_inits=2 --model=convnet --model_kwargs=depth=2 --workdir=runs/scores_digits
    python experiments/score.py --dataset=fashion_mnist --method=grand --epochs=0 \
        --num_inits=4 --workdir=runs/scores_fmnist
    python experiments/score.py --dataset=digits --method=krr_loo --kernel=fc3 \
        --workdir=runs/scores_digits_krr

Network scores (el2n, grand, forgetting, curvature): the network (`--model`,
`--model_kwargs`) is trained from scratch `--epochs` epochs on the whole
(preprocessed) training set from `--num_inits` initialisations (seeds `--seed`,
`--seed`+1, ...) and the scores are averaged (Data Diet, arXiv:2107.07075;
forgetting: Toneva et al., arXiv:1812.05159; curvature: Garg & Roy, CVPR 2023).
`--epochs=0` scores at initialisation. A smaller `--model` or fewer `--epochs` than
the pruned network's makes these proxy scores (arXiv:1906.11829). Kernel scores
(krr_loo, krr_el2n) train nothing: KRR with the NTK of `--kernel`, exact for up to
`loo.EXACT_AUTO_MAX_N` examples; above, krr_loo uses a Nystrom kernel
and krr_el2n use a Nystrom kernel (`scores.NYSTROM_LANDMARKS` landmarks).

Every setting (the dataset included) is checked before anything is written. Then
`--workdir/config.json` (a workdir belongs to one configuration) and
`--workdir/scores_<method>.npz` (`scores` in dataset order, `method`, the dataset
`fingerprint`, `n`, `config`), which `experiments/prune.py --scores_dir` reads and
refuses for another dataset. A re-run with the scores file present says so and
prints the stored scores' summary.
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

from kernelcond.prune import scores  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_train_flags()
flags.DEFINE_enum("method", "el2n", list(scores.SCORES.names()), "Score to compute.")
flags.DEFINE_integer("num_inits", 2, "Independent initialisations (krr_el2n: random halves) "
                     "to average over.")
flags.DEFINE_integer("epochs", 5, "Training epochs before scoring (0: at initialisation; "
                     "forgetting needs >= 1; kernel scores ignore it).")
flags.DEFINE_bool("last_layer_only", False, "GraNd: gradient of the classifier only.")
flags.DEFINE_string("kernel", "fc3", "Kernel spec of krr_loo / krr_el2n (its NTK).")
flags.DEFINE_float("kernel_reg", None, "Relative ridge of the kernel scores (default: chosen "
                   f"by exact leave-one-out error among {list(scores.KRR_REGS)}).")
flags.DEFINE_integer("seed", 0, "Seed of the first initialisation.")
flags.DEFINE_string("workdir", "runs/scores", "Output directory (created; a finished one "
                    "says so).")
flags.adopt_module_key_flags(_common)


def _validate(data) -> None:
  """Every check that needs no writing; raises ValueError naming the flag."""
  min_epochs = scores.SCORES.get(FLAGS.method).min_epochs
  if FLAGS.num_inits < 1 or FLAGS.epochs < min_epochs:
    raise ValueError(f"{FLAGS.method} needs --num_inits >= 1 and --epochs >= {min_epochs}, "
                     f"got {FLAGS.num_inits} and {FLAGS.epochs}")
  if FLAGS.method in scores.KERNEL_SCORES:
    from kernelcond import kernels
    try:
      kernels.get_spec(FLAGS.kernel)
    except ValueError as e:
      raise ValueError(f"--kernel: {e}") from None
    if FLAGS.kernel_reg is not None and not FLAGS.kernel_reg > 0:
      raise ValueError(f"--kernel_reg must be > 0, got {FLAGS.kernel_reg}")
  if os.path.exists(FLAGS.workdir) and not os.path.isdir(FLAGS.workdir):
    raise ValueError(f"--workdir {FLAGS.workdir} exists and is not a directory")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start = time.time()
  with _common.user_errors():
    from kernelcond import io

    config = _common.train_config_from_flags(epochs=FLAGS.epochs, seed=FLAGS.seed)
    data = _common.load_data_from_flags()
    _validate(data)
    kernel_score = FLAGS.method in scores.KERNEL_SCORES
    run_config = {"experiment": "score", **_common.data_config(), "method": FLAGS.method,
                  "num_inits": FLAGS.num_inits,
                  **({"kernel": FLAGS.kernel, "kernel_reg": FLAGS.kernel_reg} if kernel_score
                     else {"epochs": FLAGS.epochs, "last_layer_only": FLAGS.last_layer_only,
                           "train": config.to_dict()})}
    os.makedirs(FLAGS.workdir, exist_ok=True)
    io.check_run_config(FLAGS.workdir, run_config)
    fingerprint = data.fingerprint()
    path = os.path.join(FLAGS.workdir, f"scores_{FLAGS.method}.npz")
    if os.path.exists(path):
      values, _ = scores.load_scores(path, fingerprint, FLAGS.method)
      print(f"already finished: {path} holds these scores (nothing was recomputed; a new "
            "--workdir computes them again).")
    else:
      logging.info("Computing %s on %s (%d examples)", FLAGS.method, data.name, data.num_train)
      values = scores.compute_scores(FLAGS.method, data.x_train, data.y_train, config,
                                     FLAGS.num_inits, FLAGS.epochs, FLAGS.seed,
                                     num_classes=data.num_classes,
                                     last_layer_only=FLAGS.last_layer_only,
                                     kernel=FLAGS.kernel, kernel_reg=FLAGS.kernel_reg)
      scores.save_scores(path, values, method=FLAGS.method, fingerprint=fingerprint,
                         config={**run_config, "versions": io.environment()["versions"],
                                 "wall_time_s": time.time() - start})
      logging.info("Wrote %s (%.1fs)", path, time.time() - start)

  hardest = np.argsort(-values, kind="stable")[:10]
  what = ("kernel " + FLAGS.kernel if kernel_score
          else f"{FLAGS.num_inits} init(s), {FLAGS.epochs} epoch(s)")
  print(f"\n{FLAGS.method} scores of {data.name} ({values.shape[0]} examples, {what})")
  print(f"  mean {values.mean():.4f}  std {values.std():.4f}  min {values.min():.4f}  "
        f"median {np.median(values):.4f}  max {values.max():.4f}")
  print("  hardest 10 (index:label): "
        + " ".join(f"{i}:{data.y_train[i]}" for i in hardest))
  print(f"scores: {path}")


if __name__ == "__main__":
  app.run(main, flags_parser=_common.parse_flags)
