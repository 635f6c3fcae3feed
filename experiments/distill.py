r"""Distil a dataset into a few images per class with KIP or Label Solve.

    python experiments/distill.py --dataset=digits --ipc=10 --workdir=/tmp/kip_digits
    python experiments/distill.py --dataset=fashion_mnist --ipc=10 --steps=1000 \
        --target_batch=5000 --workdir=runs/kip_fmnist_ipc10

`--method=kip` (Nguyen, Chen, Lee, arXiv:2011.00050) starts from a class-balanced
real subset (or noise) and learns its images (and labels, `--learn_labels`) by
gradient descent on the KRR error of random target batches of the training set.
`--method=ls` (Label Solve, arXiv:2107.13034) keeps the images fixed and solves
for the labels in closed form against the whole training set; with
`--init_npz=<distilled.npz>` it re-solves the labels of images distilled by KIP.

The workdir holds `config.json` (a workdir belongs to one configuration; other
settings are refused), `checkpoints/` (every `--checkpoint_every` steps, on
Ctrl-C and on SIGTERM; re-running the same command resumes), `metrics.jsonl`
(one JSON line per logged step) and, at the end, `results.json`, `distilled.npz`
(images, labels, config) and `distilled.png`.

`results.json`: `natural_test_accuracy` (KRR from the initial class-balanced real
subset with one-hot labels), `test_accuracy` (KRR from the distilled set), both on
the full test set, `transfer_test_accuracy` (a finite `--transfer_model` trained on
the distilled set; None with `--transfer_model=none`) and
`natural_transfer_test_accuracy`, the backend used, wall time, seconds per step
and library versions.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_distributed_flags()
flags.DEFINE_enum("method", "kip", ["kip", "ls"], "KIP (learn images) or Label Solve.")
flags.DEFINE_integer("ipc", 10, "Images per class of the distilled set.")
flags.DEFINE_string("kernel", "fc3", "Kernel spec, e.g. fc3 or 'fc3:W_std=1.5,b_std=0.05'.")
flags.DEFINE_enum("kernel_backend", "auto", ["auto", "nt", "native"], "Kernel backend.")
flags.DEFINE_enum("kernel_type", "ntk", ["ntk", "nngp", "sample"],
                  "Kernel of the KRR loss; 'sample' draws NTK or NNGP at every step "
                  "(evaluation then uses the NTK).")
flags.DEFINE_integer("steps", 1000, "KIP steps in total (a resumed run continues to this).")
flags.DEFINE_float("lr", 0.04, "Adam learning rate (images and labels).")
flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd", "momentum"], "KIP optimizer.")
flags.DEFINE_enum("lr_schedule", "cosine", ["constant", "cosine"],
                  "Learning-rate schedule; 'cosine' decays to lr/100 over --steps (a resumed "
                  "run must then keep --steps).")
flags.DEFINE_integer("target_batch", 5000, "Target examples per KIP step (clipped to "
                     "the training set size).")
flags.DEFINE_bool("learn_labels", True, "KIP: learn the support labels too.")
flags.DEFINE_float("reg", 1e-6, "Relative ridge: reg * trace(K_ss) / n_support.")
flags.DEFINE_float("ls_ridge", 0.0, "Label Solve: absolute ridge on the labels (0 = "
                   "minimum-norm least squares).")
flags.DEFINE_bool("center_labels", True, "Use centred one-hot targets (1 - 1/c, -1/c).")
flags.DEFINE_enum("init", "real", ["real", "noise"], "Initial support images.")
flags.DEFINE_string("init_npz", None, "Start from the images and labels of this .npz "
                    "(e.g. a KIP distilled.npz for Label Solve).")
flags.DEFINE_integer("seed", 0, "Seed of the initial subset, target batches and kernel draws.")
flags.DEFINE_string("workdir", None, "Output directory; an existing one of the same "
                    "configuration is resumed.")
flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints.")
flags.DEFINE_integer("eval_every", 50, "Steps between running KRR test accuracies.")
flags.DEFINE_integer("eval_size", 1000, "Test examples (a fixed random subset) of the "
                     "running accuracy.")
flags.DEFINE_enum("transfer_model", "mlp", ["mlp", "convnet", "none"],
                  "Finite network trained on the distilled set at the end.")
flags.DEFINE_integer("transfer_epochs", 1000, "Epochs (= steps for a set smaller than "
                     "the batch) of the finite network.")
flags.DEFINE_enum("transfer_optimizer", "adam", ["adam", "sgd"],
                  "Optimizer of the finite network (MSE on targets rescaled to one-hot RMS).")
flags.DEFINE_float("transfer_lr", 0.001, "Learning rate of the finite network.")
flags.mark_flag_as_required("workdir")

# Flags that may change between a run and its resumption.
_RESUMABLE = ("steps", "checkpoint_every", "eval_every", "eval_size", "transfer_model",
              "transfer_epochs", "transfer_lr", "transfer_optimizer")


class _Terminated(Exception):
  """Raised by the SIGTERM handler so the loop can checkpoint and stop."""


def _on_sigterm(signum, frame):
  del signum, frame
  raise _Terminated()


def _config(backend: str) -> dict:
  from kernelcond import kernels

  spec = kernels.get_spec(FLAGS.kernel)
  names = ("method", "ipc", "kernel", "kernel_type", "lr", "optimizer", "target_batch",
           "learn_labels", "reg", "ls_ridge", "center_labels", "init", "init_npz", "seed")
  return {"experiment": "distill", **_common.data_config(),
          **{n: FLAGS[n].value for n in names}, "spec": spec.to_dict(),
          "kernel_backend": backend, "lr_schedule": FLAGS.lr_schedule,
          "decay_steps": _kip_config().decay_steps,
          **{n: FLAGS[n].value for n in _RESUMABLE}}


def _load_support_npz(path: str, image_shape, num_classes: int):
  from kernelcond import io
  from kernelcond import preprocess

  arrays = io.load_npz(path)
  if "images" not in arrays or "labels" not in arrays:
    raise ValueError(f"{path} must hold 'images' and 'labels', has {sorted(arrays)}")
  x = np.asarray(arrays["images"], np.float32)
  y = np.asarray(arrays["labels"])
  if x.shape[1:] != tuple(image_shape):
    raise ValueError(f"{path}: images of shape {x.shape[1:]}, dataset {tuple(image_shape)}")
  if y.ndim == 1:
    y = preprocess.one_hot(y.astype(np.int64), num_classes, center=FLAGS.center_labels)
  if y.shape != (len(x), num_classes):
    raise ValueError(f"{path}: labels of shape {y.shape}, expected ({len(x)}, {num_classes})")
  preprocess.check_finite(x, f"{path} images")
  preprocess.check_finite(y, f"{path} labels")
  return x, y.astype(np.float32)


def _kip_config():
  from kernelcond.condense import kip
  return kip.KipConfig(lr=FLAGS.lr, reg=FLAGS.reg, target_batch=FLAGS.target_batch,
                       learn_labels=FLAGS.learn_labels, kernel=FLAGS.kernel_type,
                       optimizer=FLAGS.optimizer, lr_schedule=FLAGS.lr_schedule,
                       decay_steps=FLAGS.steps if FLAGS.lr_schedule == "cosine" else 0)


def _krr_accuracy(kernel_fn, x_s, y_s, x, y, get) -> float:
  from kernelcond import krr
  return krr.evaluate(kernel_fn, x_s, y_s, x, y, reg=FLAGS.reg, get=get,
                      batch_size=512)["accuracy"]


class _MetricsLog:
  """Appends JSON lines to workdir/metrics.jsonl; on resume drops lines past the checkpoint."""

  def __init__(self, path: str, resume_step: int):
    self.path = path
    self.last = None  # the last record kept (e.g. the final loss of a finished run)
    if os.path.exists(path):
      with open(path) as f:
        keep = [l for l in f if l.strip() and json.loads(l).get("step", 0) <= resume_step]
      tmp = path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(keep)
      os.replace(tmp, path)
      self.last = json.loads(keep[-1]) if keep else None

  def write(self, record: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def _seconds_per_step(step_times) -> float | None:
  """Median step time of the whole run (all sessions, from metrics.jsonl), compile excluded."""
  if FLAGS.method != "kip":
    return float(step_times[0]) if step_times else None
  path = os.path.join(FLAGS.workdir, "metrics.jsonl")
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  # The first step of each session includes compilation; median ignores it.
  times = [r["seconds"] for r in records if "seconds" in r]
  return float(np.median(times)) if times else None


_MAX_CHUNK = 256  # steps per jitted chunk at most
_CHUNK_SECONDS = 0.5  # aimed-at duration of a chunk


def _chunk_end(step: int) -> int:
  """The next step at which the loop must stop: an evaluation, a checkpoint or the end."""
  ends = [FLAGS.steps]
  for every in (FLAGS.eval_every, FLAGS.checkpoint_every):
    ends.append((step // every + 1) * every)
  return min(ends)


def _run_kip(kernel_fn, data, x_init, y_init, y_train, eval_set, eval_get, n_devices):
  """The resumable KIP loop. Returns (state, loop statistics).

  Steps run in jit-compiled chunks (`kip.make_run`, one dispatch per chunk) that
  end at every evaluation and checkpoint; each step's metrics are still logged.
  """
  import jax
  import jax.numpy as jnp
  from tqdm import tqdm

  from kernelcond import io
  from kernelcond.condense import kip

  config = _kip_config()
  optimizer = kip.make_optimizer(config)
  ckpt_dir = os.path.join(FLAGS.workdir, "checkpoints")
  state = kip.init_state(x_init, y_init, optimizer, seed=FLAGS.seed)
  state, start = io.restore_checkpoint(ckpt_dir, state)
  if start:
    logging.info("Resuming KIP from step %d (%s)", start, ckpt_dir)
  run = kip.make_run(kernel_fn, config, optimizer, n_devices=n_devices, max_steps=_MAX_CHUNK)
  x_train = jnp.asarray(data.x_train)
  y_train = jnp.asarray(y_train)
  base_key = jax.random.PRNGKey(FLAGS.seed + 1)
  log = _MetricsLog(os.path.join(FLAGS.workdir, "metrics.jsonl"), start)
  x_eval, y_eval = eval_set
  stats = {"resumed_from_step": start, "step_times": [], "last_eval_accuracy": None,
           "final_loss": log.last["loss"] if log.last else None}

  def evaluate(state):
    return _krr_accuracy(kernel_fn, state.x_support, state.y_support, x_eval, y_eval, eval_get)

  bar = tqdm(total=FLAGS.steps, initial=start, desc="KIP", dynamic_ncols=True,
             disable=None)
  previous = signal.signal(signal.SIGTERM, _on_sigterm)
  step = start
  seconds = None  # per step, from the last chunk
  try:
    while step < FLAGS.steps:
      # Chunks of about _CHUNK_SECONDS keep Ctrl-C and the progress bar responsive.
      n = _chunk_end(step) - step
      n = min(n, _MAX_CHUNK, max(1, int(_CHUNK_SECONDS / seconds)) if seconds else 1)
      t0 = time.perf_counter()
      new_state, metrics = run(state, x_train, y_train, base_key, n)
      losses = np.asarray(metrics["loss"])[:n]
      seconds = (time.perf_counter() - t0) / n
      bad = np.flatnonzero(~np.isfinite(losses))
      if bad.size:  # state stays at the chunk's start (the last checkpoint is intact)
        raise FloatingPointError(f"KIP loss is {losses[bad[0]]} at step {step + bad[0]}; "
                                 "lower --lr or raise --reg.")
      state = new_state
      accuracies = np.asarray(metrics["accuracy"])[:n]
      used_ntk = np.asarray(metrics["used_ntk"])[:n]
      done = step + n
      evaluated = done % FLAGS.eval_every == 0 or done == FLAGS.steps
      if evaluated:
        stats["last_eval_accuracy"] = evaluate(state)
      for i in range(n):
        record = {"step": step + i + 1, "loss": float(losses[i]),
                  "target_accuracy": float(accuracies[i]), "used_ntk": float(used_ntk[i]),
                  "seconds": seconds}
        if i == n - 1 and evaluated:
          record["test_accuracy_subset"] = stats["last_eval_accuracy"]
        log.write(record)
      stats["final_loss"] = float(losses[-1])
      postfix = {"loss": f"{losses[-1]:.4g}"}
      if stats["last_eval_accuracy"] is not None:
        postfix["test_acc"] = f"{stats['last_eval_accuracy']:.4f}"
      bar.set_postfix(postfix, refresh=False)
      bar.update(n)
      step = done
      if done % FLAGS.checkpoint_every == 0 or done == FLAGS.steps:
        io.save_checkpoint(ckpt_dir, done, state)
  except (KeyboardInterrupt, _Terminated):
    bar.close()
    done = int(state.step)
    io.save_checkpoint(ckpt_dir, done, state)
    print(f"\nInterrupted: checkpoint of step {done} saved in {ckpt_dir}; re-run the same "
          "command to resume.", file=sys.stderr)
    sys.exit(130)
  finally:
    signal.signal(signal.SIGTERM, previous)
  bar.close()
  return state, stats


def _save_png(path: str, images: np.ndarray, labels: np.ndarray, class_names, ipc: int) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  num_classes = labels.shape[1]
  rows = min(ipc, 10)
  fig, axes = plt.subplots(rows, num_classes, figsize=(1.2 * num_classes, 1.35 * rows),
                           squeeze=False)
  for c in range(num_classes):
    for r in range(rows):
      ax = axes[r, c]
      ax.axis("off")
      i = c * ipc + r
      img = images[i]
      img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img[..., :3],
                cmap="gray" if img.shape[-1] == 1 else None)
      ax.set_title(f"{labels[i].argmax()}: {labels[i].max():.2f}", fontsize=7)
    axes[0, c].set_title(f"{class_names[c]}\n{labels[c * ipc].argmax()}: "
                         f"{labels[c * ipc].max():.2f}", fontsize=7)
  fig.suptitle("distilled images (label argmax: max value)", fontsize=9)
  fig.tight_layout()
  tmp = path + ".tmp"
  fig.savefig(tmp, format="png", dpi=80)
  plt.close(fig)
  os.replace(tmp, path)  # atomic: a killed run never leaves half a PNG


def _transfer(x_s, y_s, data, seed: int):
  """Test accuracy of --transfer_model trained with MSE on the rescaled targets."""
  from kernelcond.nets import train
  y_s = train.rescale_targets(y_s)
  config = train.TrainConfig(model=FLAGS.transfer_model, epochs=FLAGS.transfer_epochs,
                             lr=FLAGS.transfer_lr, loss="mse", seed=seed,
                             optimizer=FLAGS.transfer_optimizer)
  _, metrics = train.train_and_evaluate(config, x_s, y_s, data.x_test, data.y_test,
                                        num_classes=data.num_classes)
  return float(metrics["test_accuracy"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start_time = time.time()
  _common.maybe_initialize_distributed()
  with _common.user_errors():
    from kernelcond import kernels
    from kernelcond import preprocess
    from kernelcond.condense import kip

    if FLAGS.ipc < 1:
      raise ValueError(f"--ipc must be >= 1, got {FLAGS.ipc}")
    for name in ("steps", "checkpoint_every", "eval_every", "eval_size", "target_batch"):
      if FLAGS[name].value < 1:
        raise ValueError(f"--{name} must be >= 1, got {FLAGS[name].value}")
    spec = kernels.get_spec(FLAGS.kernel)
    backend = kernels.resolve_backend(FLAGS.kernel_backend, spec)
    # Everything is validated before config.json is written, so a bad command
    # leaves nothing behind that would block the corrected one.
    data = _common.load_data_from_flags()
    y_train = preprocess.one_hot(data.y_train, data.num_classes, center=FLAGS.center_labels)
    x_nat, y_nat, _ = kip.init_support(data.x_train, y_train, data.y_train, FLAGS.ipc,
                                       FLAGS.seed, "real", data.num_classes)
    if FLAGS.init_npz:
      x_init, y_init = _load_support_npz(FLAGS.init_npz, data.image_shape, data.num_classes)
    else:
      x_init, y_init, _ = kip.init_support(data.x_train, y_train, data.y_train, FLAGS.ipc,
                                           FLAGS.seed, FLAGS.init, data.num_classes)
    kernel_fn = kernels.make_kernel_fn(spec, backend)
    config = _config(backend)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    from kernelcond import io
    io.check_run_config(FLAGS.workdir, config, ignore=_RESUMABLE)

  import jax
  eval_get = "ntk" if FLAGS.kernel_type == "sample" else FLAGS.kernel_type
  eval_idx = np.random.default_rng(FLAGS.seed).permutation(data.num_test)[:FLAGS.eval_size]
  eval_set = (data.x_test[eval_idx], data.y_test[eval_idx])
  natural = _krr_accuracy(kernel_fn, x_nat, y_nat, data.x_test, data.y_test, eval_get)
  logging.info("natural KRR test accuracy (%d per class): %.4f", FLAGS.ipc, natural)

  stats = {"resumed_from_step": 0, "step_times": [], "final_loss": None}
  if FLAGS.method == "kip":
    try:
      state, stats = _run_kip(kernel_fn, data, x_init, y_init, y_train, eval_set, eval_get,
                              n_devices=None)
    except FloatingPointError as e:  # the last checkpoint is intact
      print(f"error: {e}", file=sys.stderr)
      raise SystemExit(1) from None
    x_s, y_s = np.asarray(state.x_support), np.asarray(state.y_support)
    steps_done = int(state.step)
  else:
    from kernelcond.condense import label_solve
    t0 = time.perf_counter()
    x_s = x_init
    y_s = label_solve.label_solve(kernel_fn, x_s, data.x_train, y_train, reg=FLAGS.reg,
                                  get=eval_get, ridge=FLAGS.ls_ridge, batch_size=512)
    stats["step_times"] = [time.perf_counter() - t0]
    steps_done = 1

  distilled = _krr_accuracy(kernel_fn, x_s, y_s, data.x_test, data.y_test, eval_get)
  per_step = _seconds_per_step(stats["step_times"])
  from kernelcond import io
  io.save_npz(os.path.join(FLAGS.workdir, "distilled.npz"), images=x_s, labels=y_s,
              config=config)
  _save_png(os.path.join(FLAGS.workdir, "distilled.png"), x_s, y_s, data.class_names,
            FLAGS.ipc if not FLAGS.init_npz else max(1, len(x_s) // data.num_classes))
  results = {
      "config": config,
      "kernel_backend": backend,
      "dataset": {"name": data.name, "n_train": data.num_train, "n_test": data.num_test,
                  "fingerprint": data.fingerprint()},
      "support_size": int(len(x_s)),
      "natural_test_accuracy": natural,
      "test_accuracy": distilled,
      "transfer_test_accuracy": None,
      "natural_transfer_test_accuracy": None,
      "transfer_error": None,
      "eval_kernel": eval_get,
      "steps": steps_done,
      "resumed_from_step": stats["resumed_from_step"],
      "final_loss": stats["final_loss"],
      "seconds_per_step": per_step,
      "wall_time_s": time.time() - start_time,
      "devices": f"{jax.local_device_count()} x {jax.devices()[0].platform}",
      "versions": _common.versions(),
  }
  path = os.path.join(FLAGS.workdir, "results.json")
  io.save_json(path, results)  # the distilled set and its KRR accuracy are safe from here
  transfer = natural_transfer = None
  if FLAGS.transfer_model != "none":
    try:
      transfer = _transfer(x_s, y_s, data, FLAGS.seed)
      natural_transfer = _transfer(x_nat, y_nat, data, FLAGS.seed)
    except (FloatingPointError, ValueError) as e:
      results["transfer_error"] = f"{type(e).__name__}: {e}"
      logging.warning("Finite-network transfer failed (results kept without it): %s", e)
    results.update(transfer_test_accuracy=transfer,
                   natural_transfer_test_accuracy=natural_transfer,
                   wall_time_s=time.time() - start_time)
    io.save_json(path, results)

  print(f"\n{FLAGS.method.upper()} on {data.name}: {FLAGS.ipc} images/class, {FLAGS.kernel} "
        f"{eval_get.upper()} ({backend} backend), {steps_done} step(s)")
  print(f"  KRR test accuracy, natural subset : {natural:.4f}")
  print(f"  KRR test accuracy, distilled set  : {distilled:.4f}  ({distilled - natural:+.4f})")
  if transfer is not None:
    print(f"  {FLAGS.transfer_model} trained on natural / distilled : "
          f"{natural_transfer:.4f} / {transfer:.4f}")
  elif results["transfer_error"]:
    print(f"  {FLAGS.transfer_model} transfer failed: {results['transfer_error']}")
  if per_step is not None and FLAGS.method == "kip":
    print(f"  {per_step * 1e3:.1f} ms/step, wall time {results['wall_time_s']:.1f} s")
  print(f"  outputs in {FLAGS.workdir}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
