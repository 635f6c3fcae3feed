"""Timing helpers shared by the benchmarks: wall-clock timers and the matmul-rate baseline."""

import time

import jax
import jax.numpy as jnp


def timed(fn) -> float:
  """Seconds one call of `fn()` takes (`fn` must block until its result is ready)."""
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
  """Best float32 FLOP/s of an n x n x n `jnp` matmul on the default device.

  The baseline every benchmark divides by: a rate near 1 means the measured
  computation runs as fast as dense matmul on this machine.
  """
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, a).block_until_ready()
  best = min(timed(lambda: f(a, a).block_until_ready()) for _ in range(repeats))
  return 2 * n ** 3 / best


def memory_bandwidth(n: int = 2 ** 26, repeats: int = 5) -> float:
  """Best bytes/s of a jitted elementwise `2 x + 1` over `n` float32 values (read + write).

  The second baseline: kernels whose FLOPs per byte are low are bound by this
  rate, not by the matmul rate.
  """
  x = jnp.ones((n,), jnp.float32)
  f = jax.jit(lambda a: 2.0 * a + 1.0)
  f(x).block_until_ready()
  best = min(timed(lambda: f(x).block_until_ready()) for _ in range(repeats))
  return 2 * 4 * n / best
