r"""Regenerate docs/results.md and its figures from sweep outputs.

    python experiments/report.py --roots=runs/sweep_fmnist,runs/sweep_prune_fmnist \
        --out=docs/results.md

Reads every `results.json` under each root through the one reader
`kernelcond.report.load_record` (the shared results schema; files of the older
per-script schemas are converted) and each root's `sweep.json` (machine and
command), and writes a markdown report (`kernelcond.report.render`) with

* condensation tables: KRR test accuracy of natural subsets, KIP and Label Solve
  per images-per-class budget (mean ± std over seeds, number of seeds), the test
  accuracy of finite networks trained on each set, and the cost (KIP steps,
  seconds per step, wall time, kernel backend, devices);
* pruning tables: test accuracy per selection method and fraction kept;
* the papers' numbers next to ours, labelled with the paper and its setting;
* the machine (CPU model and core count) and library versions of the runs;

and PNG figures in `--figures_dir` (default: `figures/` next to `--out`).
Every number comes from a `results.json`, except the papers' numbers
(`kernelcond.report.PAPER_RESULTS`, with their citations). Standard deviations
are over seeds with `ddof=0`; accuracies are in percent.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

from kernelcond import io  # noqa: E402
from kernelcond import report  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("roots", None, "Sweep output directories (comma-separated).")
flags.DEFINE_string("out", "docs/results.md", "Markdown file to write.")
flags.DEFINE_string("figures_dir", None, "Where the PNGs go (default: figures/ next to --out).")
flags.DEFINE_list("sections", list(report.SECTIONS), "Report sections, any of "
                  f"{', '.join(report.SECTIONS)}.")
flags.DEFINE_list("notes_roots", [], "Result folders with their own README.md, listed "
                  "at the end with title and first paragraph.")
flags.DEFINE_list("protocol_roots", [], "Roots read only by the 'protocols' section (runs "
                  "evaluated under named protocols, kept out of the condensation tables).")
flags.mark_flag_as_required("roots")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  with _common.user_errors():
    if os.path.isdir(FLAGS.out):
      raise ValueError(f"--out={FLAGS.out} is a directory; give a markdown file")
    io.check_workdir(os.path.dirname(os.path.abspath(FLAGS.out)), "the directory of --out")
    roots = [r for r in FLAGS.roots if r.strip()]
    text = report.render(roots, FLAGS.out, FLAGS.figures_dir, sections=FLAGS.sections,
                         protocol_roots=[r for r in FLAGS.protocol_roots if r.strip()],
                         notes_roots=[r for r in FLAGS.notes_roots if r.strip()])
    io.save_text(FLAGS.out, text)  # atomic: a killed run never leaves half a report
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main, flags_parser=_common.parse_flags)
