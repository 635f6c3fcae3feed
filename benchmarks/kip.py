r"""Seconds per KIP step for FC kernels on Fashion-MNIST, against the matmul rate.

    python benchmarks/kip.py                                  # fc3 NTK, support 10/100/500
    python benchmarks/kip.py --specs=fc1,fc3 --supports=100 --target_batch=5000
    python benchmarks/kip.py --profile --backends=native --supports=10,100   # where time goes

For each spec, support size and backend (neural-tangents `nt` where it imports,
and `native`), times the KIP step `kip.make_update` (jit-compiled; compilation excluded; the
median of `--repeats` steps on one device) on a target batch of real
Fashion-MNIST images (784 features; `--synthetic` uses Gaussian inputs instead).
Where neural-tangents imports, the row `nt-plain` times the direct reference loop:
`stax` kernels, `krr.predict`, `jax.value_and_grad` through the Cholesky, Adam.

FLOP model of one step (`n_s` support, `n_t` targets, `d` features, `c`
classes, `L` hidden layers; a multiply-add counts 2):

  forward   Gram matrices       2 n_t n_s d + 2 n_s^2 d + 2 (n_t + n_s) d (norms)
            layer recursion     R L (n_t n_s + n_s^2), R = 20 FLOPs per entry and
                                layer (arc-cosine / erf closed form + NTK update)
            solve               n_s^3 / 3 (Cholesky) + 4 n_s^2 c (two triangular
                                solves) + 2 n_t n_s c (prediction K_ts alpha)
  backward  prediction          4 n_t n_s c (dK_ts = g alpha^T, d alpha = K_ts^T g)
            adjoint solve       n_s^3 / 3 + 4 n_s^2 c (re-factorised) + 2 n_s^2 c (dK_ss)
            layer recursion     2 R L (n_t n_s + n_s^2)
            Gram matrices       2 n_t n_s d (d x_s from K_ts; x_t is data) + 4 n_s^2 d
                                (x_s enters K_ss twice) + 2 n_s d (norms)

`--profile` splits the native step of each spec and support size into its parts,
each jit-compiled and timed alone in the same run (median of `--repeats`): the
forward kernels (`K_ss`, `K_ts`), the support solve and prediction, the loss, the
loss with its gradient (the adjoint is the difference), the whole step with Adam,
drawing a target batch from the 60,000-image pool, and the host sync: one
dispatched and awaited step versus a step inside a jitted chunk of 10
(`lax.fori_loop`, as `condense.loop` runs them).

The matmul terms (`4 n_t n_s d` dominate at d = 784) are the floor any
implementation pays; the ratio column is the achieved FLOP rate of the whole
step over the float32 rate of a large `jnp` matmul measured in the same run.
"""

import os
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (benchmarks/ helpers)

from kernelcond import kernels
from kernelcond.condense import kip
from kernelcond import krr

FLAGS = flags.FLAGS
flags.DEFINE_list("specs", ["fc3"], "FC kernel specs to time.")
flags.DEFINE_list("supports", ["10", "100", "500"], "Support-set sizes.")
flags.DEFINE_integer("target_batch", 5000, "Target examples per step.")
flags.DEFINE_enum("kernel_type", "ntk", ["ntk", "nngp", "sample"], "KIP kernel.")
flags.DEFINE_list("backends", ["nt", "native"], "Backends (skipped if unavailable).")
flags.DEFINE_bool("plain_nt", True, "Also time the direct neural-tangents reference loop.")
flags.DEFINE_integer("repeats", 10, "Timed steps (the median is reported).")
flags.DEFINE_bool("synthetic", False, "Gaussian inputs instead of Fashion-MNIST.")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST directory (default: the apt location).")
flags.DEFINE_bool("profile", False, "Time the parts of the native step instead (see above).")

NUM_CLASSES = 10
R_PER_ENTRY = 20


