"""Architecture specs -> infinite-width NNGP / NTK kernel functions.

A kernel is named by an `ArchSpec` (a frozen dataclass, i.e. config as data).
Named specs (`fc1`, `fc3`, `conv3`, ...) are starting points whose fields can be
overridden, e.g. `get_spec("fc3", W_std=1.5, activation="erf")` or the flag
string `"fc3:W_std=1.5,activation=erf"`.

Two backends produce the same `kernel_fn(x1, x2, get)`:

* `nt`: neural-tangents' `stax` (needs the pinned jax 0.4.23 stack);
* `native`: closed forms in pure `jax.numpy` (any JAX version), in
  `kernelcond/native.py`.

`kernel_fn(x1, x2, get)` takes inputs of shape `(n, H, W, C)` (or `(n, d)` for FC
specs; images are flattened for FC) and returns an `(n1, n2)` array for
`get='nngp'` or `get='ntk'`, and a tuple of arrays for a tuple `get`.
`kernel_matrix` evaluates it over large inputs in memory-bounded blocks, spread
over all local devices.

References: Jacot et al., arXiv:1806.07572 (NTK); Lee et al., arXiv:1711.00165
(NNGP); Novak et al., arXiv:1912.02803 (neural-tangents); default W_std=sqrt(2),
b_std=0.1 follow Nguyen et al., arXiv:2011.00050 and arXiv:2107.13034 (KIP).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Get = Union[str, tuple[str, ...]]
KernelFn = Callable[..., Union[jax.Array, tuple[jax.Array, ...]]]

ACTIVATIONS = ("relu", "erf")
PARAMETERIZATIONS = ("ntk", "standard")
FAMILIES = ("fc", "conv")
READOUTS = ("gap", "flatten")
KERNEL_KINDS = ("nngp", "ntk")
BACKENDS = ("auto", "nt", "native")


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """An architecture whose infinite-width kernel we compute.

  Attributes:
    family: 'fc' (fully connected; inputs are flattened) or 'conv'.
    depth: number of hidden layers (dense layers for 'fc', 3x3 conv layers for
      'conv'), each followed by the activation; a dense readout follows.
    width: hidden width of the finite network (irrelevant to the kernel; used
      for finite networks and Monte-Carlo checks).
    W_std: weight standard deviation (variance W_std**2 / fan_in).
    b_std: bias standard deviation (0 disables biases).
    activation: 'relu' or 'erf'.
    parameterization: 'ntk' or 'standard' (changes the NTK only by how biases
      and weights are scaled in the tangent kernel, see neural-tangents docs).
    pool: 'conv' only: 2x2 average pooling (stride 2) after each conv block.
    readout: 'conv' only: 'gap' (global average pooling) or 'flatten'.
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

  def __post_init__(self):
    _check_choice("family", self.family, FAMILIES)
    _check_choice("activation", self.activation, ACTIVATIONS)
    _check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
    _check_choice("readout", self.readout, READOUTS)
    if not (isinstance(self.depth, int) and self.depth >= 0):
      raise ValueError(f"depth must be a non-negative integer, got {self.depth!r}")
    if self.family == "conv" and self.depth < 1:
      raise ValueError("a 'conv' spec needs depth >= 1")
    if not self.W_std > 0 or not self.b_std >= 0:
      raise ValueError(f"need W_std > 0 and b_std >= 0, got {self.W_std}, {self.b_std}")
    if self.width < 1:
      raise ValueError(f"width must be positive, got {self.width}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _check_choice(field: str, value: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ValueError(f"Unknown {field} {value!r}; valid: {', '.join(choices)}")


NAMED_SPECS: dict[str, ArchSpec] = {
    "fc1": ArchSpec(family="fc", depth=1),
    "fc2": ArchSpec(family="fc", depth=2),
    "fc3": ArchSpec(family="fc", depth=3),
    "fc5": ArchSpec(family="fc", depth=5),
    # The KIP ConvNet (arXiv:2107.13034): conv-ReLU-avgpool blocks, dense readout.
    "conv1": ArchSpec(family="conv", depth=1, pool=True, readout="flatten"),
    "conv2": ArchSpec(family="conv", depth=2, pool=True, readout="flatten"),
    "conv3": ArchSpec(family="conv", depth=3, pool=True, readout="flatten"),
    "conv3_gap": ArchSpec(family="conv", depth=3, pool=True, readout="gap"),
}

_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(ArchSpec)}


def _parse_value(field: str, text: str):
  kind = _FIELD_TYPES[field]
  if kind == "int":
    return int(text)
  if kind == "float":
    return float(eval(text, {"__builtins__": {}}, {"sqrt": math.sqrt}))  # e.g. sqrt(2)
  if kind == "bool":
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"{field} must be true or false, got {text!r}")
    return text.lower() in ("true", "1")
  return text


