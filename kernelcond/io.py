"""Atomic persistence for artifacts, checkpoints and results.

Every write goes to a temporary file in the destination directory and is then
moved into place with `os.replace`, so a run killed mid-write leaves either the
old file or the new one, never a truncated mix. The temporary file's name
records its writer (`.tmp-<host>-<pid>-...`): one left by a killed writer is
removed by the next run in that workdir (`remove_stale_temp_files`).

A workdir belongs to one configuration (`check_run_config`) and, while a run
writes it, to one process (`exclusive_workdir`); a finished run's results are
found again by `finished_results`, and the library stacks its sessions ran
under are kept in `stacks.json` (`record_stack`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
from typing import Any, Iterator, Mapping, Optional

import numpy as np

_CKPT_RE = re.compile(r"^ckpt_(\d{9})\.npz$")
_TMP_PREFIX = ".tmp-"
_TMP_RE = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-")
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
STACKS_FILE = "stacks.json"


def _host() -> str:
  return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40]


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path next to `path`; renames it onto `path` on success."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{_TMP_PREFIX}{_host()}-{os.getpid()}-",
                             suffix="-" + os.path.basename(path))
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _writer_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


def _is_stale_temp(name: str) -> bool:
  """A temporary file of an atomic write whose writer is gone (killed mid-write).

  Names without a writer (an older kernelcond's) count as stale; those written
  on another host are left alone (their writer cannot be checked from here).
  """
  if not name.startswith(_TMP_PREFIX):
    return False
  m = _TMP_RE.match(name)
  if m is None:
    return True
  return m.group("host") == _host() and not _writer_alive(int(m.group("pid")))


def remove_stale_temp_files(directory: str) -> list[str]:
  """Removes the temporary files that killed atomic writes left under `directory`.

  Returns the removed paths. A file that cannot be removed (a read-only
  workdir) is left for a run that can write there.
  """
  removed = []
  for root, _, names in os.walk(directory):
    for name in names:
      if _is_stale_temp(name):
        path = os.path.join(root, name)
        try:
          os.remove(path)
        except OSError:
          continue
        removed.append(path)
  return removed


def check_workdir(path: str, name: str = "workdir") -> None:
  """Refuses a workdir that is an existing file, lies below a file, or cannot be written.

  Args:
    path: the directory (it need not exist yet).
    name: how the error names it, e.g. '--workdir'.

  Raises:
    ValueError: naming `path` and the problem; nothing is created.
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"{name}={path} is an existing file, not a directory")
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"{name}={path} lies below {existing}, which is a file")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f"{name}={path} is not writable ({existing} is read-only)")


@contextlib.contextmanager
def exclusive_workdir(path: str, name: str = "--workdir") -> Iterator[None]:
  """Holds an advisory lock on the directory `path` (which exists) while the block runs.

  Two processes resuming the same workdir would each read results.json, add their
  own cells and write it back, and the later write would drop the earlier one's
  results; the second process is refused instead. The lock is `flock` on the
  directory itself, so nothing is written for it, and the kernel drops it when
  its holder exits, killed or not. It is per open file, so a second
  `exclusive_workdir` of the same directory in one process is refused too.

  Raises:
    ValueError: naming `path`, when another holder has it.
  """
  fd = os.open(path, os.O_RDONLY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise ValueError(f"{name}={path} is in use by another running process; wait for it "
                       "to finish, or use another directory") from None
    yield
  finally:
    os.close(fd)  # closing the last descriptor releases the lock


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


def save_text(path: str, text: str) -> None:
  """Writes `text` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


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


def _holds_outputs(workdir: str) -> bool:
  """True when `workdir` holds a file besides config.json, stacks.json and temporary files."""
  for _, _, names in os.walk(workdir):
    if any(n not in (CONFIG_FILE, STACKS_FILE) and not n.startswith(_TMP_PREFIX)
           for n in names):
      return True
  return False


def check_run_config(workdir: str, config: Mapping[str, Any],
                     ignore: tuple[str, ...] = ()) -> None:
  """Writes `workdir/config.json`, or checks it matches a run already there.

  A workdir belongs to one configuration: resuming with different settings
  would silently mix two experiments, so it is refused with the differing keys
  — unless the earlier run left nothing but its config.json (it failed before
  its first output), in which case the new configuration takes its place.
  Keys in `ignore` (e.g. how often to log) may differ between runs. Temporary
  files of writes killed in an earlier session are removed.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  config = _to_jsonable(dict(config))
  if os.path.exists(path):
    old = load_json(path)
    diff = sorted(k for k in set(old) | set(config)
                  if k not in ignore and old.get(k) != config.get(k))
    if diff and _holds_outputs(workdir):
      details = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in diff)
      raise ValueError(f"Workdir {workdir} holds a run with another configuration "
                       f"({details}). Use a new --workdir, or delete this one yourself.")
    if diff:
      save_json(path, config)
  else:
    save_json(path, config)
  remove_stale_temp_files(workdir)


def finished_results(workdir: str, config: Mapping[str, Any],
                     ignore: tuple[str, ...] = ()) -> Optional[dict]:
  """`workdir/results.json` when it holds the results of `config`, else None.

  For runs that write results.json once, at their end: a match means the same
  command already finished there. Keys in `ignore` may differ. Reads only.
  """
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.isfile(path):
    return None
  try:
    results = load_json(path)
  except (OSError, ValueError):
    return None
  stored = results.get("config") if isinstance(results, dict) else None
  if not isinstance(stored, dict):
    return None
  config = _to_jsonable(dict(config))
  if any(stored.get(k) != config.get(k) for k in set(stored) | set(config) if k not in ignore):
    return None
  return results


def record_stack(workdir: str) -> list[dict]:
  """Notes this session's library versions in `workdir/stacks.json`; returns every stack.

  The file lists the versions (`versions()`) of the sessions of a run, first
  session first, one entry per change of stack; a run resumed under other
  versions than it began with has more than one.
  """
  path = os.path.join(workdir, STACKS_FILE)
  stacks = load_json(path) if os.path.exists(path) else []
  current = versions()
  if not stacks or stacks[-1] != current:
    stacks.append(current)
    save_json(path, stacks)
  return stacks


def stack_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
  """'jax 0.4.23 -> 0.10.2, numpy 1.26.4 -> 2.3.5': the versions that differ."""
  return ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in new if old.get(k) != new.get(k))


_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "neural-tangents",
              "scikit-learn", "kernelcond")


def versions() -> dict:
  """Python and library versions (None for a library that is not installed)."""
  import importlib.metadata
  import platform

  found = {"python": platform.python_version()}
  for name in _VERSIONED:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = None
  return found


def environment() -> dict:
  """Library versions and devices, recorded with every result."""
  import jax

  return {"versions": versions(), "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
          "processes": jax.process_count()}
