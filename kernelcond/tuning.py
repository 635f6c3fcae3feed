"""Validation-split searches: grid parsing, resumable JSONL records, selection, tables.

A search is a list of overrides (a JSON grid) each run as one
`experiment.distill` with a held-out validation split; one JSON line per
finished entry records its validation and test accuracy. Selection reads only
`val_accuracy`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

from kernelcond import metrics as kmetrics


def parse_grid(text: str) -> list[dict]:
  """A JSON list of objects, inline or from a `.json` path.

  Raises:
    ValueError: invalid JSON or not a list of objects.
  """
  if text.endswith(".json") and os.path.exists(text):
    with open(text) as f:
      text = f.read()
  try:
    grid = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"--grid is not valid JSON: {e}") from None
  if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
    raise ValueError("--grid must be a JSON list of objects")
  return grid


def entry_key(entry: dict) -> str:
  return json.dumps(entry, sort_keys=True)


def entry_name(entry: dict) -> str:
  """A stable directory name for one entry."""
  return hashlib.sha256(entry_key(entry).encode()).hexdigest()[:12]


def done_entries(path: str) -> set[str]:
  """Keys of the entries already recorded in `path` (resume)."""
  return {entry_key(r["config"]) for r in kmetrics.read_records(path) if "config" in r}


def append(path: str, record: dict) -> None:
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")


def record(entry: dict, results: dict, workdir: str) -> dict:
  """The JSONL record of one finished search entry from its results.json record."""
  run, ev = results["run"], results["evaluations"]
  curve = [{"step": r["step"], "val_accuracy": r["eval/val_accuracy"], "loss": r.get("loss")}
           for r in kmetrics.read_records(os.path.join(workdir, "metrics.jsonl"))
           if "eval/val_accuracy" in r]
  return {"config": entry, "workdir": workdir,
          "val_accuracy": (run.get("last_val") or {}).get("val_accuracy"),
          "test_accuracy": ev["distilled"]["krr"]["accuracy"],
          "natural_val_accuracy": run.get("natural_val_accuracy"),
          "natural_test_accuracy": ev["natural"]["krr"]["accuracy"],
          "curve": curve, "seconds_per_step": run.get("seconds_per_step"),
          "devices": results["environment"]["devices"],
          "wall_time_s": run.get("wall_time_s")}


def record_line(r: dict) -> str:
  if "error" in r:
    return r["error"]
  nat_val = r.get("natural_val_accuracy")
  line = (f"val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f} (natural: "
          + (f"val {nat_val:.4f}, " if nat_val is not None else "")
          + f"test {r['natural_test_accuracy']:.4f})")
  for protocol, v in (r.get("val_networks") or {}).items():
    line += f"; {protocol} val: {v['distilled']:.4f} (natural {v['natural']:.4f})"
  return line


def selection_score(r: dict, select_by: str = "krr") -> float:
  """The validation accuracy that ranks a record: KRR, or a protocol's distilled-set networks."""
  if select_by == "krr":
    return r["val_accuracy"]
  networks = r.get("val_networks") or {}
  if select_by not in networks:
    raise ValueError(f"record has no validation networks of protocol {select_by!r}; "
                     f"has: {', '.join(networks) or 'none'}")
  return networks[select_by]["distilled"]


def best(path: str, select_by: str = "krr", **match) -> Optional[dict]:
  """The record with the highest validation accuracy among those matching `match`."""
  rows = [r for r in kmetrics.read_records(path) if "error" not in r
          and all(r["config"].get(k) == v for k, v in match.items())]
  return max(rows, key=lambda r: selection_score(r, select_by)) if rows else None


_SHOWN = ("kernel", "lr", "lr_schedule", "target_batch", "kernel_type", "learn_labels",
          "optimizer", "reg", "init", "zca", "seed")


def summarize(paths) -> str:
  """Markdown tables, one per (dataset, ipc), best validation accuracy first.

  Each row names the settings that differ from the group's most common value.
  """
  records = []
  for path in paths:
    records += kmetrics.read_records(path)
  out = []
  groups = sorted({(r["config"]["dataset"], r["config"]["ipc"]) for r in records})
  for dataset, ipc in groups:
    rows = sorted((r for r in records if (r["config"]["dataset"], r["config"]["ipc"])
                   == (dataset, ipc) and "error" not in r), key=lambda r: -r["val_accuracy"])
    common = {}
    for k in _SHOWN:
      values = [json.dumps(r["config"].get(k)) for r in rows]
      common[k] = json.loads(max(set(values), key=values.count)) if values else None
    base_text = ", ".join(f"{k} {v}" for k, v in common.items() if v is not None)
    out += [f"#### {dataset}, {ipc} images per class", "",
            f"| settings (differences from {base_text}) | steps | val acc | test acc "
            "| natural test acc | s/step | devices |", "|---|---|---|---|---|---|---|"]
    for r in rows:
      c = r["config"]
      diff = ", ".join(f"{k}={c.get(k)}" for k in _SHOWN if c.get(k) != common[k]) or "(base)"
      per_step = r.get("seconds_per_step")
      out.append(f"| {diff} | {c.get('steps')} | {100 * r['val_accuracy']:.2f} | "
                 f"{100 * r['test_accuracy']:.2f} | {100 * r['natural_test_accuracy']:.2f} | "
                 f"{'–' if per_step is None else f'{per_step * 1e3:.2f} ms'} | "
                 f"{r.get('devices', '?')} |")
    out.append("")
  return "\n".join(out)