def get_spec(spec: Union[str, ArchSpec], **overrides) -> ArchSpec:
  """Resolves a spec name (with optional `name:field=value,...`) and overrides.

  Args:
    spec: an `ArchSpec`, a name in `NAMED_SPECS` (e.g. 'fc3'), or a name with
      overrides, e.g. 'fc3:W_std=sqrt(2),b_std=0.05,activation=erf'.
    **overrides: field values that replace the named spec's (None is ignored,
      so unset flags can be passed straight through).

  Raises:
    ValueError: unknown name or field, or an invalid value, with valid options.
  """
  if isinstance(spec, ArchSpec):
    base = spec
  else:
    name, _, rest = str(spec).partition(":")
    if name not in NAMED_SPECS:
      raise ValueError(f"Unknown kernel spec {name!r}; valid: {', '.join(NAMED_SPECS)} "
                       "(optionally 'name:field=value,...')")
    base = NAMED_SPECS[name]
    for item in filter(None, rest.split(",")):
      key, eq, value = item.partition("=")
      key = key.strip()
      if not eq or key not in _FIELD_TYPES:
        raise ValueError(f"Bad kernel spec override {item!r} in {spec!r}; "
                         f"fields: {', '.join(_FIELD_TYPES)}")
      try:
        overrides.setdefault(key, _parse_value(key, value.strip()))
      except (ValueError, SyntaxError, NameError, TypeError) as e:
        raise ValueError(f"Bad value for {key} in kernel spec {spec!r}: {e}") from e
  overrides = {k: v for k, v in overrides.items() if v is not None}
  unknown = set(overrides) - set(_FIELD_TYPES)
  if unknown:
    raise ValueError(f"Unknown ArchSpec fields {sorted(unknown)}; valid: {', '.join(_FIELD_TYPES)}")
  return dataclasses.replace(base, **overrides)


# ---------------------------------------------------------------------------
# Backends.


def neural_tangents_available() -> bool:
  """True when neural-tangents imports in this environment."""
  try:
    import neural_tangents  # noqa: F401
  except Exception:  # ImportError, or AttributeError on a too-new JAX
    return False
  return True


def resolve_backend(backend: str, spec: Union[str, ArchSpec, None] = None) -> str:
  """The backend that `backend` names for `spec`.

  'auto' picks 'native' for FC specs (the same kernels, 1.1-3x faster on CPU in
  `benchmarks/kernels.py` and `benchmarks/kip.py`) and for every spec when
  neural-tangents does not import; otherwise (conv specs, where neural-tangents'
  convolutions are faster on CPU) 'nt'. Without a spec, 'auto' means 'nt' when
  neural-tangents imports.
  """
  _check_choice("kernel backend", backend, BACKENDS)
  if backend == "auto":
    if spec is not None and get_spec(spec).family == "fc":
      return "native"
    return "nt" if neural_tangents_available() else "native"
  if backend == "nt" and not neural_tangents_available():
    raise ImportError("kernel backend 'nt' needs neural-tangents 0.6.5, which imports only on "
                      "the pinned stack (jax==0.4.23; see BUILD_NOTES.md). Use "
                      "--kernel_backend=native or auto.")
  return backend


def nt_stax(spec: ArchSpec):
  """The neural-tangents `(init_fn, apply_fn, kernel_fn)` triple for `spec`."""
  from neural_tangents import stax

  act = {"relu": stax.Relu, "erf": stax.Erf}[spec.activation]
  b_std = spec.b_std if spec.b_std > 0 else None
  common = dict(W_std=spec.W_std, b_std=b_std, parameterization=spec.parameterization)
  layers = []
  if spec.family == "fc":
    layers.append(stax.Flatten())
    for _ in range(spec.depth):
      layers += [stax.Dense(spec.width, **common), act()]
  else:
    for _ in range(spec.depth):
      layers += [stax.Conv(spec.width, (3, 3), padding="SAME", **common), act()]
      if spec.pool:
        layers.append(stax.AvgPool((2, 2), strides=(2, 2)))
    layers.append(stax.GlobalAvgPool() if spec.readout == "gap" else stax.Flatten())
  layers.append(stax.Dense(1, **common))
  return stax.serial(*layers)


def _prepare(spec: ArchSpec, x: jax.Array) -> jax.Array:
  if spec.family == "fc":
    return x.reshape(x.shape[0], -1)
  if x.ndim != 4:
    raise ValueError(f"conv kernels need images of shape (n, H, W, C), got {x.shape}")
  return x


