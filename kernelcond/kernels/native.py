"""Infinite-width NNGP / NTK kernels in pure `jax.numpy` (the `native` backend).

`kernel_fn(spec)` returns `base(x1, x2, get)` for an `ArchSpec`; it computes
exactly what neural-tangents' `stax` network `kernels.nt.nt_stax(spec)` computes,
layer by layer, but runs on any JAX version and is jit-able and differentiable
with respect to both inputs (KIP differentiates it w.r.t. the support images).

Layer rules (neural-tangents conventions, Novak et al. arXiv:1912.02803):

* Input: `q = x1 . x2 / d` (FC, `d` features) or, for images,
  `q[a, b, h, w, h', w'] = sum_c x1[a, h, w, c] x2[b, h', w', c] / C`.
* Dense / Conv in 'ntk' parameterisation (Jacot et al. arXiv:1806.07572):
  `q <- W_std^2 A(q) + b_std^2`, `ntk <- q_new + W_std^2 A(ntk)`, where `A` is
  the identity for Dense and, for a 3x3 SAME convolution, the mean over the 9
  joint shifts `A(q)[h, w, h', w'] = 1/9 sum_{i,j in -1..1} q[h+i, w+j, h'+i, w'+j]`
  (zero padded; Novak et al. arXiv:1810.05148, Garriga-Alonso et al.
  arXiv:1808.05587).
* Standard parameterisation (Sohl-Dickstein et al. arXiv:2001.07301):
  `ntk <- fan_in A(q) + W_std^2 A(ntk) + [b_std > 0]`, with the same `q`
  update; `fan_in` is the finite layer's fan-in (input features; `width` for
  hidden dense layers; `9 * channels` for convolutions; `H * W * width` for the
  readout after `Flatten`), so the standard NTK depends on `spec.width`.
* ReLU (arc-cosine kernel of degree 1, Cho & Saul NeurIPS 2009; Lee et al.
  arXiv:1711.00165): with `s = sqrt(q11 q22 - q12^2)`, `theta = atan2(s, q12)`:
  `q12 <- (s + (pi - theta) q12) / (2 pi)`, `ntk <- ntk (pi - theta) / (2 pi)`.
* Erf (Williams, NeurIPS 1997): with `r = sqrt((1 + 2 q11)(1 + 2 q22) - 4 q12^2)`:
  `q12 <- 2/pi atan2(2 q12, r)`, `ntk <- ntk 4 / (pi r)`.
* 2x2 average pooling (stride 2, VALID): mean over 2x2 blocks in `(h, w)` and in
  `(h', w')` (odd trailing rows/columns are dropped).
* Readout: `Flatten` keeps the mean over the spatial diagonal (`h = h'`,
  `w = w'`); global average pooling keeps the mean over all `(h, w, h', w')`.

The square roots and `atan2` have custom derivatives that are finite where
their arguments vanish (identical inputs, all-zero inputs or image regions), so
gradients stay finite where the closed forms have a cone. For ReLU,
`q11 q22 - q12^2` below 64 machine epsilons (relative) is rounding noise and is
set to exactly 0, as for identical inputs (see `_cone_sqrt`); in float32 the
polynomial `_arctan2_fast` replaces XLA's slow CPU `atan2`.

Memory (float32, `n1 x n2` block): FC needs a few `(n1, n2)` arrays plus the
`(n1, d)`, `(n2, d)` inputs. A conv net without pooling and with a `Flatten`
readout needs only the spatial diagonal: a few `(n1, n2, H, W)` arrays. With
pooling or `readout='gap'` the full spatial covariance is required: each array
is `(r, c, H, W, H, W)` for a block of `r` rows of `x1` and `c` rows of `x2`,
tiled by `block_plan` so that one array holds at most `max_elements` entries
(default 2**25, 128 MiB in float32; one image pair, `(HW)^2` entries, is the
smallest block). Blocks run under nested `lax.map`s with rematerialisation, so
reverse-mode gradients keep the bound: XLA:CPU's compiled memory of KIP's
`value_and_grad` took 12-26 block arrays (`LIVE_ARRAYS` = 32 with headroom;
`max_elements_for(memory_mib)` turns a budget into `max_elements`), plus the
per-image `(n, H, W, H, W)` variances, blocked the same way.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

Get = Union[str, tuple[str, ...]]

_TINY = 1e-30


# ---------------------------------------------------------------------------
# Numerically safe primitives (finite derivatives at the cone of the closed forms).


@jax.custom_jvp
def _safe_sqrt(x: jax.Array) -> jax.Array:
  """`sqrt(max(x, 0))` whose derivative is 0 (not inf/NaN) where `x <= 1e-30`."""
  return jnp.sqrt(jnp.maximum(x, 0.0))


@_safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
  x, = primals
  x_dot, = tangents
  root = jnp.sqrt(jnp.maximum(x, _TINY))
  out = _safe_sqrt(x)
  return out, jnp.where(x > _TINY, x_dot / (2 * root), jnp.zeros_like(root))


def _cone_tolerance(dtype) -> float:
  """Relative size of `q11 q22 - q12^2` below which it is rounding noise (64 eps).

  For the same input on both sides the exact value is 0, but the float32 input
  Gram entry and the squared norms round differently, leaving up to ~15 eps
  (measured, d = 784): its square root would perturb the ReLU NTK by ~1e-4.
  """
  return 64 * float(jnp.finfo(dtype).eps)


@jax.custom_jvp
def _cone_sqrt(gap: jax.Array, scale: jax.Array) -> jax.Array:
  """`sqrt(gap)`, set to 0 (value and derivative) where `gap <= 64 eps * scale`.

  Used for `sqrt(q11 q22 - q12^2)` (`scale = q11 q22`): angles below
  ~sqrt(64 eps) (3e-3 rad in float32, 1e-7 in float64) are unresolvable
  rounding noise and are treated as the exact 0 of identical inputs, which
  keeps kernel diagonals and their gradients consistent and finite.
  """
  keep = gap > _cone_tolerance(gap.dtype) * scale
  return jnp.where(keep, jnp.sqrt(jnp.where(keep, gap, 1)), 0)


@_cone_sqrt.defjvp
def _cone_sqrt_jvp(primals, tangents):
  gap, scale = primals
  gap_dot, _ = tangents
  keep = gap > _cone_tolerance(gap.dtype) * scale
  root = jnp.sqrt(jnp.where(keep, gap, 1))
  return jnp.where(keep, root, 0), jnp.where(keep, gap_dot / (2 * root), 0)


# atan(a) ~= a * P(a^2) on [0, 1]: a near-minimax fit (iteratively reweighted least
# squares on Chebyshev nodes), max error 6e-9, below float32 resolution.
_ATAN_COEFFS = (0.9999998863855167, -0.333325970348982, 0.19985906823104035,
                -0.14161229398110706, 0.10498946390116977, -0.07234857420647202,
                0.039781219420244034, -0.014401353283485564, 0.0024567230354407485)


def _arctan2_fast(y: jax.Array, x: jax.Array) -> jax.Array:
  """float32 `atan2(y, x)` by octant reduction and a polynomial (abs. error ~1e-7).

  XLA's CPU `atan2` costs ~13 ns per entry and dominates the FC recursion; this
  fuses into a few multiply-adds. Used only for float32 and lower precision.
  """
  ay, ax = jnp.abs(y), jnp.abs(x)
  hi, lo = jnp.maximum(ay, ax), jnp.minimum(ay, ax)
  a = lo / jnp.where(hi > 0, hi, 1)
  z = a * a
  poly = jnp.zeros_like(a)
  for c in reversed(_ATAN_COEFFS):
    poly = poly * z + c
  r = a * poly
  r = jnp.where(ay > ax, jnp.pi / 2 - r, r)
  r = jnp.where(x < 0, jnp.pi - r, r)
  return jnp.where(y < 0, -r, r)


@jax.custom_jvp
def _safe_arctan2(y: jax.Array, x: jax.Array) -> jax.Array:
  """`atan2(y, x)`, equal to pi/2 at `(0, 0)`, with a derivative that is finite there."""
  both_zero = (y == 0) & (x == 0)
  x = jnp.where(both_zero, jnp.ones_like(x), x)
  fast = jnp.finfo(jnp.result_type(y, x)).bits <= 32
  angle = _arctan2_fast(y, x) if fast else jnp.arctan2(y, x)
  return jnp.where(both_zero, jnp.pi / 2, angle)


@_safe_arctan2.defjvp
def _safe_arctan2_jvp(primals, tangents):
  y, x = primals
  y_dot, x_dot = tangents
  denom = jnp.maximum(x * x + y * y, _TINY)
  return _safe_arctan2(y, x), (x * y_dot - y * x_dot) / denom


# ---------------------------------------------------------------------------
# Layer rules on covariance arrays. `q` is an NNGP covariance, `t` the NTK: the
# float 0.0 at the input (identically zero), or None when only the NNGP is wanted.
# `d1`, `d2` are the variances of the two arguments at the same positions,
# broadcastable against `q`.


def _affine(q, t, fan_in: float, spec):
  """Dense / Conv weight rule (after the linear map `A` was applied to `q`, `t`).

  Args:
    q: `A(nngp)` of any shape. t: `A(ntk)`, the float 0.0 (zero NTK) or None
      (NTK not tracked).
    fan_in: the finite layer's fan-in (used by the standard parameterisation).
    spec: the `ArchSpec` (W_std, b_std, parameterization).

  Returns:
    `(nngp, ntk)` after the layer; `ntk` is None when `t` was None.
  """
  w2, b2 = spec.W_std ** 2, spec.b_std ** 2
  q_new = w2 * q + b2 if spec.b_std > 0 else w2 * q
  if t is None:
    return q_new, None
  t_scaled = 0.0 if isinstance(t, float) else w2 * t
  if spec.parameterization == "ntk":
    t_new = q_new + t_scaled
  else:
    t_new = fan_in * q + t_scaled
    if spec.b_std > 0:
      t_new = t_new + 1.0
  return q_new, t_new


def _act(q, t, d1, d2, activation: str):
  """Activation rule for the covariance `q` (and NTK `t`) given the variances.

  Args:
    q: `(...)` cross covariances. t: NTK of the same shape, or None.
    d1, d2: variances of the first / second argument, broadcastable to `q`.
    activation: 'relu' (arc-cosine kernel, Cho & Saul 2009) or 'erf'
      (Williams 1997).

  Returns:
    `(q, t)` after the activation.
  """
  if activation == "relu":
    prod = d1 * d2
    s = _cone_sqrt(prod - q * q, prod)
    theta = _safe_arctan2(s, q)
    slope = (jnp.pi - theta) / (2 * jnp.pi)  # E[relu'(u) relu'(v)]
    q_new = s / (2 * jnp.pi) + slope * q
  else:
    r = _safe_sqrt((1 + 2 * d1) * (1 + 2 * d2) - 4 * q * q)
    q_new = (2 / jnp.pi) * _safe_arctan2(2 * q, r)
    slope = (4 / jnp.pi) / r  # E[erf'(u) erf'(v)]; r >= 1 always.
  return q_new, (None if t is None else t * slope)


def _act_var(d, activation: str):
  """Activation rule for a variance (the diagonal, `q12 = d1 = d2 = d`)."""
  if activation == "relu":
    return d / 2
  return (2 / jnp.pi) * _safe_arctan2(d, _safe_sqrt(d + 0.25))


# --- spatial operators on the trailing (H, W) or (H, W, H', W') axes. ---


def _conv_diag(q):
  """3x3 SAME conv rule on spatially diagonal covariances `(..., H, W)`."""
  h, w = q.shape[-2:]
  p = jnp.pad(q, [(0, 0)] * (q.ndim - 2) + [(1, 1), (1, 1)])
  rows = p[..., 0:h, :] + p[..., 1:h + 1, :] + p[..., 2:h + 2, :]
  return (rows[..., 0:w] + rows[..., 1:w + 1] + rows[..., 2:w + 2]) / 9.0


def _conv_full(q):
  """3x3 SAME conv rule on full covariances `(..., H, W, H', W')`: joint shifts."""
  h, w = q.shape[-4:-2]
  lead = [(0, 0)] * (q.ndim - 4)
  p = jnp.pad(q, lead + [(1, 1), (0, 0), (1, 1), (0, 0)])
  q = sum(p[..., i:i + h, :, i:i + h, :] for i in range(3))
  p = jnp.pad(q, lead + [(0, 0), (1, 1), (0, 0), (1, 1)])
  return sum(p[..., :, j:j + w, :, j:j + w] for j in range(3)) / 9.0


def _pool_full(q):
  """2x2 stride-2 VALID average pooling on full covariances `(..., H, W, H', W')`."""
  h, w = (s // 2 for s in q.shape[-4:-2])
  q = q[..., :2 * h, :2 * w, :2 * h, :2 * w]
  q = q.reshape(q.shape[:-4] + (h, 2, w, 2, h, 2, w, 2))
  return q.mean(axis=(-7, -5, -3, -1))


def _spatial_diagonal(q):
  """`(..., H, W, H, W) -> (..., H, W)`: the entries with `h = h'`, `w = w'`."""
  h, w = q.shape[-2:]
  flat = q.reshape(q.shape[:-4] + (h * w, h * w))
  return jnp.diagonal(flat, axis1=-2, axis2=-1).reshape(q.shape[:-4] + (h, w))


# ---------------------------------------------------------------------------
# Fully connected networks.


def _fc(spec, x1, x2, compute_ntk: bool):
  """NNGP and NTK `(n1, n2)` of `spec` (family 'fc') for flat inputs `(n, d)`."""
  d = x1.shape[-1]
  hi = jax.lax.Precision.HIGHEST
  q = jnp.matmul(x1, x2.T, precision=hi) / d
  d1 = jnp.sum(x1 * x1, axis=-1, keepdims=True) / d  # (n1, 1)
  d2 = (jnp.sum(x2 * x2, axis=-1) / d)[None, :]  # (1, n2)
  t = 0.0 if compute_ntk else None
  fan_in = d
  for _ in range(spec.depth):
    q, t = _affine(q, t, fan_in, spec)
    d1, _ = _affine(d1, None, fan_in, spec)
    d2, _ = _affine(d2, None, fan_in, spec)
    q, t = _act(q, t, d1, d2, spec.activation)
    d1, d2 = _act_var(d1, spec.activation), _act_var(d2, spec.activation)
    fan_in = spec.width
  return _affine(q, t, fan_in, spec)


# ---------------------------------------------------------------------------
# Convolutional networks.


def _needs_full_spatial(spec) -> bool:
  """Pooling or GAP mixes positions, so off-diagonal spatial covariances matter."""
  return spec.pool or spec.readout == "gap"


def _readout_fan_in(spec, h: int, w: int) -> int:
  return spec.width if spec.readout == "gap" else h * w * spec.width


def _conv_diagonal_spatial(spec, x1, x2, compute_ntk: bool):
  """Conv net without pooling and with a Flatten readout: `(n1, n2, H, W)` path."""
  hi = jax.lax.Precision.HIGHEST
  c = x1.shape[-1]
  q = jnp.einsum("ahwc,bhwc->abhw", x1, x2, precision=hi) / c
  d1 = (jnp.sum(x1 * x1, axis=-1) / c)[:, None]  # (n1, 1, H, W)
  d2 = (jnp.sum(x2 * x2, axis=-1) / c)[None]  # (1, n2, H, W)
  t = 0.0 if compute_ntk else None
  fan_in = 9 * c
  for _ in range(spec.depth):
    q, t = _affine(_conv_diag(q), None if t is None else _conv_t(t, _conv_diag), fan_in, spec)
    d1, _ = _affine(_conv_diag(d1), None, fan_in, spec)
    d2, _ = _affine(_conv_diag(d2), None, fan_in, spec)
    q, t = _act(q, t, d1, d2, spec.activation)
    d1, d2 = _act_var(d1, spec.activation), _act_var(d2, spec.activation)
    fan_in = 9 * spec.width
  h, w = q.shape[-2:]
  q = q.mean(axis=(-2, -1))
  t = None if t is None else t.mean(axis=(-2, -1))
  return _affine(q, t, _readout_fan_in(spec, h, w), spec)


def _conv_t(t, op):
  """Applies a linear spatial operator to an NTK that may still be the scalar 0."""
  return t if isinstance(t, float) else op(t)


def _self_variances(spec, x):
  """Per-image full covariances through the network; returns the pre-activation diagonals.

  Args:
    spec: conv `ArchSpec`. x: `(n, H, W, C)` images.

  Returns:
    A list with, for each conv layer, the `(n, H_l, W_l)` variances of its
    pre-activations (the `cov1` diagonals neural-tangents pairs with `nngp`).
  """
  hi = jax.lax.Precision.HIGHEST
  q = jnp.einsum("ahwc,aHWc->ahwHW", x, x, precision=hi) / x.shape[-1]
  out = []
  for layer in range(spec.depth):
    q, _ = _affine(_conv_full(q), None, 0, spec)
    d = _spatial_diagonal(q)
    out.append(d)
    if layer == spec.depth - 1:
      break
    q, _ = _act(q, None, d[..., None, None], d[..., None, None, :, :], spec.activation)
    if spec.pool:
      q = _pool_full(q)
  return out


def _conv_cross(spec, x1, x2, vars1, vars2, compute_ntk: bool):
  """Full-spatial cross kernels of `x1` (a chunk) and `x2`; returns `(n1, n2)` arrays."""
  hi = jax.lax.Precision.HIGHEST
  c = x1.shape[-1]
  q = jnp.einsum("ahwc,bHWc->abhwHW", x1, x2, precision=hi) / c
  t = 0.0 if compute_ntk else None
  fan_in = 9 * c
  for layer in range(spec.depth):
    q, t = _affine(_conv_full(q), None if t is None else _conv_t(t, _conv_full), fan_in, spec)
    d1 = vars1[layer][:, None, :, :, None, None]
    d2 = vars2[layer][None, :, None, None, :, :]
    q, t = _act(q, t, d1, d2, spec.activation)
    if spec.pool:
      q = _pool_full(q)
      t = None if t is None else _pool_full(t)
    fan_in = 9 * spec.width
  h, w = q.shape[-2:]
  if spec.readout == "gap":
    reduce = lambda a: a.mean(axis=(-4, -3, -2, -1))
  else:
    reduce = lambda a: _spatial_diagonal(a).mean(axis=(-2, -1))
  return _affine(reduce(q), None if t is None else reduce(t),
                 _readout_fan_in(spec, h, w), spec)


def _chunk_size(n_rows: int, per_row: int, max_elements: int) -> int:
  return int(max(1, min(n_rows, max_elements // max(per_row, 1))))


def _map_rows(fn: Callable, x: jax.Array, chunk: int, *extra):
  """`fn(x[i:i+chunk], *extra[i:i+chunk])` over row chunks, concatenated (bounded memory).

  Rows are zero-padded to a multiple of `chunk` and sliced off again; with more
  than one chunk the body runs under `lax.map` and `jax.checkpoint`, so both the
  forward pass and reverse-mode gradients hold one chunk's intermediates.
  """
  n = x.shape[0]
  if chunk >= n:
    return fn(x, *extra)
  pad = (-n) % chunk
  args = [jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in (x,) + extra]
  args = [a.reshape((-1, chunk) + a.shape[1:]) for a in args]
  out = jax.lax.map(lambda a: jax.checkpoint(fn)(*a), tuple(args))
  return jax.tree_util.tree_map(lambda o: o.reshape((-1,) + o.shape[2:])[:n], out)


class BlockPlan(NamedTuple):
  """How `kernel_fn` tiles one `(n1, n2)` full-spatial conv kernel.

  Attributes:
    rows: rows of `x1` per block. cols: rows of `x2` per block.
    elements: entries of one full-spatial covariance array of a block,
      `rows * cols * (H W)^2` (a few such arrays are live at a time; see
      `LIVE_ARRAYS`).
    variance_rows: images per block of the per-image variances (`(HW)^2` each).
  """
  rows: int
  cols: int
  elements: int
  variance_rows: int


def block_plan(n1: int, n2: int, height: int, width: int, max_elements: int) -> BlockPlan:
  """The blocks of a pooled / GAP conv kernel of `n1 x n2` images of `height x width`.

  Columns are blocked first (`cols * (HW)^2 <= max_elements`), then rows
  (`rows * cols * (HW)^2 <= max_elements`); one image pair is the smallest block,
  so `elements` exceeds `max_elements` only when `(HW)^2` alone does.
  """
  hw2 = (height * width) ** 2
  cols = _chunk_size(n2, hw2, max_elements)
  rows = _chunk_size(n1, cols * hw2, max_elements)
  return BlockPlan(rows, cols, rows * cols * hw2,
                   _chunk_size(max(n1, n2), hw2, max_elements))


# Block-array sizes that XLA:CPU's compiled memory (`memory_analysis().temp_size_in_bytes`)
# of KIP's `value_and_grad` took (conv3, pooled, 8x8 and 16x16 images, 10-100 support,
# 64-256 targets, budgets 4 MiB-2 GiB): 12-26 arrays of one block (about 5 for the kernel
# alone): the rematerialised block, its cotangents, and K_ss's and K_ts's blocks at once.
# `max_elements_for` divides a memory budget by 32.
LIVE_ARRAYS = 32


def max_elements_for(memory_mib: float, itemsize: int = 4) -> int:
  """`max_elements` such that `LIVE_ARRAYS` block arrays fit in `memory_mib` MiB."""
  return max(1, int(memory_mib * 2 ** 20 // (LIVE_ARRAYS * itemsize)))


def _conv(spec, x1, x2, compute_ntk: bool, max_elements: int):
  """NNGP and NTK `(n1, n2)` of a conv spec for images `(n, H, W, C)`."""
  if not _needs_full_spatial(spec):
    return _conv_diagonal_spatial(spec, x1, x2, compute_ntk)
  plan = block_plan(x1.shape[0], x2.shape[0], x1.shape[1], x1.shape[2], max_elements)
  var_fn = functools.partial(_self_variances, spec)
  vars1 = _map_rows(var_fn, x1, plan.variance_rows)
  vars2 = _map_rows(var_fn, x2, plan.variance_rows)

  def rows(x1_block, *vars1_block):
    def cols(x2_block, *vars2_block):  # (cols, rows) so that _map_rows stacks columns
      out = _conv_cross(spec, x1_block, x2_block, vars1_block, vars2_block, compute_ntk)
      return jax.tree_util.tree_map(jnp.transpose, out)
    return jax.tree_util.tree_map(jnp.transpose, _map_rows(cols, x2, plan.cols, *vars2))

  return _map_rows(rows, x1, plan.rows, *vars1)


# ---------------------------------------------------------------------------
# Public API.


def kernel_fn(spec, max_elements: int = 2 ** 25) -> Callable[..., Union[jax.Array, tuple]]:
  """Returns `base(x1, x2, get)` computing the infinite-width kernels of `spec`.

  Args:
    spec: a `kernels.ArchSpec` (family 'fc' or 'conv').
    max_elements: conv nets with pooling or GAP only: the largest number of
      entries of one full-spatial covariance array per block (`block_plan`;
      `max_elements_for(memory_mib)` from a memory budget; see the module
      docstring for the memory model).

  Returns:
    A pure, jitted and differentiable `base(x1, x2, get)` (`get` static): `x1` is `(n1, d)`
    for FC specs or `(n1, H, W, C)` for conv specs (`x2` likewise, `n2` rows);
    `get` is 'nngp', 'ntk' or a tuple of them. Returns an `(n1, n2)` array, or
    a tuple of them in the order of `get`. Computes in the inputs' floating
    dtype (float32 for integer inputs).
  """

  def base(x1, x2, get: Get = "ntk"):
    kinds = get if isinstance(get, tuple) else (get,)
    for k in kinds:
      if k not in ("nngp", "ntk"):
        raise ValueError(f"Unknown kernel {k!r}; valid: nngp, ntk")
    x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
    dtype = jnp.result_type(x1.dtype, x2.dtype, jnp.float32)
    x1, x2 = x1.astype(dtype), x2.astype(dtype)
    compute_ntk = "ntk" in kinds
    if spec.family == "fc":
      if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"FC kernels need (n, d) inputs, got {x1.shape} and {x2.shape}")
      nngp, ntk = _fc(spec, x1, x2, compute_ntk)
    else:
      if x1.ndim != 4 or x2.ndim != 4 or x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"conv kernels need (n, H, W, C) images of one shape, "
                         f"got {x1.shape} and {x2.shape}")
      nngp, ntk = _conv(spec, x1, x2, compute_ntk, max_elements)
    out = {"nngp": nngp, "ntk": ntk}
    return tuple(out[k] for k in kinds) if isinstance(get, tuple) else out[get]

  # Jitted so that eager calls run as one compiled program (inlined when traced).
  return jax.jit(base, static_argnames="get")
