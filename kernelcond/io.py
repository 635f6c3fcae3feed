"""Atomic persistence for artifacts, checkpoints and results.

Every write goes to a temporary file in the destination directory and is then
moved into place with `os.replace`, so a run killed mid-write leaves either the
old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from typing import Any, Iterator, Mapping

import numpy as np

_CKPT_RE = re.compile(r"^ckpt_(\d{9})\.npz$")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path next to `path`; renames it onto `path` on success."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _to_jsonable(obj: Any) -> Any:
  if isinstance(obj, Mapping):
    return {str(k): _to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_to_jsonable(v) for v in obj]
  if isinstance(obj, np.generic):
    return obj.item()
  if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy / jax arrays
    return np.asarray(obj).tolist()
  return obj


def save_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON atomically (numpy/jax values converted)."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(_to_jsonable(obj), f, indent=2, sort_keys=False)
      f.write("\n")


def load_json(path: str) -> Any:
  """Reads JSON, naming the file in the error if it is missing or corrupt."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"No such JSON file: {path}")
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"Corrupt JSON file {path}: {e}") from e


def save_npz(path: str, **arrays: Any) -> None:
  """Writes arrays to an .npz atomically. Non-array values are stored as JSON strings."""
  payload = {}
  for key, value in arrays.items():
    if isinstance(value, (dict, list, str)) or value is None:
      payload[key] = np.asarray(json.dumps(_to_jsonable(value)))
    else:
      payload[key] = np.asarray(value)
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **payload)


def load_npz(path: str) -> dict[str, np.ndarray]:
  """Loads every array of an .npz into memory, with a clear error for a bad file."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"No such .npz file: {path}")
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, OSError ...
    raise ValueError(f"Corrupt or unreadable .npz file {path}: {e}") from e


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
  """Flattens nested dicts/lists/tuples of arrays into '/'-joined keys."""
  flat = {}
  if isinstance(tree, Mapping):
    items = tree.items()
  elif isinstance(tree, (list, tuple)):
    items = enumerate(tree)
  else:
    return {prefix: np.asarray(tree)}
  for k, v in items:
    flat.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
  return flat


def save_checkpoint(directory: str, step: int, tree: Any, keep: int = 2) -> str:
  """Saves a pytree of arrays as `directory/ckpt_<step>.npz` atomically.

  The pytree is converted with `flax.serialization.to_state_dict` when possible,
  so dataclass states (e.g. `flax.struct` or optax states) round-trip through
  `restore_checkpoint(directory, target)`. Older checkpoints beyond `keep` are
  removed only after the new one is in place.
  """
  from flax import serialization  # local: keep io importable without flax

  state = serialization.to_state_dict(tree)
  path = os.path.join(directory, f"ckpt_{step:09d}.npz")
  save_npz(path, **{"__step__": np.asarray(step), **_flatten(state)})
  steps = sorted(checkpoint_steps(directory))
  for old in steps[:-keep] if keep > 0 else []:
    os.remove(os.path.join(directory, f"ckpt_{old:09d}.npz"))
  return path


def checkpoint_steps(directory: str) -> list[int]:
  """Steps of the complete checkpoints found in `directory` (empty if none)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(m.group(1)) for m in map(_CKPT_RE.match, os.listdir(directory)) if m)


def restore_checkpoint(directory: str, target: Any, step: int | None = None) -> tuple[Any, int]:
  """Restores the latest (or given) checkpoint into the structure of `target`.

  Returns:
    `(tree, step)`; `(target, 0)` when the directory holds no checkpoint.
  """
  from flax import serialization

  steps = checkpoint_steps(directory)
  if not steps:
    return target, 0
  if step is None:  # the newest readable one: a torn newest file falls back to the previous
    for candidate in reversed(steps):
      try:
        return restore_checkpoint(directory, target, candidate)
      except ValueError as e:
        if candidate == steps[0] or "Corrupt" not in str(e):
          raise
    raise AssertionError("unreachable")
  flat = load_npz(os.path.join(directory, f"ckpt_{step:09d}.npz"))
  template = serialization.to_state_dict(target)

  def rebuild(node: Any, prefix: str) -> Any:
    if isinstance(node, Mapping):
      return {k: rebuild(v, f"{prefix}/{k}" if prefix else str(k)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
      return type(node)(rebuild(v, f"{prefix}/{i}" if prefix else str(i)) for i, v in enumerate(node))
    if prefix not in flat:
      raise ValueError(f"Checkpoint step {step} in {directory} lacks '{prefix}': "
                       "it was written for a different state structure.")
    value = flat[prefix]
    if np.shape(node) != value.shape:
      raise ValueError(f"Checkpoint '{prefix}' has shape {value.shape}, expected "
                       f"{np.shape(node)}: it was written by a different configuration.")
    return value

  state = rebuild(template, "")
  return serialization.from_state_dict(target, state), int(flat["__step__"])


def fingerprint(*arrays: Any) -> str:
  """A short SHA-256 of the arrays' shapes, dtypes and bytes: identifies a dataset."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(np.asarray(a))
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def check_run_config(workdir: str, config: Mapping[str, Any],
                     ignore: tuple[str, ...] = ()) -> None:
  """Writes `workdir/config.json`, or checks it matches a run already there.

  A workdir belongs to one configuration: resuming with different settings
  would silently mix two experiments, so it is refused with the differing keys.
  Keys in `ignore` (e.g. how often to log) may differ between runs.
  """
  path = os.path.join(workdir, "config.json")
  config = _to_jsonable(dict(config))
  if os.path.exists(path):
    old = load_json(path)
    diff = sorted(k for k in set(old) | set(config)
                  if k not in ignore and old.get(k) != config.get(k))
    if diff:
      details = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in diff)
      raise ValueError(f"Workdir {workdir} holds a run with another configuration "
                       f"({details}). Use a new --workdir, or delete this one yourself.")
  else:
    save_json(path, config)


_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "neural-tangents",
              "scikit-learn", "kernelcond")


def environment() -> dict:
  """Library versions and devices, recorded with every result."""
  import importlib.metadata
  import platform

  import jax

  versions = {"python": platform.python_version()}
  for name in _VERSIONED:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {"versions": versions, "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
          "processes": jax.process_count()}
