r"""The paper-reproduction sweeps, one command each, resumable cell by cell.

    # KIP and Label Solve at 1/10/50 images per class, FC NTK, 3 seeds, plus the natural
    # baseline (Nguyen, Chen, Lee, arXiv:2011.00050, Table 1; arXiv:2107.13034):
    python experiments/sweep.py --sweep=kip --dataset=fashion_mnist --root=runs/sweep_fmnist
    # Pruning curves for every score and baseline (Data Diet, arXiv:2107.07075):
    python experiments/sweep.py --sweep=prune --dataset=fashion_mnist \
        --root=runs/sweep_prune_fmnist
    # Then the tables and figures of docs/results.md:
    python experiments/report.py --roots=runs/sweep_fmnist,runs/sweep_prune_fmnist \
        --out=docs/results.md

Each cell runs one experiment script in a subprocess with its own workdir under
`--root` (the cells: `kernelcond.sweep`). A cell is finished when its
results.json holds the requested outputs (e.g. a KIP run with all `--steps` and
the networks of every `--protocols`); re-running the same command skips finished
cells and the experiments resume from their checkpoints. Raising `--steps`
extends KIP runs only with `--lr_schedule=constant` (distill.py refuses a longer
cosine schedule in the same workdir: start a new `--root`). `--dry_run` prints
every cell's command and status and writes nothing; `--only=REGEX` restricts the
sweep to matching cells. Logs go to `--root/logs/<cell>.log`; `--root/sweep.json`
(cells, settings, command line, machine) is rewritten after every cell. The exit
status is 0 when every cell is finished.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from absl import app
from absl import flags

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402
import _flags  # noqa: E402

from kernelcond import io  # noqa: E402
from kernelcond import sweep  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("sweep", None, list(sweep.SWEEPS), "Which sweep: kip or prune.")
flags.DEFINE_string("root", None, "Output directory: one workdir per cell, logs/, sweep.json.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (see kernelcond/data.py), or a "
                    "TFDS name with --data_source=tfds.")
flags.DEFINE_string("data_dir", None, "Where the dataset files are (default per dataset).")
flags.DEFINE_enum("data_source", "local", ["local", "tfds"], "Local files or TFDS.")
flags.DEFINE_bool("standardize", True, "Standardise each channel with training statistics.")
flags.DEFINE_float("zca", 0.0, "ZCA whitening strength (0 = off).")
flags.DEFINE_list("seeds", None, "Seeds (default: 0,1,2 for kip; 0,1 for prune).")
flags.DEFINE_list("methods", None, "kip sweep: any of kip, ls (default both). prune sweep: "
                  f"any of {', '.join(sweep.PRUNE_METHODS)} (default all).")
flags.DEFINE_bool("natural", True, "kip: include the natural baseline (krr_baseline.py).")
flags.DEFINE_list("ipc", ["1", "10", "50"], "kip: images per class.")
flags.DEFINE_string("kernel", "fc3", "kip: kernel spec, e.g. fc3.")
flags.DEFINE_enum("kernel_backend", "auto", ["auto", "nt", "native"], "kip: kernel backend.")
flags.DEFINE_integer("steps", 1000, "kip: KIP steps.")
flags.DEFINE_integer("target_batch", 5000, "kip: target examples per KIP step.")
flags.DEFINE_enum("lr_schedule", "cosine", ["constant", "cosine"],
                  "kip: KIP learning-rate schedule (distill.py --lr_schedule).")
flags.DEFINE_float("lr", None, "Learning rate: KIP's Adam (default 0.04) or the pruned "
                   "networks' SGD (default 0.05).")
flags.DEFINE_float("reg", 1e-6, "kip: relative ridge reg * trace(K) / n (KRR, KIP, LS).")
flags.DEFINE_list("protocols", ["mlp"], "kip: finite-network protocols of distill.py "
                  "(kernelcond.nets.protocols); empty for KRR only.")
flags.DEFINE_list("net_seeds", ["0"], "kip: one finite network per seed and protocol.")
flags.DEFINE_integer("net_epochs", 0, "kip: epochs of every protocol (0: the protocol's own).")
flags.DEFINE_list("fractions", ["1.0", "0.8", "0.6", "0.5", "0.4", "0.2"],
                  "prune: fractions of the training set kept (1.0 = the full-set cell).")
flags.DEFINE_string("model", "convnet", "prune: mlp, convnet or resnet18.")
flags.DEFINE_string("model_kwargs", "", "prune: model attributes, e.g. 'depth=2,width=16'.")
flags.DEFINE_integer("epochs", 10, "prune: training budget in epochs of the full set.")
flags.DEFINE_integer("batch_size", 128, "prune: batch size.")
flags.DEFINE_integer("score_epochs", 5, "prune: epochs of training before scoring.")
flags.DEFINE_integer("score_inits", 2, "prune: initialisations scores are averaged over.")
flags.DEFINE_integer("score_seed", 100, "prune: seed of the first scoring network.")
flags.DEFINE_multi_string("cell_flag", [], "Extra flag for every distill.py / prune.py cell, "
                          "repeatable, e.g. --cell_flag=--eval_every=100.")
flags.DEFINE_string("only", None, "Only cells whose name matches this regular expression.")
flags.DEFINE_bool("dry_run", False, "Print the cells' commands and status; run nothing.")
flags.DEFINE_bool("keep_going", True, "After a failed cell, go on with the others.")
flags.mark_flags_as_required(["sweep", "root"])
_flags.require_finite("zca", "lr", "reg")


def select_cells(all_cells: list) -> list:
  """The cells matching --only (all without it)."""
  if not FLAGS.only:
    return all_cells
  try:
    pattern = re.compile(FLAGS.only)
  except re.error as e:
    raise ValueError(f"--only is not a valid regular expression: {e}") from None
  cells = [c for c in all_cells if pattern.search(c.name)]
  if not cells:
    raise ValueError(f"--only={FLAGS.only!r} matches no cell")
  return cells


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  with _common.user_errors():
    settings = sweep.make_settings(FLAGS.sweep, FLAGS.flag_values_dict())
    root = os.path.abspath(FLAGS.root)
    if not FLAGS.dry_run:
      io.check_workdir(FLAGS.root, "--root")
    all_cells = sweep.build_cells(settings, root, HERE)
    cells = select_cells(all_cells)
    for script in sorted({c.script for c in cells}):
      if not os.path.exists(script):
        raise FileNotFoundError(f"Experiment script {script} is missing")
  finished = {c.name: c.is_finished() for c in all_cells}
  if FLAGS.dry_run:
    for cell in cells:
      print(f"# {cell.name} [{'finished' if finished[cell.name] else 'pending'}]")
      print(shlex.join(cell.command))
    n_done = sum(finished[c.name] for c in cells)
    print(f"# {len(cells)} cell(s), {n_done} finished, {len(cells) - n_done} to run "
          "(dry run: nothing was run)")
    return 0
  record = sweep.sweep_record(settings, root, sys.argv, all_cells, finished,
                              os.path.dirname(HERE))
  return sweep.run_sweep(record, cells, finished, FLAGS.keep_going)


if __name__ == "__main__":
  app.run(main, flags_parser=_common.parse_flags)
