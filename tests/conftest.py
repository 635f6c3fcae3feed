"""Test setup: four fake CPU devices, so every multi-device path is exercised.

XLA's backend optimisation level 0: the tests run tiny shapes, so their time is
mostly compilation, which level 0 roughly halves (tests/test_random_features.py:
110 s -> 58 s on 2 CPU cores); results are checked against tolerances or
against runs compiled the same way, never against optimised-build timings.

A persistent compilation cache per test process: many tests run the same
experiment mains in subprocesses on the same tiny shapes, and each of those
processes would compile the same programs again. Every process that imports
this file (the xdist controller and each worker) gets a fresh, empty cache
directory, removed when it exits, which the subprocesses its tests start
inherit; no cache survives a run, so every run compiles from scratch as CI does,
and two workers never write the same directory. A `JAX_COMPILATION_CACHE_DIR`
set by the user is left alone. Measured: `pytest -n 0
tests/test_distill_experiments.py` 131 s -> 102 s on 2 shared CPU cores.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def _fresh_compilation_cache() -> None:
  """Points this process (and what it starts) at a new, empty JAX compilation cache."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR", "") != os.environ.get(
      "KERNELCOND_TEST_CACHE_DIR", ""):
    return  # the user's own cache
  path = tempfile.mkdtemp(prefix="kernelcond-test-jax-cache-")
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=path, KERNELCOND_TEST_CACHE_DIR=path,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


_fresh_compilation_cache()
