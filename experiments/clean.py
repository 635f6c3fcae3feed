r"""Find mislabelled training examples, then train on noisy, cleaned and oracle-clean data.

    python experiments/clean.py --dataset=digits --noise=symmetric:0.2 --net_epochs=50 \
        --workdir=runs/clean_digits
    python experiments/clean.py --dataset=fashion_mnist --noise=symmetric:0.2 --subset=10000 \
        --net_epochs=20 --workdir=runs/clean_fmnist_10k
    python experiments/clean.py --dataset=fashion_mnist --noise=none --conditions= \
        --workdir=runs/clean_fmnist_real     # the most suspicious real labels (flagged.png)

The run is `kernelcond.clean.run` (its docstring lists the outputs): inject
`--noise` (none, symmetric:R, pairs:R, classcond:R[:S] or a noise-matrix file;
`kernelcond.noise`) into the (`--subset` of the) training labels, score every
example with each of `--detectors` (default krr_loo: exact KRR leave-one-out
probabilities of `--kernel`, temperature-calibrated, then cleanlab), flag, and
report precision / recall / F1 / AUROC against the injected flips; then train
networks of `--protocol` (`kernelcond.nets.protocols`, `--net_epochs`) on each of
`--conditions`: noisy labels, cleaned (flagged examples removed), oracle (the
truly flipped removed), true_labels, and label smoothing / mixup on the noisy
labels. Every setting is checked before anything is written; a re-run resumes
(detections and finished networks are reused) or says it is finished; another
configuration in the same workdir is refused.
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

from kernelcond import clean  # noqa: E402
from kernelcond import io  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_flags.define_config_flags(clean.CleanConfig, skip=("data",))
flags.DEFINE_string("workdir", "runs/clean", "Output directory (created; an existing one of "
                    "the same configuration resumes).")
flags.adopt_module_key_flags(_common)
flags.adopt_module_key_flags(_flags)


def _print_results(results: dict) -> None:
  run = results["run"]
  print(f"\n{results['dataset']['name']}: noise {run['noise']} (seed {run['noise_seed']}), "
        f"{run['n_noisy']} of {run['n_used']} labels flipped")
  for name, d in run["detection"].items():
    line = f"  {name:<13} flagged {d['n_flagged']:>6}"
    if "f1" in d:
      line += (f" | precision {d['precision']:.4f} recall {d['recall']:.4f} F1 {d['f1']:.4f}"
               f" AUROC {d['auroc']:.4f}")
    info = d["info"]
    if "reg" in info:
      line += f" | {info['method']} reg {info['reg']:g}"
    if "temperature" in info:
      line += f" T {info['temperature']:.3g}"
    print(line)
  for condition, e in results["evaluations"].items():
    for protocol, r in e["networks"].items():
      print(f"  {condition:<16} {protocol} {r['mean']:.4f} ± {r['std']:.4f} "
            f"(n={len(r['accuracies'])}, {e['support_size']} examples)")
  print(f"results: {os.path.join(FLAGS.workdir, 'results.json')}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  with _common.user_errors():
    config = _flags.config_from_flags(clean.CleanConfig, data=_common.data_config())
    stored = clean.finished(config, FLAGS.workdir)
    if stored is not None:
      print(f"already finished: {FLAGS.workdir} holds this run; stored results below "
            "(nothing was recomputed).")
      _print_results(stored)
      return
    io.check_workdir(FLAGS.workdir, "--workdir")
    dataset = _common.load_data_from_flags()
    results = clean.run(config, dataset, FLAGS.workdir, log=logging.info)
  _print_results(results)


if __name__ == "__main__":
  app.run(main, flags_parser=_common.parse_flags)
