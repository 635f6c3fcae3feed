r"""Kernel-matrix throughput (entries/s) per spec and backend, against the matmul rate.

    python benchmarks/kernels.py                       # FC and ConvNet, both backends
    python benchmarks/kernels.py --specs=fc3 --sizes=1000x5000

For each spec, size and backend (neural-tangents `nt` where it imports, and
`native`), times `kernels.kernel_matrix` (jit-compiled, first call excluded) and
prints entries/s, an estimate of the useful FLOPs and the ratio of the achieved
FLOP rate to the float32 matmul rate measured in the same run, and the
native/nt speed ratio.

FLOP model (a lower bound on the work any implementation must do):
  FC, depth L:   2*n1*n2*d for the input Gram matrix plus ~20*L*n1*n2 for the
                 layer recursion (arc-cosine / erf closed forms, NTK update).
  Conv, depth L, HxW images, C channels, pooling halving H and W per block:
                 per pair of images, 2*C*(HW)^2 for the input covariance, then per
                 layer 2*9*(H_l W_l)^2 for the 3x3 patch sums of NNGP and NTK plus
                 ~20*(H_l W_l)^2 for the nonlinearity.
"""

import os
import sys

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (benchmarks/ helpers)

from kernelcond import kernels

FLAGS = flags.FLAGS
flags.DEFINE_list("specs", ["fc1", "fc3", "conv3"], "Kernel specs to time.")
flags.DEFINE_list("fc_sizes", ["1000x1000", "1000x5000"], "n1xn2 for FC specs (784 features).")
flags.DEFINE_list("conv_sizes", ["8x8", "16x16"], "n1xn2 for conv specs (28x28x1 images).")
flags.DEFINE_list("backends", ["nt", "native"], "Backends to compare (skipped if unavailable).")
flags.DEFINE_string("get", "ntk", "nngp or ntk (the NTK also computes the NNGP).")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is reported).")
flags.DEFINE_integer("batch_size", 1000, "kernel_matrix block size.")


def flops(spec: kernels.ArchSpec, n1: int, n2: int, shape) -> float:
  """Useful FLOPs of one kernel matrix under the model in the module docstring."""
  h, w, c = shape
  if spec.family == "fc":
    return 2.0 * n1 * n2 * h * w * c + 20.0 * spec.depth * n1 * n2
  total, hw = 2.0 * c * (h * w) ** 2, h * w
  for _ in range(spec.depth):
    total += (2 * 9 * 2 + 20) * hw ** 2
    if spec.pool:
      hw //= 4
  return n1 * n2 * total


def main(argv):
  del argv
  rate = _timing.matmul_rate()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}; "
        f"float32 matmul rate: {rate / 1e9:.1f} GFLOP/s")
  backends = [b for b in FLAGS.backends
              if b != "nt" or kernels.neural_tangents_available()]
  header = (f"{'spec':<8}{'n1 x n2':>12}{'backend':>9}{'seconds':>10}{'entries/s':>12}"
            f"{'GFLOP/s':>9}{'/matmul':>9}{'native/nt':>10}")
  print(header)
  print("-" * len(header))
  shape = (28, 28, 1)
  rng = np.random.default_rng(0)
  for name in FLAGS.specs:
    spec = kernels.get_spec(name)
    sizes = FLAGS.fc_sizes if spec.family == "fc" else FLAGS.conv_sizes
    for size in sizes:
      n1, n2 = (int(v) for v in size.split("x"))
      x1 = rng.standard_normal((n1,) + shape).astype(np.float32)
      x2 = rng.standard_normal((n2,) + shape).astype(np.float32)
      seconds = {}
      for backend in backends:
        kernel_fn = kernels.make_kernel_fn(spec, backend)
        run = lambda: kernels.kernel_matrix(kernel_fn, x1, x2, FLAGS.get, FLAGS.batch_size)
        run()  # compile
        seconds[backend] = min(_timing.timed(run) for _ in range(FLAGS.repeats))
        achieved = flops(spec, n1, n2, shape) / seconds[backend]
        ratio = (f"{seconds['nt'] / seconds['native']:>10.2f}"
                 if backend == "native" and "nt" in seconds else f"{'':>10}")
        print(f"{name:<8}{size:>12}{backend:>9}{seconds[backend]:>10.4f}"
              f"{n1 * n2 / seconds[backend]:>12.3g}{achieved / 1e9:>9.2f}"
              f"{achieved / rate:>9.3f}{ratio}")
      sys.stdout.flush()
  print("native/nt > 1 means the native backend is faster.")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
