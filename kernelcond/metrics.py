"""The metrics log of a run: `metrics.jsonl` plus TensorBoard event files.

`MetricsLog(workdir, resume_step)` appends one JSON object per record to
`workdir/metrics.jsonl` and writes the same scalars as TensorBoard events under
`workdir/tensorboard/` (`kernelcond.tensorboard`: no TensorFlow needed), so
`tensorboard --logdir=<workdir>` shows the curves.

On resume from a checkpoint at step `s`, records past `s` (written after the
checkpoint by the interrupted session) are dropped from `metrics.jsonl`, so the
log and the state agree; a torn last line (a kill mid-write) is dropped too.
The rewrite is atomic, and it is skipped when nothing changes (a finished run in
a read-only workdir can still be re-read).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from kernelcond import io

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _read(path: str) -> tuple[list[dict], int]:
  """`(records, non-empty lines)` of a `.jsonl` file; a torn or corrupt line is skipped."""
  records, lines = [], 0
  if not os.path.exists(path):
    return records, lines
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      lines += 1
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut by a kill; the checkpoint holds the state
      if isinstance(record, dict):
        records.append(record)
  return records, lines


def read_records(path: str) -> list[dict]:
  """The JSON records of a `.jsonl` file; a torn or corrupt line is skipped."""
  return _read(path)[0]


class MetricsLog:
  """Appends records `{'step': int, name: float, ...}` to JSONL and TensorBoard.

  Attributes:
    path: the `metrics.jsonl` path.
    records: the records kept from earlier sessions (at most `resume_step`).
  """

  def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, METRICS_FILE)
    all_records, lines = _read(self.path)
    self.records = [r for r in all_records if int(r.get("step", 0)) <= resume_step]
    if len(self.records) != lines:  # records past the checkpoint, or a torn line
      with io.atomic_path(self.path) as tmp:
        with open(tmp, "w") as f:
          f.writelines(json.dumps(r) + "\n" for r in self.records)
    self._tb = None
    self._tb_dir = os.path.join(workdir, TENSORBOARD_DIR) if tensorboard else None

  def write(self, step: int, values: Mapping[str, Any]) -> dict:
    """Appends one record (numpy / jax scalars become floats) and returns it."""
    record = {"step": int(step)}
    record.update({k: _scalar(v) for k, v in values.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    self.records.append(record)
    if self._tb_dir is not None:
      if self._tb is None:
        from kernelcond import tensorboard
        self._tb = tensorboard.SummaryWriter(self._tb_dir)
      self._tb.scalars({k: v for k, v in record.items()
                        if k != "step" and isinstance(v, float)}, step)
    return record

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def _scalar(value: Any) -> Any:
  if isinstance(value, (str, bool, int)) or value is None:
    return value
  return float(np.asarray(value))
