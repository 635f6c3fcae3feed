"""Label Solve: the closed-form optimal labels of a fixed support set.

For fixed support images `x_s` (real examples, or images distilled by KIP) the
KRR prediction of target examples is linear in the support labels `y_s`:

    pred(y_s) = A y_s,    A = K_ts (K_ss + reg * trace(K_ss) / n_s * I)^{-1},

with `K_ts` `(n_t, n_s)`, `K_ss` `(n_s, n_s)` and kernelcond's one relative ridge
(`krr.regularized`). Label Solve (Nguyen, Novak, Xiao, Lee, arXiv:2107.13034,
Sec. 3, "Label Solve") picks the labels minimising the squared error on the
targets,

    y_s* = argmin_y ||y_t - A y||^2 + ridge * ||y||^2
         = A^+ y_t                                    (ridge = 0: pseudo-inverse,
                                                       minimum-norm solution)
         = (A^T A + ridge * I)^{-1} A^T y_t           (ridge > 0).

Both cases are solved as one least-squares problem by SVD
(`jnp.linalg.lstsq`): for `ridge > 0` on the stacked system
`[A; sqrt(ridge) I] y = [y_t; 0]`, which equals the normal equations above
without squaring the condition number of `A`. `ridge` is absolute (it weighs
`||y||^2` against a sum over `n_t` targets).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from kernelcond import kernels
from kernelcond import krr
from kernelcond.condense import base


def design_matrix(k_target_support, k_support_support, reg: float = 1e-6) -> jax.Array:
  """`A = K_ts (K_ss + reg tr(K_ss)/n_s I)^{-1}`, shape `(n_t, n_s)`.

  Computed by Cholesky as `(K_reg^{-1} K_st)^T` (`K_reg` is symmetric).

  Args:
    k_target_support: `(n_t, n_s)` kernel between targets and support.
    k_support_support: `(n_s, n_s)` support kernel.
    reg: relative ridge (see `krr.regularized`).
  """
  k_ts = jnp.asarray(k_target_support)
  return krr.solve(jnp.asarray(k_support_support), k_ts.T, reg).T


def solve_labels(k_target_support, k_support_support, y_target, reg: float = 1e-6,
                 ridge: float = 0.0, rcond: Optional[float] = None) -> jax.Array:
  """Closed-form Label Solve from kernel matrices (arXiv:2107.13034).

  Args:
    k_target_support: `(n_t, n_s)` kernel `K_ts`.
    k_support_support: `(n_s, n_s)` kernel `K_ss`.
    y_target: `(n_t, c)` target labels (e.g. one-hot of the training set).
    reg: relative ridge of the KRR solve, `reg * trace(K_ss) / n_s`.
    ridge: absolute weight of the optional penalty `ridge * ||y_s||^2`, `>= 0`.
    rcond: singular values below `rcond * largest` are treated as zero by the
      least-squares solver (default: machine epsilon times `max(n_t, n_s)`).

  Returns:
    `(n_s, c)` labels `y_s` minimising `||y_t - A y_s||^2 + ridge ||y_s||^2`.

  Raises:
    ValueError: on mismatched shapes, a negative ridge, or non-finite results.
  """
  k_ts = jnp.asarray(k_target_support)
  k_ss = jnp.asarray(k_support_support)
  y_t = jnp.asarray(y_target)
  if k_ss.ndim != 2 or k_ss.shape[0] != k_ss.shape[1]:
    raise ValueError(f"k_support_support must be square, got {k_ss.shape}")
  if k_ts.ndim != 2 or k_ts.shape[1] != k_ss.shape[0]:
    raise ValueError(f"k_target_support must be (n_t, {k_ss.shape[0]}), got {k_ts.shape}")
  if y_t.ndim != 2 or y_t.shape[0] != k_ts.shape[0]:
    raise ValueError(f"y_target must be ({k_ts.shape[0]}, classes), got {y_t.shape}")
  if ridge < 0:
    raise ValueError(f"ridge must be >= 0, got {ridge}")
  y_s = _solve(k_ts, k_ss, y_t, reg, ridge, rcond)
  if not bool(jnp.all(jnp.isfinite(y_s))):
    raise ValueError(f"Label Solve is not finite with reg={reg}: the support kernel is "
                     "singular at this precision; increase reg.")
  return y_s


@jax.jit
def _solve(k_ts, k_ss, y_t, reg, ridge, rcond):
  a = design_matrix(k_ts, k_ss, reg)
  n_s = a.shape[1]
  a = jnp.concatenate([a, jnp.sqrt(ridge) * jnp.eye(n_s, dtype=a.dtype)])
  b = jnp.concatenate([y_t, jnp.zeros((n_s, y_t.shape[1]), y_t.dtype)])
  return jnp.linalg.lstsq(a, b, rcond=rcond)[0]


def label_solve(kernel_fn, x_support, x_target, y_target, reg: float = 1e-6,
                get: str = "ntk", ridge: float = 0.0, batch_size: int = 256) -> np.ndarray:
  """Label Solve from images: kernels by `kernels.kernel_matrix`, then `solve_labels`.

  Args:
    kernel_fn: from `kernels.make_kernel_fn`.
    x_support: `(n_s, ...)` support images (real, or distilled by KIP).
    x_target: `(n_t, ...)` target images (e.g. the whole training set).
    y_target: `(n_t, c)` target labels.
    reg: relative ridge; get: 'ntk' or 'nngp'; ridge: absolute label penalty.
    batch_size: kernel block size.

  Returns:
    `(n_s, c)` float32 numpy labels.

  Raises:
    ValueError: when a kernel is not finite (inputs too large for float32).
  """
  k_ss = kernels.kernel_matrix(kernel_fn, x_support, None, get, batch_size)
  k_ts = kernels.kernel_matrix(kernel_fn, x_target, x_support, get, batch_size)
  for name, k, x in (("support", k_ss, x_support), ("target", k_ts, x_target)):
    if not bool(jnp.all(jnp.isfinite(k))):
      raise ValueError(f"Label Solve: the {name} kernel is not finite (inputs up to "
                       f"{float(jnp.max(jnp.abs(jnp.asarray(x)))):.3g} in magnitude overflow "
                       "float32); give preprocessed (standardised) inputs")
  return np.asarray(solve_labels(k_ts, k_ss, y_target, reg, ridge), np.float32)


@dataclasses.dataclass(frozen=True)
class LabelSolveConfig:
  """Settings of Label Solve: THE defaults.

  Attributes:
    kernel: kernel spec (`kernels.get_spec`).
    kernel_backend: 'auto', 'native' or 'nt'.
    kernel_type: 'ntk' or 'nngp'.
    reg: relative ridge of the support solve, `reg * trace(K_ss) / n_s`.
    ridge: absolute penalty `ridge * ||y_s||^2` on the labels (0: minimum-norm).
    block_size: kernel block edge (memory).
    steps: always 1 (one closed-form solve against the whole training set).
  """
  kernel: str = "fc3"
  kernel_backend: str = "auto"
  kernel_type: str = "ntk"
  reg: float = 1e-6
  ridge: float = 0.0
  block_size: int = 512
  steps: int = 1

  def __post_init__(self):
    kernels.get_spec(self.kernel)
    if self.kernel_type not in ("ntk", "nngp"):
      raise ValueError(f"Unknown Label Solve kernel type {self.kernel_type!r}; valid: ntk, nngp")
    if self.steps != 1:
      raise ValueError(f"Label Solve is one closed-form step; steps must be 1, got {self.steps}")
    if self.ridge < 0 or not self.reg >= 0:
      raise ValueError(f"need reg >= 0 and ridge >= 0, got {self.reg}, {self.ridge}")

  @property
  def eval_kernel_type(self) -> str:
    return self.kernel_type


@struct.dataclass
class LabelSolveState:
  """Support images (fixed) and labels (solved at step 1)."""
  x_support: jax.Array
  y_support: jax.Array
  step: jax.Array


def make(config: LabelSolveConfig, kernel_fn=None) -> base.Condenser:
  """Label Solve as a `base.Condenser`: one (not jitted) step solving the labels.

  The step reads the whole training set (`base.whole_data`) and computes the
  kernels block by block (`kernels.kernel_matrix`), so it runs outside `jit`.
  """
  if kernel_fn is None:
    kernel_fn = kernels.make_kernel_fn(config.kernel, config.kernel_backend)

  def init(key, data, x_init, y_init) -> LabelSolveState:
    del key, data
    return LabelSolveState(x_support=jnp.asarray(x_init, jnp.float32),
                           y_support=jnp.asarray(y_init, jnp.float32),
                           step=jnp.zeros((), jnp.int32))

  def update(state: LabelSolveState, data: base.Data, key):
    del key
    y_s = label_solve(kernel_fn, state.x_support, data.x, data.y, reg=config.reg,
                      get=config.kernel_type, ridge=config.ridge, batch_size=config.block_size)
    y_s = jnp.asarray(y_s)
    err = float(jnp.mean(jnp.square(state.y_support - y_s)))
    return state.replace(y_support=y_s, step=state.step + 1), {"label_change": err}

  return base.Condenser(init=init, update=update, sample_batch=base.whole_data, jittable=False)
