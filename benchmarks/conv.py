r"""ConvNet derivatives inside jitted loops: `lax` convolutions vs the im2col tangent.

    python benchmarks/conv.py                      # ConvNet w32 d3, 28x28x1, batch 256
    python benchmarks/conv.py --width=128 --batch=64 --steps=5

Times, in one process and for both `ConvNet(conv_impl=...)` choices
(`kernelcond.nets.conv`), three workloads that condensation methods run inside
`lax.fori_loop` (their chunks, DC's inner training, DD's unrolled steps):

* `forward`: logits of the batch (no derivative; the same convolution both ways);
* `train step`: one SGD step of the network (kernel and input gradients);
* `dc match`: the input gradient of DC's gradient-matching distance between the
  batch's and 10 synthetic images' parameter gradients (a second derivative).

Each runs `--steps` times in a `fori_loop`, compiled first; the table gives the
median milliseconds per step of `--repeats` runs and lax's time over im2col's.
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

from kernelcond.condense import matching  # noqa: E402
from kernelcond.nets import models  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("width", 32, "ConvNet channels.")
flags.DEFINE_integer("depth", 3, "ConvNet blocks.")
flags.DEFINE_integer("batch", 256, "Real images per step.")
flags.DEFINE_list("image_shape", ["28", "28", "1"], "Per-example input shape.")
flags.DEFINE_integer("steps", 10, "Loop iterations per timed run.")
flags.DEFINE_integer("repeats", 3, "Timed runs (the median is reported).")

IMPLS = ("lax", "im2col_grad")


def workloads(net, x, x_syn):
  """`{name: fn(params) -> params}`: one loop iteration of each workload."""
  apply_fn = lambda p, a: net.apply({"params": p}, a)
  labels = jnp.arange(x.shape[0]) % 10

  def loss(p, a, y):
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(apply_fn(p, a)), y[:, None], 1))

  def forward(p):
    return jax.tree_util.tree_map(lambda v: v + 1e-6 * jnp.mean(apply_fn(p, x)), p)

  def train_step(p):
    return jax.tree_util.tree_map(lambda v, g: v - 0.01 * g, p, jax.grad(loss)(p, x, labels))

  def dc_match(p):
    g_real = jax.lax.stop_gradient(jax.grad(loss)(p, x, labels))
    y_syn = jnp.arange(x_syn.shape[0]) % 10

    def distance(xs):
      return matching.gradient_distance(g_real, jax.grad(loss)(p, xs, y_syn))

    step = 1e-6 * jnp.mean(jax.grad(distance)(x_syn))
    return jax.tree_util.tree_map(lambda v: v + step, p)

  return {"forward": forward, "train step": train_step, "dc match": dc_match}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  shape = tuple(int(v) for v in FLAGS.image_shape)
  x = jax.random.normal(jax.random.PRNGKey(0), (FLAGS.batch,) + shape)
  x_syn = jax.random.normal(jax.random.PRNGKey(1), (10,) + shape)
  padding = 2 if shape[:2] == (28, 28) else 0
  print(f"devices: {jax.local_device_count()} x {jax.devices()[0].platform}, jax "
        f"{jax.__version__}; ConvNet w{FLAGS.width} d{FLAGS.depth}, batch {FLAGS.batch} x "
        f"{shape}, {FLAGS.steps} steps per fori_loop")
  header = f"{'workload':<12}" + "".join(f"{impl + ' ms':>16}" for impl in IMPLS) + f"{'ratio':>8}"
  print(header)
  print("-" * len(header))
  times = {}
  for impl in IMPLS:
    net = models.ConvNet(num_classes=10, width=FLAGS.width, depth=FLAGS.depth,
                         input_padding=padding, conv_impl=impl)
    params = net.init(jax.random.PRNGKey(2), x[:1])["params"]
    for name, fn in workloads(net, x, x_syn).items():
      loop = jax.jit(lambda p, fn=fn: jax.lax.fori_loop(0, FLAGS.steps, lambda i, q: fn(q), p))
      jax.block_until_ready(loop(params))  # compile
      runs = [_timing.timed(lambda: jax.block_until_ready(loop(params)))
              for _ in range(FLAGS.repeats)]
      times[name, impl] = float(np.median(runs)) / FLAGS.steps * 1e3
  for name in ("forward", "train step", "dc match"):
    lax_ms, i2c_ms = times[name, "lax"], times[name, "im2col_grad"]
    print(f"{name:<12}{lax_ms:>16.1f}{i2c_ms:>16.1f}{lax_ms / i2c_ms:>7.1f}x")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
