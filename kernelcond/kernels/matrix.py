"""Kernel matrices over large inputs: memory-bounded blocks spread over local devices."""

from __future__ import annotations

import functools
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

Get = Union[str, tuple[str, ...]]


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
  """Zero-pads the leading axis of `x` to a multiple of `multiple`."""
  pad = (-x.shape[0]) % multiple
  if pad:
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  return x


@functools.lru_cache(maxsize=32)
def _block_fn(kernel_fn: Callable, get: Get, n_devices: int):
  """pmap over devices of: one x1 block against every x2 block (lax.map)."""

  def one_block(x1_block, x2_blocks):
    out = jax.lax.map(lambda x2b: kernel_fn(x1_block, x2b, get), x2_blocks)
    # out: (n_col_blocks, b1, b2) (or a tuple of them) -> (b1, n_col_blocks * b2)
    fix = lambda k: jnp.moveaxis(k, 0, 1).reshape(k.shape[1], -1)
    return tuple(map(fix, out)) if isinstance(get, tuple) else fix(out)

  devices = jax.local_devices()[:n_devices]
  return jax.pmap(one_block, in_axes=(0, None), devices=devices)


def kernel_matrix(kernel_fn: Callable, x1, x2=None, get: Get = "ntk",
                  batch_size: int = 256, n_devices: Optional[int] = None):
  """Computes `kernel_fn(x1, x2, get)` in `batch_size` blocks over all local devices.

  Rows of `x1` are padded to a multiple of `n_devices * batch_size` and columns
  of `x2` to a multiple of `batch_size` (padding is sliced off again), so any
  sizes work. Blocks of rows are spread across devices with `jax.pmap`; each
  device loops over column blocks, so memory is bounded by one
  `(batch_size, batch_size)` kernel block (times its spatial size for conv).

  Args:
    kernel_fn: `kernel_fn(x1, x2, get)`, e.g. from `make_kernel_fn` or
      `make_random_kernel_fn`.
    x1: `(n1, ...)` inputs.
    x2: `(n2, ...)` inputs, or None for `x1`.
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
