"""Two processes, one global mesh: the kernel matrix, a KIP step and a KRR solve match one process.

The test starts two local CPU processes (this file run as a script, 2 forced host
devices each) that `distributed.initialize` on localhost, so the global mesh has 4
devices in 2 processes (jax 0.4.23's Gloo collectives hang with more than one CPU
device per process, so on that stack each process has 1 device: a mesh of 2). Each
computes a kernel matrix (rows sharded over the global mesh), one KIP step (target
batch sharded) and a KRR solve by conjugate gradients over that kernel, and saves
them; the test recomputes each in this one process by an independent, unsharded
route (the kernel function on whole arrays, `kip.loss_fn` under `jax.grad` and
optax, a float64 direct solve) and compares.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

C = 3
REG = 1e-3
SPEC = "fc2"


def _problem():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((22, 4, 4, 1)).astype(np.float32)  # 22 rows: padding on 4 devices
  y = np.eye(C, dtype=np.float32)[rng.integers(0, C, len(x))]
  return x, y


def _kip_config():
  from kernelcond.condense import kip
  return kip.KipConfig(kernel=SPEC, kernel_backend="native", lr=0.01, lr_schedule="constant",
                       reg=REG, target_batch=14)


def _worker(process_id: int, port: int, out: str) -> None:
  """One process of the pair: initialise, compute on the global mesh, save the results."""
  from kernelcond import distributed

  distributed.initialize(f"127.0.0.1:{port}", 2, process_id)
  import jax
  from kernelcond import kernels
  from kernelcond import krr
  from kernelcond.condense import kip

  assert jax.device_count() == 2 * jax.local_device_count()
  x, y = _problem()
  kernel_fn = kernels.make_kernel_fn(SPEC, "native")
  k = kernels.kernel_matrix(kernel_fn, x, x[:9], "ntk", batch_size=4)

  config = _kip_config()
  # As the run loop does: host arrays, the same in every process, are taken as replicated.
  state = kip.init_state(x[:6], y[:6], kip.make_optimizer(config))
  update = jax.jit(kip.make_update(kernel_fn, config))
  state, metrics = update(state, (x[6:20], y[6:20]), jax.random.PRNGKey(0))

  alpha, info = krr.fit_cg(kernel_fn, x, y, REG, "ntk", rank=5, tol=1e-6, max_iters=200,
                           block_size=8, batch_size=4)
  np.savez(out, k=k, x_support=distributed.gather(state.x_support),
           loss=distributed.gather(metrics["loss"]), alpha=alpha, iterations=info.iterations,
           processes=jax.process_count(), devices=jax.device_count())


def _devices_per_process() -> int:
  """2, or 1 on jax 0.4.23 (Gloo there hangs with several devices per process); 0 if this
  JAX has no CPU collectives across processes."""
  import jax
  if "jax_cpu_collectives_implementation" in jax.config.values:
    return 2
  return 1 if "jax_cpu_enable_gloo_collectives" in jax.config.values else 0


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  import jax
  per_process = _devices_per_process()
  if not per_process:
    pytest.skip(f"jax {jax.__version__} has no CPU collectives across processes (no Gloo option)")
  tmp = tmp_path_factory.mktemp("distributed")
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={per_process} "
                                    "--xla_backend_optimization_level=0",
         "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # two processes at once: no shared cache writes
  outs = [str(tmp / f"process{i}.npz") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port), outs[i]], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=120)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("the two processes did not finish in 120 s")
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return [dict(np.load(o)) for o in outs], 2 * per_process


def test_both_processes_share_one_global_mesh(two_processes):
  results, devices = two_processes
  for result in results:
    assert int(result["processes"]) == 2 and int(result["devices"]) == devices


def test_kernel_matrix_matches_one_process(two_processes):
  from kernelcond import kernels
  x, _ = _problem()
  expected = np.asarray(kernels.make_kernel_fn(SPEC, "native")(x, x[:9], "ntk"))
  for result in two_processes[0]:
    np.testing.assert_allclose(result["k"], expected, rtol=1e-5, atol=1e-5)


def test_kip_step_matches_one_process(two_processes):
  import jax
  from kernelcond import kernels
  from kernelcond.condense import kip
  x, y = _problem()
  kernel_fn = kernels.make_kernel_fn(SPEC, "native")
  params = {"x_support": x[:6], "y_support": y[:6]}
  loss, grads = jax.value_and_grad(kip.loss_fn)(params, x[6:20], y[6:20], kernel_fn, REG)
  assert np.abs(np.asarray(grads["x_support"])).max() > 1e-3  # the step moves the images
  optimizer = kip.make_optimizer(_kip_config())
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  expected = x[:6] + np.asarray(updates["x_support"])
  for result in two_processes[0]:
    np.testing.assert_allclose(result["loss"], loss, rtol=1e-4)
    np.testing.assert_allclose(result["x_support"], expected, atol=1e-5)


def test_krr_solve_matches_one_process(two_processes):
  from kernelcond import kernels
  x, y = _problem()
  k = np.asarray(kernels.make_kernel_fn(SPEC, "native")(x, x, "ntk"), np.float64)
  expected = np.linalg.solve(k + REG * np.trace(k) / len(k) * np.eye(len(k)), y)
  for result in two_processes[0]:
    assert int(result["iterations"]) < 200
    np.testing.assert_allclose(result["alpha"], expected, rtol=1e-3,
                               atol=1e-3 * np.abs(expected).max())


if __name__ == "__main__":
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
  _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
