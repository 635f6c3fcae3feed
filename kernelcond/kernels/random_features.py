"""Random-feature kernels: the empirical NNGP / NTK of M random finite networks.

The random feature approximation of RFAD (Loo et al., NeurIPS 2022,
arXiv:2210.12067): instead of the exact infinite-width kernel, whose cost grows
with the number of *pairs* of inputs (and, for pooled ConvNets, with the square
of the number of pixels), draw `M` random finite networks of the spec and use
features of each input, so a kernel matrix costs one forward pass per input
plus one `(n1, D) @ (D, n2)` product.

NNGP features. For a network whose readout is `f(x) = W_std / sqrt(F) z(x) . w + b_std b`
('ntk' parameterisation; 'standard' gives the same law), with readout inputs
`z(x)` of size `F` and standard normal `w`, `b`, the expectation over the readout
is `E_w[f(x1) f(x2)] = W_std^2 / F  z(x1) . z(x2) + b_std^2`. So with

    phi_m(x) = [W_std / sqrt(F) z_m(x), b_std]          (the bias entry if b_std > 0)
    phi(x)   = [phi_1(x), ..., phi_M(x)] / sqrt(M)       shape (D,), D = M (F + 1)

`phi(x1) . phi(x2)` is the average over M networks of the output covariance
given the hidden layers: RFAD's estimator with the readout integrated out (lower
variance than averaging `f(x1) f(x2)` over `out_dim` readout units). It tends to
the spec's NNGP (Lee et al., arXiv:1711.00165; Novak et al., arXiv:1810.05148)
as `width` grows, with a bias O(1/width) (none with one hidden layer) and a
standard deviation O(1/sqrt(M width)).

NTK features. `phi_m(x)` is the gradient of the scalar output `f_m(x)` with
respect to all parameters of network `m` (size `P`), so `phi(x1) . phi(x2)` is
the empirical NTK averaged over M networks; it tends to the spec's NTK (Jacot
et al., arXiv:1806.07572) at the same rates. The gradients come from one
backward pass and patch products (`finite.per_example_grads`). `D = M P` is
large (about `9 width^2` per hidden conv layer), so `make_random_kernel_fn`
contracts them one network at a time instead of materialising all features.

The networks are `finite.init_params(spec, ...)` at `width`; the kernels
approximated are those of `dataclasses.replace(spec, width=width)` (the NNGP and
the 'ntk'-parameterised NTK do not depend on `width`; the 'standard' NTK does).

Not an entry of `BACKENDS`: those compute one exact kernel interchangeably (and
`auto` may swap them), while this is an estimate with its own `n_models`,
`width` and `key`, so it has its own constructor, `make_random_kernel_fn`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp

from kernelcond.kernels import finite
from kernelcond.kernels.backends import KernelFn, check_get, prepare_inputs, wrap_kernel_fn
from kernelcond.kernels.spec import ArchSpec, check_choice, get_spec

FEATURE_KINDS = ("nngp", "ntk")


def _with_width(spec: Union[str, ArchSpec], width: Optional[int]) -> ArchSpec:
  spec = get_spec(spec)
  return spec if width is None else dataclasses.replace(spec, width=int(width))


def _as_float(x: jax.Array) -> jax.Array:
  return x.astype(jnp.result_type(x.dtype, jnp.float32))


def _nngp_features(spec: ArchSpec, params: finite.Params, x: jax.Array) -> jax.Array:
  """`(n, F [+ 1])`: scaled readout inputs of one network (and the bias entry)."""
  z = finite.readout_inputs(spec, params, x)
  z = z * (spec.W_std / math.sqrt(z.shape[-1]))
  if spec.b_std > 0:
    z = jnp.concatenate([z, jnp.full((z.shape[0], 1), spec.b_std, z.dtype)], axis=-1)
  return z


def _ntk_features(spec: ArchSpec, params: finite.Params, x: jax.Array) -> jax.Array:
  """`(n, P)`: per-example gradients of the scalar output of one network."""
  leaves = jax.tree_util.tree_leaves(finite.per_example_grads(spec, params, x))
  return jnp.concatenate([leaf.reshape(x.shape[0], -1) for leaf in leaves], axis=-1)


_FEATURES = {"nngp": _nngp_features, "ntk": _ntk_features}


def _network(spec: ArchSpec, key: jax.Array, x: jax.Array) -> finite.Params:
  """One random network of `spec` (one readout unit) for inputs like `x`."""
  return finite.init_params(spec, key, x.shape[1:], spec.width, 1)


def _check_n_models(n_models) -> None:
  if not (isinstance(n_models, int) and not isinstance(n_models, bool) and n_models >= 1):
    raise ValueError(f"n_models must be a positive integer, got {n_models!r}")


@functools.partial(jax.jit, static_argnames=("spec", "n_models", "kind"))
def _features(key: jax.Array, x: jax.Array, *, spec: ArchSpec, n_models: int,
              kind: str) -> jax.Array:
  """`(n, D)` features of `x` (already in the spec's input shape) from M networks."""
  x = _as_float(x)
  one_model = _FEATURES[kind]
  per_model = jax.lax.map(lambda k: one_model(spec, _network(spec, k, x), x),
                          jax.random.split(key, n_models))  # (M, n, D / M)
  per_model = jnp.moveaxis(per_model, 0, 1)
  return per_model.reshape(x.shape[0], -1) / math.sqrt(n_models)


@functools.partial(jax.jit, static_argnames=("spec", "n_models", "get"))
def _kernel(key: jax.Array, x1: jax.Array, x2: Optional[jax.Array], *, spec: ArchSpec,
            n_models: int, get) -> Union[jax.Array, tuple[jax.Array, ...]]:
  """Mean over M networks of `phi_m(x1) phi_m(x2)^T` (x2=None: x1, features computed once)."""
  kinds = check_get(get)
  dtype = jnp.result_type(x1.dtype, x1.dtype if x2 is None else x2.dtype, jnp.float32)
  x1 = x1.astype(dtype)
  x2 = None if x2 is None else x2.astype(dtype)
  hi = jax.lax.Precision.HIGHEST

  def one(k):
    params = _network(spec, k, x1)
    out = []
    for kind in kinds:
      f1 = _FEATURES[kind](spec, params, x1)
      f2 = f1 if x2 is None else _FEATURES[kind](spec, params, x2)
      out.append(jnp.matmul(f1, f2.T, precision=hi))
    return tuple(out)

  sums = jax.lax.map(one, jax.random.split(key, n_models))  # each (M, n1, n2)
  means = tuple(s.mean(axis=0) for s in sums)
  return means if isinstance(get, tuple) else means[0]


def random_feature_fn(spec: Union[str, ArchSpec], n_models: int, width: Optional[int] = None,
                      get: str = "nngp") -> Callable[[jax.Array, jax.Array], jax.Array]:
  """`features(key, x) -> (n, D)` whose inner products estimate the spec's NNGP or NTK.

  Args:
    spec: an `ArchSpec` or spec string (any fc or conv spec, pooling included).
    n_models: M, the number of random networks.
    width: their hidden width (channels for conv); default `spec.width`.
    get: 'nngp' (scaled readout inputs) or 'ntk' (parameter gradients); see the
      module docstring.

  Returns:
    A pure, jit-compiled `features(key, x)`: `key` draws the M networks (the
    same key gives the same networks), `x` is `(n, d)` or `(n, H, W, C)`
    (flattened for FC specs). Returns `(n, D)`, with
    `features(key, x1) @ features(key, x2).T` the random-feature kernel;
    `D = M (F + [b_std > 0])` for 'nngp' (F the readout fan-in) and `M P` for
    'ntk' (P parameters per network).
  """
  spec = _with_width(spec, width)
  check_choice("random feature kind", get, FEATURE_KINDS)
  _check_n_models(n_models)

  def features(key: jax.Array, x: jax.Array) -> jax.Array:
    return _features(key, prepare_inputs(spec, x), spec=spec, n_models=n_models, kind=get)

  return features


def make_random_kernel_fn(spec: Union[str, ArchSpec], n_models: int,
                          width: Optional[int] = None,
                          key: Optional[jax.Array] = None) -> KernelFn:
  """A `kernel_fn(x1, x2, get)` from M random networks, usable wherever a kernel is.

  Same signature and conventions as `make_kernel_fn(...)`'s result (KRR, KIP,
  Label Solve, `kernel_matrix`): `get` is 'nngp', 'ntk' or a tuple of them. The
  networks are fixed by `key`, so every call (and both arguments) sees the same
  networks, as a kernel must; make a new one with another key to resample them
  (RFAD resamples every step; kernels that differ only in `key` share one
  compiled program). Entries are `sum_m phi_m(x1) . phi_m(x2) / M`, computed one
  network at a time (memory: one network's features of `x1` and `x2`); when `x2`
  is None (or the same array as `x1`) the features are computed once.

  Args:
    spec: an `ArchSpec` or spec string.
    n_models: M, the number of random networks.
    width: their hidden width; default `spec.width`. `kernel_fn.spec` is the
      spec with this width (whose exact kernels this estimates).
    key: PRNG key drawing the networks; default `jax.random.PRNGKey(0)`.

  Returns:
    A pure, jit-able and differentiable `kernel_fn(x1, x2=None, get='ntk')`
    returning `(n1, n2)` arrays; `kernel_fn.backend` is 'random_features'.
  """
  spec = _with_width(spec, width)
  _check_n_models(n_models)
  key = jax.random.PRNGKey(0) if key is None else key

  def base(x1, x2, get):
    return _kernel(key, x1, None if x2 is x1 else x2, spec=spec, n_models=n_models, get=get)

  kernel_fn = wrap_kernel_fn(spec, base, "random_features")
  kernel_fn.n_models = n_models
  return kernel_fn
