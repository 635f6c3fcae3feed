"""Backends for the infinite-width kernels of a spec, and the `stax` triple.

Two backends compute the same `kernel_fn(x1, x2, get)` (to float rounding; the
tests pit them against each other):

* `nt`: neural-tangents' `stax` (`kernels.nt`; needs the pinned jax 0.4.23 stack);
* `native`: closed forms in pure `jax.numpy` (`kernels.native`; any JAX version).

`kernel_fn(x1, x2, get)` takes inputs of shape `(n, H, W, C)` (or `(n, d)` for FC
specs; images are flattened for FC) and returns an `(n1, n2)` array for
`get='nngp'` or `get='ntk'`, and a tuple of arrays for a tuple `get`.

References: Jacot et al., arXiv:1806.07572 (NTK); Lee et al., arXiv:1711.00165
(NNGP); Novak et al., arXiv:1912.02803 (neural-tangents).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp

from kernelcond.kernels import finite, native, nt
from kernelcond.kernels.spec import ArchSpec, check_choice, get_spec

Get = Union[str, tuple[str, ...]]
KernelFn = Callable[..., Union[jax.Array, tuple[jax.Array, ...]]]

KERNEL_KINDS = ("nngp", "ntk")
BACKENDS = ("auto", "nt", "native")


def resolve_backend(backend: str, spec: Union[str, ArchSpec, None] = None) -> str:
  """The backend that `backend` names for `spec`.

  'auto' picks 'native' for FC specs (the same kernels, 1.1-3x faster on CPU in
  `benchmarks/kernels.py` and `benchmarks/kip.py`) and for every spec when
  neural-tangents does not import; otherwise (conv specs, where neural-tangents'
  convolutions are faster on CPU) 'nt'. Without a spec, 'auto' means 'nt' when
  neural-tangents imports.

  Raises:
    ValueError: for an unknown backend (listing the valid ones).
    ImportError: for 'nt' where neural-tangents does not import.
  """
  check_choice("kernel backend", backend, BACKENDS)
  if backend == "auto":
    if spec is not None and get_spec(spec).family == "fc":
      return "native"
    return "nt" if nt.neural_tangents_available() else "native"
  if backend == "nt" and not nt.neural_tangents_available():
    raise ImportError("kernel backend 'nt' needs neural-tangents 0.6.5, which imports only on "
                      "the pinned stack (jax==0.4.23; see BUILD_NOTES.md). Use "
                      "--kernel_backend=native or auto.")
  return backend


def check_closed_form(spec: Union[str, ArchSpec]) -> None:
  """Refuses specs without a closed-form kernel (instance norm), naming the way out."""
  spec = get_spec(spec)
  if spec.norm != "none":
    raise ValueError(f"kernel spec with norm={spec.norm!r} has no closed-form (exact) kernel; "
                     "use its random-feature kernel (--rf_models=M for an evaluation, "
                     "--method=rfad for condensation)")


def check_get(get: Get) -> tuple[str, ...]:
  """The kinds `get` asks for, in order; ValueError for an unknown kind."""
  kinds = get if isinstance(get, tuple) else (get,)
  for kind in kinds:
    check_choice("kernel", kind, KERNEL_KINDS)
  return kinds


def prepare_inputs(spec: ArchSpec, x) -> jax.Array:
  """`x` as the spec's networks take it: flattened `(n, d)` for FC, `(n, H, W, C)` for conv."""
  x = jnp.asarray(x)
  if spec.family == "fc":
    return x.reshape(x.shape[0], -1)
  if x.ndim != 4:
    raise ValueError(f"conv kernels need images of shape (n, H, W, C), got {x.shape}")
  return x


def wrap_kernel_fn(spec: ArchSpec, base: Callable, backend: str) -> KernelFn:
  """The public `kernel_fn(x1, x2=None, get='ntk')` around `base(x1, x2, get)`.

  Checks `get`, brings inputs to the spec's shape, passes `x2 = x1` (the same
  array) when `x2` is None, and records `kernel_fn.spec` and `kernel_fn.backend`.
  """

  def kernel_fn(x1, x2=None, get: Get = "ntk"):
    check_get(get)
    x1 = prepare_inputs(spec, x1)
    x2 = x1 if x2 is None else prepare_inputs(spec, x2)
    return base(x1, x2, get)

  kernel_fn.spec = spec
  kernel_fn.backend = backend
  return kernel_fn


def make_kernel_fn(spec: Union[str, ArchSpec], backend: str = "auto",
                   memory_mib: Optional[float] = None) -> KernelFn:
  """Returns `kernel_fn(x1, x2, get)` for `spec` on the chosen backend.

  Args:
    spec: an `ArchSpec` or spec string (see `get_spec`).
    backend: 'nt', 'native' or 'auto' (see `resolve_backend`).
    memory_mib: native backend, pooled / GAP conv specs: the memory one kernel
      call may hold, gradients included (`native.max_elements_for`); None keeps
      the native default (2**25 entries per block array: at most 4 GiB under
      `grad`). neural-tangents' kernels are not blocked.

  Returns:
    A pure, jit-able `kernel_fn(x1, x2=None, get='ntk')`; `get` is 'nngp',
    'ntk' or a tuple of them (then a tuple of `(n1, n2)` arrays is returned, in
    that order). `kernel_fn.spec` and `kernel_fn.backend` record its origin.
  """
  spec = get_spec(spec)
  check_closed_form(spec)
  backend = resolve_backend(backend, spec)
  if backend == "nt":
    base = nt.kernel_fn(spec)
  elif memory_mib is None:
    base = native.kernel_fn(spec)
  else:
    base = native.kernel_fn(spec, native.max_elements_for(memory_mib))
  return wrap_kernel_fn(spec, base, backend)


def stax(spec: Union[str, ArchSpec], backend: str = "auto", out_dim: int = 1):
  """`(init_fn, apply_fn, kernel_fn)` of one spec, as neural-tangents' `stax` gives them.

  The finite network (`finite.init_and_apply`, width `spec.width`) and the
  kernels of its infinite-width limit (`make_kernel_fn(spec, backend)`): as the
  width grows, `apply_fn(params, x)` at random `params` tends to a Gaussian
  process with covariance `kernel_fn(x, x, 'nngp')` (Lee et al.,
  arXiv:1711.00165), and its parameter-Jacobian inner products to
  `kernel_fn(x, x, 'ntk')` (Jacot et al., arXiv:1806.07572).

  Args:
    spec: an `ArchSpec` or spec string (see `get_spec`).
    backend: kernel backend, 'nt', 'native' or 'auto'.
    out_dim: readout units of the finite network.

  Returns:
    `init_fn(key, input_shape) -> params` (per-example `input_shape`),
    `apply_fn(params, x) -> (n, out_dim)`, and `kernel_fn(x1, x2, get)`.
  """
  spec = get_spec(spec)
  init_fn, apply_fn = finite.init_and_apply(spec, spec.width, out_dim)
  return init_fn, apply_fn, make_kernel_fn(spec, backend)
