"""Whole runs as functions of (config, dataset, workdir): what scripts, notebooks and tests call.

`distill(config, dataset, workdir)` condenses a dataset with any registered
method through the one loop (`condense.loop.run`), evaluates the natural subset
it started from and the condensed set with the one evaluation
(`evaluate.evaluate_support`), and writes the shared outputs:

    workdir/config.json       the run's configuration (another one is refused)
    workdir/stacks.json       the library versions of its sessions (`io.record_stack`)
    workdir/checkpoints/      resumable state (atomic; the newest readable is used)
    workdir/metrics.jsonl     one record per step (+ workdir/tensorboard/ events)
    workdir/distilled.npz     the support set (`support.save_support`)
    workdir/distilled.png     its images with their labels
    workdir/results.json      the shared results schema (`results_record`)

Every results.json has the same top level: `schema`, `experiment`, `config`,
`dataset`, `evaluations` (name -> `evaluate_support` output), `run`
(experiment-specific facts: steps, timing), `environment` (versions and
devices; with `stacks`, every stack's versions, when a run was resumed under
other library versions than it began with).

Re-running a finished run (the same configuration, results.json written)
returns its stored results and writes nothing (`finished`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
import jax
import numpy as np

from kernelcond import condense
from kernelcond import evaluate
from kernelcond import io
from kernelcond import preprocess
from kernelcond import support as ksupport
from kernelcond.condense import loop

SCHEMA = 2


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """One condensation run (the method's own settings in `method_config`).

  Attributes:
    method: a name of `condense.METHODS` ('kip', 'ls', ...).
    method_config: the method's config dataclass (default: its defaults).
    ipc: examples per class of the support set.
    init: initial support: 'real' (a class-balanced real subset) or 'noise'.
    init_npz: start from the images and labels of this support file instead.
    seed: seed of the initial subset, the batches and the kernel draws.
    center_labels: centred one-hot targets (1 - 1/c, -1/c).
    val_size: training examples held out (from targets and the initial draw)
      for the running validation accuracy and early stopping (0: none).
    checkpoint_every: steps between checkpoints.
    eval_every: steps between running validation accuracies.
    evaluation: how the natural and condensed sets are evaluated at the end
      (an `evaluate.EvalConfig`; default its defaults).
    data: the data settings (dataset name, preprocessing), recorded as given.
  """
  method: str = "kip"
  method_config: Any = None
  ipc: int = 10
  init: str = "real"
  init_npz: Optional[str] = None
  seed: int = 0
  center_labels: bool = True
  val_size: int = 0
  checkpoint_every: int = 100
  eval_every: int = 50
  evaluation: Any = None
  data: Any = ()

  def __post_init__(self):
    method = condense.METHODS.get(self.method)
    if self.method_config is None:
      object.__setattr__(self, "method_config", method.config_cls())
    if not isinstance(self.method_config, method.config_cls):
      raise ValueError(f"method {self.method!r} needs a {method.config_cls.__name__}, got "
                       f"{type(self.method_config).__name__}")
    if self.evaluation is None:
      object.__setattr__(self, "evaluation", evaluate.EvalConfig())
    condense.base.check_init(self.init)
    for name in ("ipc", "checkpoint_every", "eval_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.val_size < 0:
      raise ValueError(f"val_size must be >= 0, got {self.val_size}")
    if self.seed < 0:
      raise ValueError(f"seed must be >= 0, got {self.seed}")
    object.__setattr__(self, "data", dict(self.data))

  @property
  def steps(self) -> int:
    return int(getattr(self.method_config, "steps", 1))

  def to_dict(self) -> dict:
    """The flat record stored in config.json (method fields at the top level)."""
    return {"experiment": "distill", "method": self.method, "ipc": self.ipc,
            "init": self.init, "init_npz": self.init_npz, "seed": self.seed,
            "center_labels": self.center_labels, "val_size": self.val_size,
            **dataclasses.asdict(self.method_config), "data": self.data,
            "checkpoint_every": self.checkpoint_every, "eval_every": self.eval_every,
            "evaluation": self.evaluation.to_dict()}

  def finished_keys(self) -> tuple[str, ...]:
    """config.json keys that do not change a run's results (how often it logged, memory)."""
    return ("checkpoint_every", "eval_every", "kernel_memory_mib")

  def resumable_keys(self) -> tuple[str, ...]:
    """config.json keys that may change between sessions of one run."""
    keys = ("checkpoint_every", "eval_every", "evaluation", "kernel_memory_mib")
    if getattr(self.method_config, "lr_schedule", "constant") == "constant":
      keys += ("steps",)  # a constant schedule may be run further
    return keys


def dataset_record(dataset) -> dict:
  return {"name": dataset.name, "n_train": dataset.num_train, "n_test": dataset.num_test,
          "num_classes": dataset.num_classes, "fingerprint": dataset.fingerprint()}


def results_record(experiment: str, config: dict, dataset, evaluations: dict, run: dict,
                   stacks: Optional[list] = None) -> dict:
  """The shared results.json schema (see the module docstring).

  Args:
    stacks: `io.record_stack`'s list; noted under `environment` when it holds
      more than one stack (a run resumed under other library versions).
  """
  environment = io.environment()
  if stacks and len(stacks) > 1:
    environment["stacks"] = stacks
  return {"schema": SCHEMA, "experiment": experiment, "config": config,
          "dataset": dataset_record(dataset), "evaluations": evaluations, "run": run,
          "environment": environment}


def finished(config: DistillConfig, workdir: str) -> Optional[dict]:
  """The stored results.json record when `workdir` holds this finished run, else None."""
  return io.finished_results(workdir, config.to_dict(), ignore=config.finished_keys())


def note_stack(workdir: str) -> list:
  """Records this session's library stack in the workdir and warns (one line) on a change."""
  stacks = io.record_stack(workdir)
  if len(stacks) > 1:
    logging.warning("%s: earlier sessions of this run used other library versions (%s); its "
                    "results mix stacks, as results.json's environment.stacks notes", workdir,
                    io.stack_change(stacks[-2], stacks[-1]))
  return stacks


class Split(NamedTuple):
  """The parts of a training set a condensation run reads."""
  x_train: np.ndarray
  y_train: np.ndarray
  labels: np.ndarray
  x_natural: np.ndarray
  y_natural: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray


def split(config: DistillConfig, dataset) -> Split:
  """Training pool, the natural subset drawn from it, and the held-out validation examples.

  The validation draw depends on `config.val_size` only (not on the seed), so
  runs of different seeds and settings are scored on the same examples.
  """
  train_idx = np.arange(dataset.num_train)
  val_idx = np.zeros((0,), np.int64)
  if config.val_size:
    train_idx, val_idx = split_validation(dataset.y_train, config.val_size)
  x_train, labels = dataset.x_train[train_idx], dataset.y_train[train_idx]
  y_train = preprocess.one_hot(labels, dataset.num_classes, center=config.center_labels)
  x_nat, y_nat, _ = condense.initial_support(x_train, y_train, labels, config.ipc, config.seed,
                                             "real", dataset.num_classes)
  return Split(x_train, y_train, labels, x_nat, y_nat, dataset.x_train[val_idx],
               dataset.y_train[val_idx])


def split_validation(labels, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """`(train_idx, val_idx)`: a fixed random draw of `val_size` held-out examples."""
  n = len(labels)
  if val_size >= n:
    raise ValueError(f"val_size={val_size} leaves no training examples (n={n})")
  perm = np.random.default_rng([seed, 7]).permutation(n)
  return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def distill(config: DistillConfig, dataset, workdir: str,
            on_chunk: Optional[Callable[[int, dict], None]] = None) -> dict:
  """Runs (or resumes) one condensation and writes its outputs (module docstring).

  Args:
    config: a `DistillConfig`.
    dataset: the preprocessed `data.Dataset`.
    workdir: the run's directory (created; a different config there is refused).
    on_chunk: progress callback of `condense.loop.run`.

  Returns:
    The results.json record (a finished run's stored one, nothing recomputed).

  Raises:
    ValueError: bad settings or inputs, before anything is written.
    FloatingPointError / condense.loop.Interrupted: from the loop (state saved).
  """
  stored = finished(config, workdir)
  if stored is not None:
    return stored
  start_time = time.time()
  method = condense.METHODS.get(config.method)
  num_classes = dataset.num_classes
  parts = split(config, dataset)
  x_train, y_train, labels = parts.x_train, parts.y_train, parts.labels
  x_nat, y_nat = parts.x_natural, parts.y_natural
  if config.init_npz:
    x_init, y_init, _ = ksupport.load_support(config.init_npz, dataset, config.center_labels)
  else:
    x_init, y_init, _ = condense.initial_support(x_train, y_train, labels, config.ipc,
                                                 config.seed, config.init, num_classes)
  condenser = method.make(config.method_config)
  io.check_workdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  with io.exclusive_workdir(workdir):  # one writer at a time
    io.check_run_config(workdir, config.to_dict(), ignore=config.resumable_keys())
    stacks = note_stack(workdir)

    data = condense.Data.create(x_train, y_train, labels, num_classes)
    x_val, y_val = parts.x_val, parts.y_val
    ev = config.evaluation
    kernel_fn = None
    evaluate_fn = None
    if len(x_val):
      kernel_fn = ev.kernel_fn()

      def evaluate_fn(state):
        x_s, y_s = condense.support(state)
        return {"val_accuracy": evaluate.krr_accuracy(kernel_fn, x_s, y_s, x_val, y_val, ev.reg,
                                                      ev.kernel_type, ev.block_size)}

    key = jax.random.PRNGKey(config.seed)
    state = condenser.init(key, data, x_init, y_init)
    state, stats = loop.run(condenser, data, state, steps=config.steps,
                            key=jax.random.PRNGKey(config.seed + 1), workdir=workdir,
                            checkpoint_every=config.checkpoint_every,
                            eval_every=config.eval_every, evaluate=evaluate_fn, on_chunk=on_chunk)
    x_s, y_s = condense.support(state)
    record = config.to_dict()
    ksupport.save_support(os.path.join(workdir, "distilled.npz"), x_s, y_s, record)
    from kernelcond import plots
    plots.save_support_png(os.path.join(workdir, "distilled.png"), x_s, y_s,
                           dataset.class_names, ipc=max(1, len(x_s) // num_classes))
    val = (x_val, y_val) if len(x_val) else (None, None)
    evaluations = {
        "natural": evaluate.evaluate_support(ev, x_nat, y_nat, dataset.x_test, dataset.y_test,
                                             num_classes=num_classes,
                                             labels=np.argmax(y_nat, -1), x_val=val[0],
                                             y_val=val[1]),
        "distilled": evaluate.evaluate_support(ev, x_s, y_s, dataset.x_test, dataset.y_test,
                                               num_classes=num_classes,
                                               labels=evaluate.hard_labels(y_s, y_init),
                                               x_val=val[0], y_val=val[1]),
    }
    natural_val = (evaluate.krr_accuracy(kernel_fn, x_nat, y_nat, x_val, y_val, ev.reg,
                                        ev.kernel_type, ev.block_size) if len(x_val) else None)
    run = {"steps": stats["steps"], "natural_val_accuracy": natural_val,
           "resumed_from_step": stats["resumed_from_step"], "final": stats["final"], "last_val": stats["last_eval"],
           "seconds_per_step": stats["seconds_per_step"], "wall_time_s": time.time() - start_time,
           "kernel_backend": getattr(kernel_fn, "backend", None)}
    results = results_record("distill", record, dataset, evaluations, run, stacks)
    io.save_json(os.path.join(workdir, "results.json"), results)
    return results
