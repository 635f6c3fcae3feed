"""Architecture specs: the `ArchSpec` config, the named specs, and the spec-string parser.

A kernel (and its finite network) is named by an `ArchSpec`, a frozen dataclass.
Named specs (`fc1`, `fc3`, `conv3`, ...) live in the `NAMED_SPECS` registry and
are starting points whose fields can be overridden, either by keyword,
`get_spec("fc3", W_std=1.5)`, or by a flag string,
`get_spec("fc3:W_std=1.5,activation=erf")`.

The flag string is parsed by hand, never evaluated: integers, booleans
(`true/false/1/0`), strings, decimal numbers (`1.4142`, `2e-1`) and the single
expression form `sqrt(<number>)` are accepted; anything else, and any value that
is not finite (`1e400`, `inf`, `nan`), is a `ValueError` naming the field and the
spec.

Defaults W_std=sqrt(2), b_std=0.1 follow Nguyen et al., arXiv:2011.00050 and
arXiv:2107.13034 (KIP).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, Union

from kernelcond.registry import Registry, choice_validator

ACTIVATIONS = ("relu", "erf")
PARAMETERIZATIONS = ("ntk", "standard")
FAMILIES = ("fc", "conv")
READOUTS = ("gap", "flatten")
NORMS = ("none", "instance")


def check_choice(field: str, value: str, choices) -> None:
  """Raises `ValueError` naming `field` and the valid `choices` if `value` is not one."""
  choice_validator(field, choices)(value)


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_real(value: Any) -> bool:
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """An architecture: its finite networks and its infinite-width kernels.

  Attributes:
    family: 'fc' (fully connected; inputs are flattened) or 'conv'.
    depth: number of hidden layers (dense layers for 'fc', 3x3 SAME conv layers
      for 'conv'), each followed by the activation; a dense readout follows.
    width: hidden width (channels for 'conv') of the finite network. The NNGP and
      the 'ntk'-parameterised NTK do not depend on it; the 'standard' NTK does.
    W_std: weight standard deviation (variance W_std**2 / fan_in).
    b_std: bias standard deviation (0 disables biases).
    activation: 'relu' or 'erf'.
    parameterization: 'ntk' or 'standard' (Sohl-Dickstein et al.,
      arXiv:2001.07301): how weights are scaled, which changes the NTK only.
    pool: 'conv' only: 2x2 average pooling (stride 2) after each conv block.
    readout: 'conv' only: 'gap' (global average pooling) or 'flatten'.
    norm: 'conv' only: 'none', or 'instance' (each conv output standardised per
      example and channel over its positions, before the activation, as the
      ConvNet of DC/DSA/DM). Instance norm has no closed-form kernel: such a
      spec has finite networks and random-feature kernels
      (`make_random_kernel_fn`) only.
  """
  family: str = "fc"
  depth: int = 3
  width: int = 1024
  W_std: float = math.sqrt(2.0)
  b_std: float = 0.1
  activation: str = "relu"
  parameterization: str = "ntk"
  pool: bool = False
  readout: str = "flatten"
  norm: str = "none"

  def __post_init__(self):
    check_choice("family", self.family, FAMILIES)
    check_choice("activation", self.activation, ACTIVATIONS)
    check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
    check_choice("readout", self.readout, READOUTS)
    check_choice("norm", self.norm, NORMS)
    if self.norm != "none" and self.family != "conv":
      raise ValueError(f"norm={self.norm!r} needs a 'conv' spec, got family {self.family!r}")
    if not (_is_int(self.depth) and self.depth >= 0):
      raise ValueError(f"depth must be a non-negative integer, got {self.depth!r}")
    if self.family == "conv" and self.depth < 1:
      raise ValueError("a 'conv' spec needs depth >= 1")
    if not (_is_int(self.width) and self.width >= 1):
      raise ValueError(f"width must be a positive integer, got {self.width!r}")
    if not (_is_finite_real(self.W_std) and _is_finite_real(self.b_std)
            and self.W_std > 0 and self.b_std >= 0):
      raise ValueError(f"need finite W_std > 0 and b_std >= 0, got {self.W_std!r}, "
                       f"{self.b_std!r}")
    if self.pool not in (True, False):
      raise ValueError(f"pool must be a bool, got {self.pool!r}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


NAMED_SPECS: Registry[ArchSpec] = Registry("kernel spec")
NAMED_SPECS.register("fc1", ArchSpec(family="fc", depth=1))
NAMED_SPECS.register("fc2", ArchSpec(family="fc", depth=2))
NAMED_SPECS.register("fc3", ArchSpec(family="fc", depth=3))
NAMED_SPECS.register("fc5", ArchSpec(family="fc", depth=5))
# The KIP ConvNet (arXiv:2107.13034): conv-ReLU-avgpool blocks, dense readout.
NAMED_SPECS.register("conv1", ArchSpec(family="conv", depth=1, pool=True))
NAMED_SPECS.register("conv2", ArchSpec(family="conv", depth=2, pool=True))
NAMED_SPECS.register("conv3", ArchSpec(family="conv", depth=3, pool=True))
NAMED_SPECS.register("conv3_gap", ArchSpec(family="conv", depth=3, pool=True, readout="gap"))
# The ConvNet of DC/DSA/DM (conv, instance norm, ReLU, avgpool blocks): random-feature
# kernels and finite networks only (no closed form).
NAMED_SPECS.register("conv3_in", ArchSpec(family="conv", depth=3, pool=True, norm="instance"))

FIELD_TYPES: dict[str, str] = {f.name: f.type for f in dataclasses.fields(ArchSpec)}

# A decimal number: 2, -0.5, .25, 1.4142, 3e-2 (no inf / nan / hex / underscores).
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER, re.ASCII)
_SQRT_RE = re.compile(rf"sqrt\(\s*({_NUMBER})\s*\)", re.ASCII)
_INT_RE = re.compile(r"[+-]?\d+", re.ASCII)
_INT_LIMIT = 2 ** 31  # depth and width beyond this are typos, not networks
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _parse_float(text: str) -> float:
  """`<number>` or `sqrt(<number>)` -> a finite float; ValueError otherwise."""
  if _NUMBER_RE.fullmatch(text):
    value = float(text)
  elif (match := _SQRT_RE.fullmatch(text)):
    radicand = float(match.group(1))
    if radicand < 0:
      raise ValueError(f"sqrt of a negative number: {text!r}")
    value = math.sqrt(radicand)
  else:
    raise ValueError(f"expected a finite number or sqrt(<number>), got {text!r}")
  if not math.isfinite(value):
    raise ValueError(f"{text!r} is not a finite number")
  return value


def parse_value(field: str, text: str):
  """Parses the text of one override by the type of `ArchSpec.<field>` (no `eval`).

  Args:
    field: an `ArchSpec` field name.
    text: the value as written, e.g. '3', 'sqrt(2)', '1.5e-1', 'true', 'erf'.

  Returns:
    An int, finite float, bool or string.

  Raises:
    ValueError: if `text` is not a literal of the field's type (or not finite).
  """
  return parse_literal(FIELD_TYPES[field], text)


def parse_literal(kind: str, text: str):
  """Parses `text` as a literal of type `kind` ('int', 'float', 'bool'; else a string), no `eval`."""
  text = text.strip()
  if kind == "int":
    if not _INT_RE.fullmatch(text):
      raise ValueError(f"expected an integer, got {text!r}")
    if abs(int(text)) >= _INT_LIMIT:
      raise ValueError(f"{text!r} is out of range (|value| < 2**31)")
    return int(text)
  if kind == "float":
    return _parse_float(text)
  if kind == "bool":
    if text.lower() not in _BOOLS:
      raise ValueError(f"expected true or false, got {text!r}")
    return _BOOLS[text.lower()]
  if not text:
    raise ValueError("empty value")
  return text


def parse_overrides(spec: str, rest: str) -> dict:
  """`'field=value,...'` (the part after ':' of spec string `spec`) -> {field: value}."""
  out = {}
  for item in filter(None, (part.strip() for part in rest.split(","))):
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or key not in FIELD_TYPES:
      raise ValueError(f"Bad kernel spec override {item!r} in {spec!r}; "
                       f"fields: {', '.join(FIELD_TYPES)}")
    if key in out:
      raise ValueError(f"Field {key} is given twice in kernel spec {spec!r}")
    try:
      out[key] = parse_value(key, value)
    except ValueError as e:
      raise ValueError(f"Bad value for {key} in kernel spec {spec!r}: {e}") from None
  return out


def get_spec(spec: Union[str, ArchSpec], **overrides) -> ArchSpec:
  """Resolves a spec name (with optional `name:field=value,...`) and overrides.

  Args:
    spec: an `ArchSpec`, a name in `NAMED_SPECS` (e.g. 'fc3'), or a name with
      overrides, e.g. 'fc3:W_std=sqrt(2),b_std=0.05,activation=erf'.
    **overrides: field values that replace the named spec's and the string's
      (None is ignored, so unset flags can be passed straight through).

  Returns:
    The `ArchSpec`.

  Raises:
    ValueError: unknown name or field (listing the valid ones), an unparsable
      or non-finite value (naming the field and the spec), or an invalid spec.
  """
  if isinstance(spec, ArchSpec):
    base, parsed = spec, {}
  else:
    name, _, rest = str(spec).partition(":")
    try:
      base = NAMED_SPECS.get(name.strip())
    except ValueError as e:
      raise ValueError(f"{e} (optionally 'name:field=value,...')") from None
    parsed = parse_overrides(str(spec), rest)
  given = {k: v for k, v in overrides.items() if v is not None}
  unknown = sorted(set(given) - set(FIELD_TYPES))
  if unknown:
    raise ValueError(f"Unknown ArchSpec fields {unknown}; valid: {', '.join(FIELD_TYPES)}")
  return dataclasses.replace(base, **{**parsed, **given})
