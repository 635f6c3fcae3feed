r"""Evaluate any small support set with one protocol: KRR and a finite network.

    python experiments/evaluate.py --support=/tmp/kip_digits/distilled.npz \
        --dataset=digits --kernel=fc3 --model=mlp --workdir=/tmp/eval_digits

The support file is an `.npz` holding either
  * `images` `(n, H, W, C)` and `labels` (`(n,)` integers or `(n, c)` targets,
    e.g. KIP's learned labels), such as `distilled.npz` of `experiments/distill.py`;
  * or `indices` `(n,)` into the training set (a selected subset), whose images
    and one-hot labels are taken from the dataset.
Images of a `distilled.npz` live in the preprocessed space of the run that made
them: its `config` (standardisation, ZCA) is adopted unless the data flags are
given explicitly.

Reports KRR test accuracy (fit on the support set with `--kernel`,
`--kernel_type`, `--reg`; the whole test set) and, unless `--model=none`, the test
accuracy of a finite Flax network trained on the support set
(`kernelcond.nets.train.train_and_evaluate`). Writes `--workdir/results.json`.
"""

from __future__ import annotations

import json
import os
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
flags.DEFINE_string("support", None, ".npz with images+labels, or indices into the "
                    "training set.")
flags.DEFINE_string("kernel", "fc3", "Kernel spec of the KRR protocol.")
flags.DEFINE_enum("kernel_backend", "auto", ["auto", "nt", "native"], "Kernel backend.")
flags.DEFINE_enum("kernel_type", "ntk", ["ntk", "nngp"], "Kernel of the KRR protocol.")
flags.DEFINE_float("reg", 1e-6, "Relative ridge: reg * trace(K) / n.")
flags.DEFINE_bool("center_labels", True, "Centred one-hot targets for integer labels.")
flags.DEFINE_enum("model", "mlp", ["mlp", "convnet", "none"], "Finite network (or none).")
flags.DEFINE_integer("epochs", 1000, "Epochs of the finite network (= steps for a set "
                     "smaller than the batch).")
flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "Optimizer of the finite network "
                  "(MSE on targets rescaled to the RMS of one-hot labels).")
flags.DEFINE_float("lr", 0.001, "Learning rate of the finite network.")
flags.DEFINE_integer("seed", 0, "Seed of the finite network.")
flags.DEFINE_string("workdir", None, "Where results.json is written.")
flags.mark_flag_as_required("support")
flags.mark_flag_as_required("workdir")

_PREPROCESS_FLAGS = ("standardize", "zca")


def _adopt_preprocessing(arrays: dict) -> None:
  """Uses the preprocessing recorded in a distilled.npz unless given on the command line."""
  if "config" not in arrays:
    return
  config = json.loads(str(arrays["config"]))
  for name in _PREPROCESS_FLAGS:
    if name in config and not FLAGS[name].present and FLAGS[name].value != config[name]:
      logging.info("Using --%s=%s recorded in the support file", name, config[name])
      FLAGS[name].value = config[name]


def load_support(arrays: dict, path: str, data, center: bool):
  """`(images, targets)` from the arrays of a support file (see the module docstring)."""
  from kernelcond import preprocess

  num_classes = data.num_classes
  if "indices" in arrays and "images" not in arrays:
    idx = np.asarray(arrays["indices"])
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
      raise ValueError(f"{path}: 'indices' must be a 1-D integer array, got {idx.shape} "
                       f"{idx.dtype}")
    if idx.size == 0 or idx.min() < 0 or idx.max() >= data.num_train:
      raise ValueError(f"{path}: indices must lie in [0, {data.num_train}) for "
                       f"{data.name}'s training set")
    return (data.x_train[idx],
            preprocess.one_hot(data.y_train[idx], num_classes, center=center))
  if "images" not in arrays or "labels" not in arrays:
    raise ValueError(f"{path} must hold 'images' and 'labels' (or 'indices'); it has "
                     f"{sorted(arrays)}")
  x = np.asarray(arrays["images"], np.float32)
  y = np.asarray(arrays["labels"])
  if x.shape[1:] != data.image_shape:
    raise ValueError(f"{path}: images of shape {x.shape[1:]}, but {data.name} has "
                     f"{data.image_shape}")
  if y.ndim == 1:
    if not np.issubdtype(y.dtype, np.integer):
      raise ValueError(f"{path}: 1-D labels must be integers, got {y.dtype}")
    y = preprocess.one_hot(y, num_classes, center=center)
  if y.shape != (len(x), num_classes):
    raise ValueError(f"{path}: labels of shape {y.shape}, expected ({len(x)}, {num_classes})")
  preprocess.check_finite(x, f"{path} images")
  preprocess.check_finite(y, f"{path} labels")
  return x, y.astype(np.float32)


