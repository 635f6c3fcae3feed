r"""Compiled memory of one KIP step (value and gradient) on an exact pooled ConvNet kernel.

    python benchmarks/kip_memory.py --support=10 --targets=64 --size=28 \
        --budgets_mib=1000000,1024,256

For each `--budgets_mib` entry (`KipConfig.kernel_memory_mib`: the bound on the block
arrays of `kernels.native.block_plan`), compiles `jax.value_and_grad` of the KIP loss
for `--support` support and `--targets` target images of `--size`x`--size`x1 and prints
XLA's temporary memory (`memory_analysis().temp_size_in_bytes`; nothing is run). A
budget larger than the whole kernel is the unblocked computation. jaxlib 0.4.23's CPU
compiler reports no temporary memory; use current JAX.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from kernelcond import kernels
from kernelcond.condense import kip

flags.DEFINE_string("spec", "conv3", "Kernel spec (a pooled or GAP conv spec).")
flags.DEFINE_integer("support", 10, "Support images.")
flags.DEFINE_integer("targets", 64, "Target images per step.")
flags.DEFINE_integer("size", 28, "Image height and width.")
flags.DEFINE_list("budgets_mib", ["1000000", "1024", "256"], "kernel_memory_mib values.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  spec = kernels.get_spec(FLAGS.spec)
  rng = np.random.default_rng(0)
  shape = (FLAGS.size, FLAGS.size, 1)
  x_t = jnp.asarray(rng.standard_normal((FLAGS.targets, *shape)), jnp.float32)
  y_t = jax.nn.one_hot(jnp.arange(FLAGS.targets) % 10, 10)
  params = {"x_support": jnp.asarray(rng.standard_normal((FLAGS.support, *shape)), jnp.float32),
            "y_support": jax.nn.one_hot(jnp.arange(FLAGS.support) % 10, 10)}
  print(f"{FLAGS.spec}: {FLAGS.support} support x {FLAGS.targets} targets of "
        f"{FLAGS.size}x{FLAGS.size}x1, jax {jax.__version__}, {jax.devices()[0].platform}")
  print(f"{'budget MiB':>12} {'temp MiB':>10} {'compile s':>10}")
  for budget in (float(b) for b in FLAGS.budgets_mib):
    start = time.perf_counter()
    kernel_fn = kernels.make_kernel_fn(spec, "native", budget)
    step = jax.jit(jax.value_and_grad(lambda p, k=kernel_fn: kip.loss_fn(p, x_t, y_t, k)))
    stats = step.lower(params).compile().memory_analysis()
    print(f"{budget:12.0f} {stats.temp_size_in_bytes / 2 ** 20:10.1f} "
          f"{time.perf_counter() - start:10.1f}", flush=True)


if __name__ == "__main__":
  app.run(main)
