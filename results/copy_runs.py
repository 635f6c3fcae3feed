"""Copies the small files of finished runs from a workdir root into results/<name>/.

    python results/copy_runs.py runs/condense_fmnist results/condense_fmnist

For every run folder under SRC with a results.json: results.json, config.json,
stacks.json, distilled.png (if under 300 kB) and distilled.npz (if under 2 MB: the
condensed set itself, for `experiments/evaluate.py --support`) as they are, and metrics.jsonl thinned to its
evaluation rows (the ones with `eval/...` keys, each with its step's seconds)
plus at most 200 other rows spread evenly over the run, so the report's curves
and s/step are kept without the whole log. Checkpoints, arrays and TensorBoard
events are left behind. Existing files in DST are replaced only by files of
the same run (same relative path).
"""

import json
import os
import shutil
import sys

from kernelcond import metrics

KEEP = ("results.json", "config.json", "stacks.json", "distilled.png", "distilled.npz")
MAX_BYTES = {".png": 300_000,  # image grids of 10+ images per class stay in the workdir
             ".npz": 2_000_000}
MAX_OTHER_ROWS = 200


def thin_metrics(src: str, dst: str) -> None:
  rows = metrics.read_records(src)  # a torn last line is skipped
  evals = [i for i, r in enumerate(rows) if any(k.startswith("eval/") for k in r)]
  others = [i for i, r in enumerate(rows) if i not in set(evals)]
  every = max(1, -(-len(others) // MAX_OTHER_ROWS))
  keep = sorted(set(evals) | set(others[::every]))
  with open(dst, "w") as f:
    for i in keep:
      f.write(json.dumps(rows[i]) + "\n")


def main(src_root: str, dst_root: str) -> None:
  copied = 0
  for d, _, names in sorted(os.walk(src_root)):
    if "results.json" not in names or "checkpoints" in d.split(os.sep):
      continue
    out = os.path.join(dst_root, os.path.relpath(d, src_root))
    os.makedirs(out, exist_ok=True)
    for name in KEEP:
      path = os.path.join(d, name)
      limit = MAX_BYTES.get(os.path.splitext(name)[1])
      if name in names and not (limit and os.path.getsize(path) > limit):
        shutil.copyfile(path, os.path.join(out, name))
    if "metrics.jsonl" in names:
      thin_metrics(os.path.join(d, "metrics.jsonl"), os.path.join(out, "metrics.jsonl"))
    copied += 1
  print(f"copied {copied} run(s) from {src_root} to {dst_root}")


if __name__ == "__main__":
  if len(sys.argv) != 3:
    sys.exit("usage: python results/copy_runs.py SRC_ROOT DST_ROOT")
  main(sys.argv[1], sys.argv[2])
