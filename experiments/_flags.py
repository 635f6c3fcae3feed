"""Flags generated from the library's config dataclasses (one default per setting).

A config dataclass (`KipConfig`, `LabelSolveConfig`, `EvalConfig`, ...) holds THE
defaults. `define_config_flags(KipConfig, LabelSolveConfig)` defines one flag per
field (the union over the classes; a field shared by several classes is one
flag) with default None and the field's docstring as help, listing each class's
default. `config_from_flags(KipConfig)` then builds the config from the flags a
user set and the dataclass defaults for the rest, so a default lives only in
the library. A script shows these flags in its `--help` with
`flags.adopt_module_key_flags(_flags)` (called from the script itself).
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

from absl import flags

FLAGS = flags.FLAGS
_DEFINED: dict[str, str] = {}  # flag name -> its type name (a field shared by classes)


def field_docs(cls: type) -> dict[str, str]:
  """`{field: text}` from the 'Attributes:' section of `cls`'s docstring."""
  docs, current, inside = {}, None, False
  for line in (cls.__doc__ or "").splitlines():
    if line.strip() == "Attributes:":
      inside = True
      continue
    if not inside:
      continue
    m = re.match(r"^\s{2,6}(\w+):\s*(.*)$", line)
    if m and m.group(1) in {f.name for f in dataclasses.fields(cls)}:
      current = m.group(1)
      docs[current] = m.group(2)
    elif current and line.strip():
      docs[current] += " " + line.strip()
    elif not line.strip() and current:
      current = None
  return docs


def _type_name(cls: type, field: dataclasses.Field) -> str:
  hint = typing.get_type_hints(cls)[field.name]
  origin = typing.get_origin(hint)
  if origin is typing.Union:  # Optional[X]
    hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
  if origin in (tuple, list):
    inner = typing.get_args(hint)[0]
    return f"list[{inner.__name__}]"
  return hint.__name__


_DEFINE = {"str": flags.DEFINE_string, "int": flags.DEFINE_integer,
           "float": flags.DEFINE_float, "bool": flags.DEFINE_bool,
           "list[str]": flags.DEFINE_list, "list[int]": flags.DEFINE_list}


def define_config_flags(*classes: type, skip: tuple[str, ...] = (),
                        labels: tuple[str, ...] = ()) -> None:
  """Defines a flag for every field of `classes` (except `skip`), default None.

  Args:
    classes: config dataclasses.
    skip: fields that the script sets itself (not user flags).
    labels: a name per class for the help's defaults ('kip', 'ls'); default the
      class names.
  """
  labels = labels or tuple(c.__name__ for c in classes)
  fields: dict[str, list] = {}
  for cls, label in zip(classes, labels):
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
      if f.name in skip:
        continue
      default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
      fields.setdefault(f.name, []).append((label, _type_name(cls, f), default,
                                            docs.get(f.name, "")))
  for name, entries in fields.items():
    kind = entries[0][1]
    if any(e[1] != kind for e in entries):
      raise TypeError(f"field {name} has different types in {labels}")
    if name in _DEFINED:
      continue
    if len(classes) == 1:
      defaults = [_show(entries[0][2])]
    else:
      defaults = sorted({f"{label}: {_show(default)}" for label, _, default, _ in entries})
    text = entries[0][3] or name
    help_text = f"{text} [default {'; '.join(defaults)}]"
    _DEFINE[kind](name, None, help_text)
    _DEFINED[name] = kind
    if kind == "float":
      require_finite(name)


def require_finite(*names: str) -> None:
  """Float flags `names` refuse inf and nan (absl accepts them) with a line naming the flag."""
  for name in names:
    flags.register_validator(name, lambda value: value is None or math.isfinite(value),
                             message=f"--{name} must be a finite number")


def _show(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return ",".join(map(str, value))
  return str(value)


def config_from_flags(cls: type, **fixed) -> Any:
  """`cls(**fields)`: `fixed`, then every flag the user set, then the class defaults.

  Raises:
    ValueError: invalid values (from the dataclass's own checks), naming them.
  """
  values = {}
  for f in dataclasses.fields(cls):
    if f.name in fixed:
      values[f.name] = fixed[f.name]
    elif f.name in _DEFINED and FLAGS[f.name].value is not None:
      value = FLAGS[f.name].value
      if _DEFINED[f.name] == "list[int]":
        try:
          value = tuple(int(v) for v in value)
        except ValueError:
          raise ValueError(f"--{f.name} must be a comma-separated list of integers, "
                           f"got {','.join(value)!r}") from None
      elif _DEFINED[f.name] == "list[str]":
        value = tuple(value)
      values[f.name] = value
  try:
    return cls(**values)
  except TypeError as e:
    raise ValueError(f"{cls.__name__}: {e}") from None


def check_applicable(selected: type, classes, name: str) -> None:
  """Refuses flags the user set that belong to other classes' fields only.

  E.g. `--target_batch` (KIP) with `--method=ls` is an error naming the flag,
  not a silently ignored setting.
  """
  own = {f.name for f in dataclasses.fields(selected)}
  for cls in classes:
    for f in dataclasses.fields(cls):
      if f.name not in own and f.name in _DEFINED and FLAGS[f.name].present:
        raise ValueError(f"--{f.name} does not apply to {name} (its settings: "
                         f"{', '.join(sorted(own))})")
