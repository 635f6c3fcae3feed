r"""Throughput of the pruning scores against a plain batched backward pass.

    python benchmarks/scores.py                       # ConvNet, 28x28x1, 2048 examples
    python benchmarks/scores.py --norms=instance,batch --n=4096 --batch_size=512

For the ConvNet of `kernelcond.nets.models` on Fashion-MNIST-shaped inputs (28x28x1,
random values, 10 classes), times over the same `--n` examples and chunk size:

  fwd+bwd      one `jax.grad` of the mean loss per chunk: the floor, what one
               SGD step's gradient costs;
  grand        `scores.grand`: `jax.vmap(jax.grad)` per-example gradients of all
               parameters and their norms (Data Diet, arXiv:2107.07075);
  grand-head   `scores.grand(last_layer_only=True)`: features once, then
               per-example gradients of the classifier only;
  el2n         `scores.el2n`: one inference forward pass;
  curvature    `scores.curvature`: 1 + `--curvature_draws` input gradients per
               example (finite-difference Hessian-vector products, Garg & Roy 2023);
  krr_loo      `scores.krr_loo` (fc3 NTK, `--kernel_n` examples): the kernel matrix,
               the ridge chosen by exact leave-one-out error over 4 values, then
               the leave-one-out residuals (no network);
  krr_el2n     `scores.krr_el2n`: the same kernel, then two KRR fits on halves.

The kernel scores run once (they do not depend on the ConvNet); their
/fwd+bwd ratio is against the first model's fwd+bwd per example, scaled to
`--kernel_n` examples (their cost grows as n^3, so the ratio holds for that n only).

With `--train_steps > 0` it also times `train.train_step` (SGD, train-mode
normalisation, batch `--train_batch`) and extrapolates to seconds per epoch of
60,000 examples (one Fashion-MNIST epoch).

Every function is compiled before timing (best of `--repeats`). The last column is
the time relative to fwd+bwd (GraNd's price for per-example gradients; 1.0 would
mean per-example norms come for free).
"""

import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from kernelcond.prune import scores
from kernelcond.nets import losses
from kernelcond.nets import train

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 2048, "Examples scored.")
flags.DEFINE_integer("batch_size", 256, "Chunk size of GraNd and of the fwd+bwd floor.")
flags.DEFINE_integer("width", 32, "ConvNet width.")
flags.DEFINE_integer("depth", 3, "ConvNet depth.")
flags.DEFINE_list("norms", ["instance", "batch"], "ConvNet normalisations to time.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is reported).")
flags.DEFINE_integer("train_steps", 30, "Timed SGD steps per model (0: skip).")
flags.DEFINE_integer("train_batch", 128, "Batch size of the timed SGD steps.")
flags.DEFINE_integer("curvature_draws", 10, "Rademacher directions of the curvature score.")
flags.DEFINE_integer("kernel_n", 2048, "Examples of the kernel scores (0: skip them).")


def _seconds_per_step(state: train.TrainState, steps: int, batch_size: int) -> float:
  """Mean wall time of `train_step` on random 28x28x1 batches (first step excluded)."""
  rng = np.random.default_rng(1)
  batches = [{"x": rng.standard_normal((batch_size, 28, 28, 1)).astype(np.float32),
              "y": rng.integers(0, 10, batch_size).astype(np.int32)} for _ in range(4)]
  state, metrics = train.train_step(state, batches[0])
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for i in range(steps):
    state, metrics = train.train_step(state, batches[i % 4])
  jax.block_until_ready(metrics)
  return (time.perf_counter() - t0) / steps


def _best(fn, repeats: int) -> float:
  fn()  # compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def _fwd_bwd_fn(state: train.TrainState, x: np.ndarray, y: np.ndarray, batch_size: int):
  """A callable: one mean-loss gradient (inference-mode BatchNorm) per chunk of x."""

  @jax.jit
  def grad_chunk(st, xb, yb):
    def loss(params):
      logits = st.apply_fn(st.variables(params), xb, train=False)
      return jnp.mean(losses.per_example_loss(logits, yb, st.loss))
    return jax.grad(loss)(st.params)

  chunks = [(x[a:a + batch_size], y[a:a + batch_size]) for a in range(0, len(x), batch_size)]

  def run():
    for xb, yb in chunks:
      jax.block_until_ready(grad_chunk(state, xb, yb))
  return run


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  n, bs = FLAGS.n - FLAGS.n % FLAGS.batch_size or FLAGS.batch_size, FLAGS.batch_size
  x = rng.standard_normal((n, 28, 28, 1)).astype(np.float32)
  y = rng.integers(0, 10, n).astype(np.int32)
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}; "
        f"{n} examples of 28x28x1, chunks of {bs}")
  header = f"{'model':<28}{'params':>9}{'method':>12}{'seconds':>10}{'examples/s':>12}{'/fwd+bwd':>10}"
  print(header)
  print("-" * len(header))
  first_floor = None
  for norm in FLAGS.norms:
    config = train.TrainConfig(model="convnet", model_kwargs={"width": FLAGS.width,
                                                              "depth": FLAGS.depth, "norm": norm})
    state = train.create_train_state(config, (28, 28, 1), 10, total_steps=1)
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state.params))
    name = f"convnet w{FLAGS.width} d{FLAGS.depth} {norm}"
    runs = {
        "fwd+bwd": _fwd_bwd_fn(state, x, y, bs),
        "grand": lambda: scores.grand(state, x, y, batch_size=bs),
        "grand-head": lambda: scores.grand(state, x, y, batch_size=bs, last_layer_only=True),
        "el2n": lambda: scores.el2n(state, x, y, batch_size=bs),
        "curvature": lambda: scores.curvature(state, x, y, batch_size=bs,
                                              draws=FLAGS.curvature_draws),
    }
    floor = None
    for method, fn in runs.items():
      seconds = _best(fn, FLAGS.repeats if method != "curvature" else 1)
      floor = seconds if floor is None else floor
      first_floor = first_floor or floor
      print(f"{name:<28}{num_params:>9}{method:>12}{seconds:>10.3f}{n / seconds:>12.0f}"
            f"{seconds / floor:>10.2f}")
    if FLAGS.train_steps > 0:
      per_step = _seconds_per_step(state, FLAGS.train_steps, FLAGS.train_batch)
      epoch = per_step * (60000 // FLAGS.train_batch)
      print(f"{name:<28}{'':>9}{'sgd step':>12}{per_step:>10.3f}"
            f"{FLAGS.train_batch / per_step:>12.0f}   -> {epoch:.1f} s per 60k-example epoch")
  if FLAGS.kernel_n > 0:
    m = min(FLAGS.kernel_n, n)
    floor = first_floor * m / n  # fwd+bwd of the first model over m examples
    for method in ("krr_loo", "krr_el2n"):
      fn = lambda method=method: scores.compute_scores(
          method, x[:m], y[:m], train.TrainConfig(), num_classes=10, kernel="fc3")
      seconds = _best(fn, 1)
      print(f"{'fc3 NTK, n=' + str(m):<28}{'-':>9}{method:>12}{seconds:>10.3f}"
            f"{m / seconds:>12.0f}{seconds / floor:>10.2f}")
  print("/fwd+bwd: time relative to one batched mean-loss gradient over the same examples.")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