def make_kernel_fn(spec: Union[str, ArchSpec], backend: str = "auto") -> KernelFn:
  """Returns `kernel_fn(x1, x2, get)` for `spec` on the chosen backend.

  Args:
    spec: an `ArchSpec` or spec string (see `get_spec`).
    backend: 'nt', 'native' or 'auto' (see `resolve_backend`).

  Returns:
    A pure, jit-able `kernel_fn(x1, x2, get='ntk')`; `get` is 'nngp', 'ntk' or a
    tuple of them (then a tuple of `(n1, n2)` arrays is returned, in that order).
  """
  spec = get_spec(spec)
  backend = resolve_backend(backend, spec)
  if backend == "nt":
    raw = nt_stax(spec)[2]

    def base(x1, x2, get):
      out = raw(x1, x2, get)
      return tuple(out) if isinstance(get, tuple) else out
  else:
    from kernelcond.kernels import native
    base = native.kernel_fn(spec)

  def kernel_fn(x1, x2=None, get: Get = "ntk"):
    kinds = get if isinstance(get, tuple) else (get,)
    for k in kinds:
      _check_choice("kernel", k, KERNEL_KINDS)
    x1 = _prepare(spec, jnp.asarray(x1))
    x2 = x1 if x2 is None else _prepare(spec, jnp.asarray(x2))
    return base(x1, x2, tuple(kinds) if isinstance(get, tuple) else get)

  kernel_fn.spec = spec
  kernel_fn.backend = backend
  return kernel_fn


# ---------------------------------------------------------------------------
# Blocked, multi-device kernel matrices.


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
  pad = (-x.shape[0]) % multiple
  if pad:
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  return x


@functools.lru_cache(maxsize=32)
def _block_fn(kernel_fn: KernelFn, get: Get, n_devices: int):
  """pmap over devices of: one x1 block against every x2 block (lax.map)."""

  def one_block(x1_block, x2_blocks):
    out = jax.lax.map(lambda x2b: kernel_fn(x1_block, x2b, get), x2_blocks)
    # out: (n_col_blocks, b1, b2) (or a tuple of them) -> (b1, n_col_blocks * b2)
    fix = lambda k: jnp.moveaxis(k, 0, 1).reshape(k.shape[1], -1)
    return tuple(map(fix, out)) if isinstance(get, tuple) else fix(out)

  devices = jax.local_devices()[:n_devices]
  return jax.pmap(one_block, in_axes=(0, None), devices=devices)


def kernel_matrix(kernel_fn: KernelFn, x1, x2=None, get: Get = "ntk",
                  batch_size: int = 256, n_devices: int | None = None):
  """Computes `kernel_fn(x1, x2, get)` in `batch_size` blocks over all local devices.

  Rows of `x1` are padded to a multiple of `n_devices * batch_size` and columns
  of `x2` to a multiple of `batch_size` (padding is sliced off again), so any
  sizes work. Blocks of rows are spread across devices with `jax.pmap`; each
  device loops over column blocks, so memory is bounded by one
  `(batch_size, batch_size)` kernel block (times its spatial size for conv).

  Args:
    kernel_fn: from `make_kernel_fn`.
    x1: `(n1, ...)` inputs. x2: `(n2, ...)` inputs, or None for `x1`.
    get: 'nngp', 'ntk' or a tuple of them.
    batch_size: block edge.
    n_devices: how many local devices to use (default: all).

  Returns:
    `(n1, n2)` numpy array (a tuple of them for a tuple `get`).
  """
  x1 = np.asarray(x1)
  x2 = x1 if x2 is None else np.asarray(x2)
  n1, n2 = len(x1), len(x2)
  d = n_devices or jax.local_device_count()
  b1 = max(1, min(batch_size, -(-n1 // d)))
  b2 = max(1, min(batch_size, n2))
  x1p = _pad_rows(x1, d * b1)
  x2p = _pad_rows(x2, b2).reshape((-1, b2) + x2.shape[1:])
  fn = _block_fn(kernel_fn, get, d)
  rows = []
  x2_dev = jnp.asarray(x2p)
  for start in range(0, len(x1p), d * b1):
    chunk = x1p[start:start + d * b1].reshape((d, b1) + x1.shape[1:])
    rows.append(jax.device_get(fn(chunk, x2_dev)))

  def assemble(parts):
    full = np.concatenate([p.reshape(-1, p.shape[-1]) for p in parts])
    return full[:n1, :n2]

  if isinstance(get, tuple):
    return tuple(assemble([r[i] for r in rows]) for i in range(len(get)))
  return assemble(rows)
