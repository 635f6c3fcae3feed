"""Several processes, one computation: JAX's multi-controller runtime.

Every process runs the same program on the same host-side data (each holds the
whole dataset); `initialize` connects them, `global_mesh` spans every device of
every process, `to_global` turns a host array that every process holds into a
global `jax.Array` (each process places only its own shards, no communication)
and `gather` brings a sharded result back to every host. `kernels.kernel_matrix`
and KIP's target batch shard over `global_mesh()`; with one process all of this
is the ordinary single-host case.

    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=0)  # per host
    mesh = distributed.global_mesh("rows")                # jax.device_count() devices
    x = distributed.to_global(x_host, mesh, P("rows"))    # rows split over all devices
    k = distributed.gather(jitted_fn(x))                  # numpy, on every host
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def _enable_cpu_collectives() -> None:
  """Cross-process collectives on CPU devices: Gloo over TCP.

  JAX's CPU client has none by default, so a `psum` across processes fails.
  Current JAX names the option `jax_cpu_collectives_implementation`; jax 0.4.23
  `jax_cpu_enable_gloo_collectives`. Must run before the CPU backend starts.
  """
  try:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except AttributeError:
    jax.config.update("jax_cpu_enable_gloo_collectives", True)


def initialize(coordinator_address: Optional[str], num_processes: Optional[int],
               process_id: Optional[int]) -> bool:
  """`jax.distributed.initialize` when the three multi-process settings are given.

  Call it in every process before any JAX computation, with the same
  `coordinator_address` (`host:port` of process 0) and `num_processes`, and
  each process's own `process_id`. CPU collectives (Gloo) are switched on, so
  CPU-only processes compute together too.

  Returns:
    True if it initialised; False if all three are None (one process).

  Raises:
    ValueError: if only some are given, or `process_id` is not in `[0, num_processes)`.
  """
  values = (coordinator_address, num_processes, process_id)
  if all(v is None for v in values):
    return False
  if any(v is None for v in values):
    raise ValueError("coordinator_address, num_processes and process_id must be given "
                     f"together, got {values}")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
  _enable_cpu_collectives()
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True


def global_mesh(axis: str, n_devices: Optional[int] = None) -> Mesh:
  """A 1-D mesh named `axis` over the first `n_devices` of `jax.devices()` (default all).

  `jax.devices()` lists the devices of every process, in the same order in each.

  Raises:
    ValueError: if `n_devices` is not in `[1, jax.device_count()]`, or leaves out
      another process's devices (every process must hold a shard).
  """
  total = jax.device_count()
  n_devices = total if n_devices is None else int(n_devices)
  if not 1 <= n_devices <= total:
    raise ValueError(f"n_devices must be in [1, {total}], got {n_devices}")
  if jax.process_count() > 1 and n_devices != total:
    raise ValueError(f"n_devices must be all {total} devices with {jax.process_count()} "
                     f"processes, got {n_devices}")
  return Mesh(np.asarray(jax.devices()[:n_devices]), (axis,))


def to_global(x, mesh: Mesh, spec: PartitionSpec) -> jax.Array:
  """The host array `x`, which every process holds whole, as a global array sharded by `spec`.

  Each process copies only the slices its own devices hold
  (`jax.make_array_from_callback`); nothing crosses processes.
  """
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda index: x[index])


def gather(x: jax.Array) -> np.ndarray:
  """The whole value of a (possibly sharded, multi-process) array as numpy, on every host."""
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def shard_map(fn: Callable, mesh: Mesh, in_specs, out_specs) -> Callable:
  """`jax.shard_map` on new JAX, `jax.experimental.shard_map` on old (no replication checks)."""
  if hasattr(jax, "shard_map"):
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)
  from jax.experimental.shard_map import shard_map as experimental_shard_map
  return experimental_shard_map(fn, mesh, in_specs=in_specs, out_specs=out_specs,
                                check_rep=False)
