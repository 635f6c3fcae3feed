r"""Kernel-matrix throughput per spec and backend, against the matmul rate and random features.

    python benchmarks/kernels.py                       # FC and ConvNet, both backends
    python benchmarks/kernels.py --specs=fc3 --fc_sizes=1000x5000
    python benchmarks/kernels.py --backends=native --specs=conv3 --conv_sizes=16x16,32x32 \
        --random_features=8x128,8x256 --get=nngp      # exact vs random-feature conv3

For each spec, size and backend (neural-tangents `nt` where it imports, and
`native`), times `kernels.kernel_matrix` (jit-compiled, first call excluded) and
prints seconds, microseconds per kernel entry, the FLOPs and bytes per entry of
the models below, the achieved FLOP rate and its ratio to the float32 matmul
rate, the achieved byte rate and its ratio to the memory bandwidth (both
baselines measured in the same run), and a speed-up: for `native` rows nt
seconds / native seconds. A kernel whose FLOPs per byte fall below the
machine's matmul rate / bandwidth is bound by memory, not arithmetic: the exact
pooled ConvNet kernel does about 1.75 FLOPs per byte of covariance traffic.

For the specs in `--rf_specs` (default conv3), each `--random_features` entry
`MxW` adds a row `rfMxW`: the random-feature kernel of M random networks of
width W (`kernels.make_random_kernel_fn`, RFAD arXiv:2210.12067) on the same
inputs, timed the same way; its speed-up is native seconds / its seconds, and
`rel.err` is its relative Frobenius distance to the native kernel matrix. Its
cost is one forward (NNGP) or per-example backward (NTK) pass per input and
network plus an `(n1, D) @ (D, n2)` product, so its time per entry falls as the
sizes grow; the exact pooled kernel costs O((HW)^2) per entry.

FLOP model of the exact kernels (a lower bound on the work any implementation must do):
  FC, depth L:   2*n1*n2*d for the input Gram matrix plus ~20*L*n1*n2 for the
                 layer recursion (arc-cosine / erf closed forms, NTK update).
  Conv, depth L, HxW images, C channels, pooling halving H and W per block:
                 per pair of images, 2*C*(HW)^2 for the input covariance, then per
                 layer 2*9*(H_l W_l)^2 for the 3x3 patch sums of NNGP and NTK plus
                 ~20*(H_l W_l)^2 for the nonlinearity.
Bytes model (float32 traffic of the covariance arrays; inputs and the output
matrix are counted once): per pair and layer, the 3x3 patch sum and the
nonlinearity each read and write the NNGP and the NTK array of the layer's
per-pair size, 8 arrays of 4 bytes each: size 1 for FC, (H_l W_l)^2 for conv
nets with pooling or GAP (the full spatial covariance), H_l W_l without
(only the spatial diagonal is needed).
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
flags.DEFINE_list("random_features", ["8x128", "8x256"],
                  "MxW: random-feature kernels of M networks of width W, timed for --rf_specs.")
flags.DEFINE_list("rf_specs", ["conv3"], "Specs that get random-feature rows.")
flags.DEFINE_integer("rf_seed", 0, "PRNG seed of the random networks.")


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


def bytes_per_entry(spec: kernels.ArchSpec, shape) -> float:
  """Covariance bytes one kernel entry moves under the model in the module docstring."""
  h, w, c = shape
  if spec.family == "fc":
    return 8 * 4.0 * spec.depth
  full = spec.pool or spec.readout == "gap"
  total, hw = 0.0, h * w
  for _ in range(spec.depth):
    total += 8 * 4.0 * (hw ** 2 if full else hw)
    if spec.pool:
      hw //= 4
  return total


def _rel_frobenius(estimate: np.ndarray, exact: np.ndarray) -> float:
  exact = np.asarray(exact, np.float64)
  return float(np.linalg.norm(np.asarray(estimate, np.float64) - exact) / np.linalg.norm(exact))


def main(argv):
  del argv
  rate = _timing.matmul_rate()
  bandwidth = _timing.memory_bandwidth()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}; "
        f"float32 matmul rate: {rate / 1e9:.1f} GFLOP/s; memory bandwidth "
        f"{bandwidth / 1e9:.1f} GB/s; get={FLAGS.get}")
  backends = [b for b in FLAGS.backends
              if b != "nt" or kernels.neural_tangents_available()]
  header = (f"{'spec':<8}{'n1 x n2':>12}{'backend':>10}{'seconds':>10}{'us/entry':>11}"
            f"{'FLOP/entry':>12}{'B/entry':>10}{'GFLOP/s':>9}{'/matmul':>9}{'GB/s':>8}"
            f"{'/membw':>8}{'speed-up':>10}{'rel.err':>9}")
  print(header)
  print("-" * len(header))
  shape = (28, 28, 1)
  rng = np.random.default_rng(0)
  key = jax.random.PRNGKey(FLAGS.rf_seed)
  for name in FLAGS.specs:
    spec = kernels.get_spec(name)
    sizes = FLAGS.fc_sizes if spec.family == "fc" else FLAGS.conv_sizes
    rf_configs = FLAGS.random_features if name in FLAGS.rf_specs else []
    for size in sizes:
      n1, n2 = (int(v) for v in size.split("x"))
      x1 = rng.standard_normal((n1,) + shape).astype(np.float32)
      x2 = rng.standard_normal((n2,) + shape).astype(np.float32)
      seconds, results = {}, {}
      runs = [(b, kernels.make_kernel_fn(spec, b)) for b in backends]
      for config in rf_configs:
        n_models, width = (int(v) for v in config.split("x"))
        runs.append((f"rf{config}", kernels.make_random_kernel_fn(spec, n_models, width, key)))
      for label, kernel_fn in runs:
        run = lambda: kernels.kernel_matrix(kernel_fn, x1, x2, FLAGS.get, FLAGS.batch_size)
        results[label] = run()  # compile
        seconds[label] = min(_timing.timed(run) for _ in range(FLAGS.repeats))
        exact = label in ("nt", "native")
        if exact:
          entry_flops, entry_bytes = flops(spec, 1, 1, shape), bytes_per_entry(spec, shape)
          achieved = entry_flops * n1 * n2 / seconds[label]
          moved = entry_bytes * n1 * n2 / seconds[label]
          gflops = (f"{entry_flops:>12.3g}{entry_bytes:>10.3g}{achieved / 1e9:>9.2f}"
                    f"{achieved / rate:>9.3f}{moved / 1e9:>8.1f}{moved / bandwidth:>8.3f}")
        else:
          gflops = f"{'-':>12}{'-':>10}{'-':>9}{'-':>9}{'-':>8}{'-':>8}"
        reference = "nt" if label == "native" else ("native" if not exact else None)
        speedup = (f"{seconds[reference] / seconds[label]:>10.2f}"
                   if reference in seconds and label != reference else f"{'':>10}")
        error = (f"{_rel_frobenius(results[label], results['native']):>9.3g}"
                 if not exact and "native" in results else f"{'':>9}")
        print(f"{name:<8}{size:>12}{label:>10}{seconds[label]:>10.4f}"
              f"{seconds[label] / (n1 * n2) * 1e6:>11.1f}{gflops}{speedup}{error}")
        sys.stdout.flush()
  print("speed-up: native rows nt/native seconds; rf rows native/rf seconds (> 1: faster).")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
