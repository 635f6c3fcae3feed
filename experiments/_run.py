"""What every entrypoint does around a run: progress bar, run errors, printed results."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import _common  # noqa: E402  (experiments/ is on sys.path, as for every script)


@contextlib.contextmanager
def progress_bar(total: int, desc: str) -> Iterator:
  """Yields an `on_chunk(step, record)` callback driving a tqdm bar (loss, val accuracy)."""
  from tqdm import tqdm

  bar = None

  def on_chunk(step: int, record: dict) -> None:
    nonlocal bar
    if bar is None:
      bar = tqdm(total=total, initial=0, desc=desc, dynamic_ncols=True, disable=None)
    bar.n = step
    shown = {k: f"{v:.4g}" for k, v in record.items()
             if k in ("loss", "eval/val_accuracy", "label_change") and isinstance(v, float)}
    bar.set_postfix(shown, refresh=False)
    bar.refresh()

  try:
    yield on_chunk
  finally:
    if bar is not None:
      bar.close()


@contextlib.contextmanager
def run_errors() -> Iterator[None]:
  """Interrupted runs exit 130 saying where the checkpoint is; divergence and bad input exit 1."""
  from kernelcond.condense import loop

  with _common.user_errors(FloatingPointError):
    try:
      yield
    except loop.Interrupted as e:
      print(f"\nInterrupted: checkpoint of step {e.step} saved in {e.checkpoint_dir}; re-run "
            "the same command to resume.", file=sys.stderr)
      raise SystemExit(130) from None


def warn_slow_kernel(evaluation, dataset) -> None:
  """Logs `evaluate.slow_kernel_hint` for this evaluation config and dataset, if any."""
  import jax
  from absl import logging
  from kernelcond import evaluate

  hint = evaluate.slow_kernel_hint(evaluation, jax.default_backend(), dataset.x_train.shape[1:])
  if hint:
    logging.warning(hint)


def print_finished(results: dict, path: str, title: str) -> None:
  """A finished command re-run: says so in one line, then prints the stored evaluations."""
  print(f"already finished: {path} holds the results of this command; nothing was recomputed "
        "(a new --workdir runs it again)")
  print_evaluations(results, title)


def print_evaluations(results: dict, title: str) -> None:
  """The evaluations of a results record, one line each (KRR and every protocol)."""
  from kernelcond import evaluate

  print(f"\n{title}")
  evaluations = results["evaluations"]
  width = max(len(name) for name in evaluations)
  for name, result in evaluations.items():
    print(f"  {name:<{width}} : {evaluate.summary_line(result)}")
  if "natural" in evaluations and len(evaluations) == 2:
    (_, other), = [(k, v) for k, v in evaluations.items() if k != "natural"]
    nat = evaluations["natural"]
    gain = other["krr"]["accuracy"] - nat["krr"]["accuracy"]
    line = f"  KRR gain over the natural subset: {gain:+.4f}"
    for name, r in other["networks"].items():
      line += f"; {name}: {r['mean'] - nat['networks'][name]['mean']:+.4f}"
    print(line)
