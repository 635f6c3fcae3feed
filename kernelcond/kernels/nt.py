"""The neural-tangents backend (Novak et al., arXiv:1912.02803).

neural-tangents 0.6.5 imports only on the pinned stack (jax==0.4.23, see
BUILD_NOTES.md); everything here imports it lazily, so this module imports on
any JAX version.
"""

from __future__ import annotations

from typing import Callable

from kernelcond.kernels.spec import ArchSpec


def neural_tangents_available() -> bool:
  """True when neural-tangents imports in this environment."""
  try:
    import neural_tangents  # noqa: F401
  except Exception:  # ImportError, or AttributeError on a too-new JAX
    return False
  return True


def nt_stax(spec: ArchSpec):
  """The neural-tangents `(init_fn, apply_fn, kernel_fn)` triple for `spec`.

  Layers: [Flatten] then `depth` x (Dense | 3x3 SAME Conv, activation
  [, 2x2 AvgPool]), then [GlobalAvgPool | Flatten] and a Dense(1) readout.
  """
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


def kernel_fn(spec: ArchSpec) -> Callable:
  """`base(x1, x2, get)` from neural-tangents, returning a tuple for a tuple `get`."""
  raw = nt_stax(spec)[2]

  def base(x1, x2, get):
    out = raw(x1, x2, get)
    return tuple(out) if isinstance(get, tuple) else out

  return base