def step_flops(n_s: int, n_t: int, d: int, c: int, depth: int) -> float:
  """FLOPs of one KIP step under the model in the module docstring."""
  entries = n_t * n_s + n_s ** 2
  forward = (2 * n_t * n_s * d + 2 * n_s ** 2 * d + 2 * (n_t + n_s) * d
             + R_PER_ENTRY * depth * entries
             + n_s ** 3 / 3 + 4 * n_s ** 2 * c + 2 * n_t * n_s * c)
  backward = (4 * n_t * n_s * c + n_s ** 3 / 3 + 6 * n_s ** 2 * c
              + 2 * R_PER_ENTRY * depth * entries
              + 2 * n_t * n_s * d + 4 * n_s ** 2 * d + 2 * n_s * d)
  return float(forward + backward)


def _median_time(fn, repeats: int) -> float:
  fn()  # compile
  return float(np.median([_timing.timed(fn) for _ in range(repeats)]))


def _data(n_t: int):
  """(x_pool, y_pool) of at least n_t + 500 examples: Fashion-MNIST or Gaussian."""
  if FLAGS.synthetic:
    rng = np.random.default_rng(0)
    n = n_t + 500
    x = rng.standard_normal((n, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, n)
  else:
    from kernelcond import data as kdata
    from kernelcond import preprocess
    ds = preprocess.prepare(kdata.load_dataset("fashion_mnist", FLAGS.data_dir))
    x, y = ds.x_train, ds.y_train
  return x, np.eye(NUM_CLASSES, dtype=np.float32)[y]


def _plain_nt_step(spec, reg: float, lr: float):
  """The direct reference loop: stax kernel_fn, krr.predict, grad through Cholesky, Adam."""
  import optax
  raw = kernels.nt_stax(spec)[2]
  opt = optax.adam(lr)
  flat = lambda x: x.reshape(x.shape[0], -1)

  def loss(p, x_t, y_t):
    k_ss = raw(flat(p["x"]), flat(p["x"]), "ntk")
    k_ts = raw(flat(x_t), flat(p["x"]), "ntk")
    return 0.5 * jnp.mean((krr.predict(k_ts, k_ss, p["y"], reg) - y_t) ** 2)

  @jax.jit
  def step(p, opt_state, x_t, y_t):
    value, grads = jax.value_and_grad(loss)(p, x_t, y_t)
    updates, opt_state = opt.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, value

  return step, opt


def profile_parts(kernel_fn, config, x_pool, y_pool, n_s: int, n_t: int) -> dict:
  """Median seconds of each part of one KIP step (see the module docstring)."""
  from kernelcond.condense import base

  get, reg, repeats = config.kernel_type, config.reg, FLAGS.repeats
  x_s, y_s = jnp.asarray(x_pool[n_t:n_t + n_s]), jnp.asarray(y_pool[n_t:n_t + n_s])
  x_t, y_t = jnp.asarray(x_pool[:n_t]), jnp.asarray(y_pool[:n_t])
  params = {"x_support": x_s, "y_support": y_s}
  kernels_fwd = jax.jit(lambda xs, xt: (kernel_fn(xs, xs, get), kernel_fn(xt, xs, get)))
  k_ss, k_ts = kernels_fwd(x_s, x_t)
  solve = jax.jit(lambda k_ss, k_ts, y: k_ts @ krr.solve(k_ss, y, reg))
  loss = jax.jit(lambda p, x, y: kip.loss_fn(p, x, y, kernel_fn, reg, get))
  loss_grad = jax.jit(jax.value_and_grad(lambda p, x, y: kip.loss_fn(p, x, y, kernel_fn, reg,
                                                                       get)))
  opt = kip.make_optimizer(config)
  state = kip.init_state(x_s, y_s, opt)
  update = kip.make_update(kernel_fn, config, opt, n_devices=1)
  step = jax.jit(update)
  key = jax.random.PRNGKey(0)
  data = base.Data.create(jnp.asarray(x_pool), jnp.asarray(y_pool),
                          jnp.asarray(y_pool.argmax(-1)))
  sample = jax.jit(lambda k, d: base.sample_examples(k, d, n_t))

  @jax.jit
  def chunk(state, x, y):
    return jax.lax.fori_loop(0, 10, lambda i, s: update(s, (x, y), key)[0], state)

  ready = jax.block_until_ready
  return {
      "kernels K_ss, K_ts": _median_time(lambda: ready(kernels_fwd(x_s, x_t)), repeats),
      "solve + predict": _median_time(lambda: ready(solve(k_ss, k_ts, y_s)), repeats),
      "loss (forward)": _median_time(lambda: ready(loss(params, x_t, y_t)), repeats),
      "loss + gradient": _median_time(lambda: ready(loss_grad(params, x_t, y_t)), repeats),
      "step (+ Adam)": _median_time(lambda: ready(step(state, (x_t, y_t), key)), repeats),
      "sample batch": _median_time(lambda: ready(sample(key, data)), repeats),
      "step in chunk of 10": _median_time(lambda: ready(chunk(state, x_t, y_t)), repeats) / 10,
  }


def print_profile(rate: float, x_pool, y_pool, n_t: int) -> None:
  config = kip.KipConfig(kernel_type=FLAGS.kernel_type, target_batch=n_t,
                         lr_schedule="constant")
  print(f"{'spec':<6}{'support':>8}  {'part':<22}{'ms':>9}")
  for name in FLAGS.specs:
    kernel_fn = kernels.make_kernel_fn(name, "native")
    for n_s in (int(v) for v in FLAGS.supports):
      for part, seconds in profile_parts(kernel_fn, config, x_pool, y_pool, n_s, n_t).items():
        print(f"{name:<6}{n_s:>8}  {part:<22}{seconds * 1e3:>9.2f}")
      sys.stdout.flush()


def main(argv):
  del argv
  rate = _timing.matmul_rate()
  n_t = FLAGS.target_batch
  x_pool, y_pool = _data(n_t)
  d = int(np.prod(x_pool.shape[1:]))
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}; "
        f"float32 matmul rate: {rate / 1e9:.1f} GFLOP/s; "
        f"{'Gaussian' if FLAGS.synthetic else 'Fashion-MNIST'} inputs, d={d}, "
        f"target batch {n_t}, kernel {FLAGS.kernel_type}")
  if FLAGS.profile:
    print_profile(rate, x_pool, y_pool, n_t)
    return
  backends = [b for b in FLAGS.backends if b != "nt" or kernels.neural_tangents_available()]
  plain = FLAGS.plain_nt and kernels.neural_tangents_available() and FLAGS.kernel_type == "ntk"
  header = (f"{'spec':<6}{'support':>8}{'backend':>10}{'ms/step':>10}{'GFLOP':>8}"
            f"{'GFLOP/s':>9}{'/matmul':>9}")
  print(header)
  print("-" * len(header))
  x_t, y_t = jnp.asarray(x_pool[:n_t]), jnp.asarray(y_pool[:n_t])
  config = kip.KipConfig(kernel_type=FLAGS.kernel_type, target_batch=n_t,
                         lr_schedule="constant")
  for name in FLAGS.specs:
    spec = kernels.get_spec(name)
    if spec.family != "fc":
      raise app.UsageError(f"{name} is not an FC spec; this benchmark times FC kernels.")
    for n_s in (int(v) for v in FLAGS.supports):
      x_s, y_s = x_pool[n_t:n_t + n_s], y_pool[n_t:n_t + n_s]
      flops = step_flops(n_s, n_t, d, NUM_CLASSES, spec.depth)
      rows = []
      for backend in backends:
        kernel_fn = kernels.make_kernel_fn(spec, backend)
        opt = kip.make_optimizer(config)
        state = kip.init_state(x_s, y_s, opt)
        step = jax.jit(kip.make_update(kernel_fn, config, opt, n_devices=1))
        key = jax.random.PRNGKey(0)
        rows.append((backend, _median_time(
            lambda: jax.block_until_ready(step(state, (x_t, y_t), key)), FLAGS.repeats)))
      if plain:
        step, opt = _plain_nt_step(spec, config.reg, config.lr)
        params = {"x": jnp.asarray(x_s), "y": jnp.asarray(y_s)}
        opt_state = opt.init(params)
        rows.append(("nt-plain", _median_time(
            lambda: jax.block_until_ready(step(params, opt_state, x_t, y_t)), FLAGS.repeats)))
      for backend, seconds in rows:
        achieved = flops / seconds
        print(f"{name:<6}{n_s:>8}{backend:>10}{seconds * 1e3:>10.1f}{flops / 1e9:>8.2f}"
              f"{achieved / 1e9:>9.1f}{achieved / rate:>9.3f}")
      sys.stdout.flush()


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