def _images_per_class(y_s, num_classes: int):
  """Examples per class when every class (label argmax) has as many, else None."""
  counts = np.bincount(np.asarray(y_s).argmax(-1), minlength=num_classes)
  return int(counts[0]) if np.all(counts == counts[0]) else None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start_time = time.time()
  _common.maybe_initialize_distributed()
  with _common.user_errors():
    from kernelcond import io
    from kernelcond import kernels
    from kernelcond import krr

    arrays = io.load_npz(FLAGS.support)
    _adopt_preprocessing(arrays)
    spec = kernels.get_spec(FLAGS.kernel)
    backend = kernels.resolve_backend(FLAGS.kernel_backend, spec)
    data = _common.load_data_from_flags()
    x_s, y_s = load_support(arrays, FLAGS.support, data, FLAGS.center_labels)
    kernel_fn = kernels.make_kernel_fn(spec, backend)
    scores = krr.evaluate(kernel_fn, x_s, y_s, data.x_test, data.y_test, reg=FLAGS.reg,
                          get=FLAGS.kernel_type, batch_size=512)
    network = None
    if FLAGS.model != "none":
      from kernelcond.nets import train
      config = train.TrainConfig(model=FLAGS.model, epochs=FLAGS.epochs, lr=FLAGS.lr,
                                 loss="mse", seed=FLAGS.seed, optimizer=FLAGS.optimizer)
      _, network = train.train_and_evaluate(config, x_s, train.rescale_targets(y_s),
                                            data.x_test, data.y_test,
                                            num_classes=data.num_classes)

  results = {
      "support": os.path.abspath(FLAGS.support),
      "support_size": int(len(x_s)),
      "num_classes": int(data.num_classes),
      "images_per_class": _images_per_class(y_s, data.num_classes),
      "config": {"experiment": "evaluate", **_common.data_config(), "kernel": FLAGS.kernel, "spec": spec.to_dict(),
                 "kernel_type": FLAGS.kernel_type, "reg": FLAGS.reg,
                 "center_labels": FLAGS.center_labels, "model": FLAGS.model,
                 "optimizer": FLAGS.optimizer,
                 "epochs": FLAGS.epochs, "lr": FLAGS.lr, "seed": FLAGS.seed},
      "kernel_backend": backend,
      "dataset": {"name": data.name, "n_train": data.num_train, "n_test": data.num_test,
                  "fingerprint": data.fingerprint()},
      "krr_test_accuracy": scores["accuracy"],
      "krr_test_mse": scores["mse"],
      "network_test_accuracy": None if network is None else float(network["test_accuracy"]),
      "wall_time_s": time.time() - start_time,
      "versions": _common.versions(),
  }
  os.makedirs(FLAGS.workdir, exist_ok=True)
  path = os.path.join(FLAGS.workdir, "results.json")
  io.save_json(path, results)
  print(f"\n{FLAGS.support}: {len(x_s)} examples, {data.name} test set of {data.num_test}")
  print(f"  KRR ({FLAGS.kernel} {FLAGS.kernel_type.upper()}, {backend}) test accuracy: "
        f"{scores['accuracy']:.4f}")
  if network is not None:
    print(f"  {FLAGS.model} trained on it, test accuracy: {network['test_accuracy']:.4f}")
  print(f"  results: {path}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
