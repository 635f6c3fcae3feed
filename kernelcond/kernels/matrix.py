"""Kernel matrices over large inputs: memory-bounded blocks sharded over every device.

Row blocks are split over a global mesh (`distributed.global_mesh`): all devices of
all processes of a `jax.distributed` run, or the local devices of one process.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from kernelcond import distributed

Get = Union[str, tuple[str, ...]]
_AXIS = "rows"


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
  """Zero-pads the leading axis of `x` to a multiple of `multiple`."""
  pad = (-x.shape[0]) % multiple
  if pad:
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  return x


@functools.lru_cache(maxsize=32)
def _block_fn(kernel_fn: Callable, get: Get, mesh: Mesh):
  """Jitted over `mesh`: each device takes its x1 rows against every x2 block (lax.map)."""

  def one_block(x1_block, x2_blocks):
    out = jax.lax.map(lambda x2b: kernel_fn(x1_block, x2b, get), x2_blocks)
    # out: (n_col_blocks, b1, b2) (or a tuple of them) -> (b1, n_col_blocks * b2)
    fix = lambda k: jnp.moveaxis(k, 0, 1).reshape(k.shape[1], -1)
    return tuple(map(fix, out)) if isinstance(get, tuple) else fix(out)

  rows = PartitionSpec(_AXIS)
  out_specs = tuple(rows for _ in get) if isinstance(get, tuple) else rows
  return jax.jit(distributed.shard_map(one_block, mesh, in_specs=(rows, PartitionSpec()),
                           out_specs=out_specs))


def kernel_matrix(kernel_fn: Callable, x1, x2=None, get: Get = "ntk",
                  batch_size: int = 256, n_devices: Optional[int] = None):
  """Computes `kernel_fn(x1, x2, get)` in `batch_size` blocks over every device.

  Rows of `x1` are padded to a multiple of `n_devices * batch_size` and columns
  of `x2` to a multiple of `batch_size` (padding is sliced off again), so any
  sizes work. Each chunk of `n_devices * b1` rows is split over the devices of
  `distributed.global_mesh` (all processes of a `jax.distributed` run: every
  process passes the same `x1`, `x2` and gets the whole matrix); each device
  loops over column blocks, so memory is bounded by one `(batch_size,
  batch_size)` kernel block (times its spatial size for conv) per device.

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)`, e.g. from `make_kernel_fn` or
      `make_random_kernel_fn`.
    x1: `(n1, ...)` inputs.
    x2: `(n2, ...)` inputs, or None for `x1`.
    get: 'nngp', 'ntk' or a tuple of them.
    batch_size: block edge.
    n_devices: how many of `jax.devices()` to use (default: all; with several
      processes it must be all).

  Returns:
    `(n1, n2)` numpy array (a tuple of them for a tuple `get`), on every process.
  """
  x1 = np.asarray(x1)
  x2 = x1 if x2 is None else np.asarray(x2)
  n1, n2 = len(x1), len(x2)
  mesh = distributed.global_mesh(_AXIS, n_devices)
  d = mesh.size
  b1 = max(1, min(batch_size, -(-n1 // d)))
  b2 = max(1, min(batch_size, n2))
  x1p = _pad_rows(x1, d * b1)
  x2p = _pad_rows(x2, b2).reshape((-1, b2) + x2.shape[1:])
  fn = _block_fn(kernel_fn, get, mesh)
  x2_global = distributed.to_global(x2p, mesh, PartitionSpec())
  rows = []
  for start in range(0, len(x1p), d * b1):
    chunk = distributed.to_global(x1p[start:start + d * b1], mesh, PartitionSpec(_AXIS))
    out = fn(chunk, x2_global)
    rows.append(tuple(map(distributed.gather, out)) if isinstance(get, tuple)
                else distributed.gather(out))

  def assemble(parts):
    return np.concatenate(parts)[:n1, :n2]

  if isinstance(get, tuple):
    return tuple(assemble([r[i] for r in rows]) for i in range(len(get)))
  return assemble(rows)
