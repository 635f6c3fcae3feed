"""Flags and setup shared by the experiment scripts (data, multi-host, versions, errors).

Small on purpose: each experiment defines its own flags and imports these
helpers for the parts every script needs the same way.

    _common.define_data_flags()          # --dataset --data_dir --data_source --standardize --zca
    _common.define_train_flags()         # --model --model_kwargs --batch_size --lr ...
    _common.define_distributed_flags()   # --jax_coordinator_address ...
    _common.maybe_initialize_distributed()
    data = _common.load_data_from_flags()   # loaded, checked and preprocessed
    with _common.user_errors(): ...          # bad input: one line, exit status 1
    app.run(main, flags_parser=_common.parse_flags)   # bad flag value: one line too

Importing it hides JAX's start-up INFO lines about absent accelerator
backends (`quiet_backend_probes`).
"""

from __future__ import annotations

import contextlib
import logging as pylogging
import sys
import traceback
from typing import Iterator

from absl import app
from absl import flags
from absl import logging

import _flags  # experiments/ is on sys.path, as for every script

FLAGS = flags.FLAGS


def quiet_backend_probes() -> None:
  """Hides the 'Unable to initialize backend cuda/rocm/tpu' INFO lines of every CPU run.

  JAX logs each accelerator backend it probes and does not find at INFO level
  (logger `jax._src.xla_bridge`); its warnings (e.g. a GPU found without a CUDA
  jaxlib) still show.
  """
  pylogging.getLogger("jax._src.xla_bridge").setLevel(pylogging.WARNING)


quiet_backend_probes()


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad value as one line naming the flag and exit status 1.

  Pass as `app.run(main, flags_parser=parse_flags)`: `--ipc=ten` prints
  `error: flag --ipc=ten: invalid literal for int() with base 10: 'ten'`.
  """
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e} (see --help)", file=sys.stderr)
    raise SystemExit(1) from None


_DATA_FLAGS = ("dataset", "data_dir", "data_source", "standardize", "zca")


def define_data_flags(default_dataset: str = "digits") -> None:
  """Defines --dataset, --data_dir, --data_source, --standardize and --zca."""
  flags.DEFINE_string("dataset", default_dataset,
                      "Dataset name: digits, fashion_mnist, mnist, cifar10, cifar100, svhn, "
                      "folder, npz (see kernelcond/data.py), or a TFDS name.")
  flags.DEFINE_string("data_dir", None, "Where the dataset files are (default per dataset).")
  flags.DEFINE_enum("data_source", "local", ["local", "tfds"], "Local files or TFDS.")
  flags.DEFINE_bool("standardize", True, "Standardise each channel with training statistics.")
  flags.DEFINE_float("zca", 0.0, "ZCA whitening strength relative to the mean eigenvalue "
                     "(0 = off; KIP on conv kernels uses about 0.1).")
  _flags.require_finite("zca")


_TRAIN_FLAGS = ("model", "batch_size", "lr", "momentum", "weight_decay", "schedule", "optimizer",
                "label_smoothing", "mixup_alpha", "augment")


def define_train_flags() -> None:
  """Defines the finite-network training flags shared by score.py and prune.py.

  Every flag defaults to None: an unset flag takes `kernelcond.nets.train.TrainConfig`'s
  default, so each default lives in one place.
  """
  flags.DEFINE_string("model", None, "mlp, convnet, resnet18 or spec_net (default convnet).")
  flags.DEFINE_string("model_kwargs", "", "Model attributes, e.g. 'width=32,depth=3,norm=batch' "
                      "or 'widths=256:256' for the MLP.")
  flags.DEFINE_integer("batch_size", None, "Training batch size (default 128).")
  flags.DEFINE_float("lr", None, "Peak learning rate (default 0.05).")
  flags.DEFINE_float("momentum", None, "SGD heavy-ball momentum (default 0.9).")
  flags.DEFINE_float("weight_decay", None, "Weight decay (default 5e-4).")
  flags.DEFINE_string("schedule", None, "Learning-rate schedule: cosine (default), step, "
                      "step_half or constant.")
  flags.DEFINE_string("optimizer", None, "sgd (default) or adam.")
  flags.DEFINE_float("label_smoothing", None, "Label smoothing weight (default 0: off).")
  flags.DEFINE_float("mixup_alpha", None, "Mixup Beta(alpha, alpha) parameter (default 0: off).")
  flags.DEFINE_string("augment", None, "DSA augmentation strategy, e.g. "
                      "'color_crop_cutout_flip_scale_rotate' (default none).")
  _flags.require_finite("lr", "momentum", "weight_decay", "label_smoothing", "mixup_alpha")


def train_config_from_flags(**fields):
  """A `train.TrainConfig` from the training flags that are set; `fields` sets the rest
  (epochs, seed)."""
  from kernelcond.nets import train

  given = {name: FLAGS[name].value for name in _TRAIN_FLAGS if FLAGS[name].value is not None}
  return train.TrainConfig(model_kwargs=train.parse_model_kwargs(FLAGS.model_kwargs),
                           **given, **fields)


def define_distributed_flags() -> None:
  """Defines the multi-host flags passed to `jax.distributed.initialize`."""
  flags.DEFINE_string("jax_coordinator_address", None,
                      "host:port of process 0, for multi-host runs (all three flags needed).")
  flags.DEFINE_integer("jax_num_processes", None, "Number of processes (multi-host).")
  flags.DEFINE_integer("jax_process_id", None, "This process's id (multi-host).")


def maybe_initialize_distributed() -> bool:
  """`kernelcond.distributed.initialize` from the flags, when --jax_coordinator_address is given.

  Must run before any JAX computation (it also switches on CPU collectives, so
  CPU-only processes compute together). Returns True if it initialised.

  Raises:
    app.UsageError: if only some of the three multi-host flags are set.
  """
  values = (FLAGS.jax_coordinator_address, FLAGS.jax_num_processes, FLAGS.jax_process_id)
  if all(v is None for v in values):
    return False
  if any(v is None for v in values):
    raise app.UsageError("--jax_coordinator_address, --jax_num_processes and "
                         "--jax_process_id must be given together.")
  import jax
  from kernelcond import distributed
  try:
    distributed.initialize(*values)
  except ValueError as e:
    raise app.UsageError(f"--jax_process_id: {e}") from None
  logging.info("jax.distributed: process %d of %d, %d global devices", jax.process_index(),
               jax.process_count(), jax.device_count())
  return True


def data_config() -> dict:
  """The data flags as a dict (for `config.json` / `results.json`)."""
  return {name: FLAGS[name].value for name in _DATA_FLAGS}


def load_data_from_flags(zca: float | None = None):
  """Loads --dataset, checks it is finite and preprocesses it per the data flags.

  Args:
    zca: ZCA strength to use instead of --zca (e.g. a value searched over).

  Returns:
    A `kernelcond.data.Dataset` with float32 images standardised per channel
    (if --standardize) and ZCA-whitened (if --zca > 0), fitted on the training set.

  Raises:
    ValueError / FileNotFoundError: naming the bad dataset, file or value.
  """
  from kernelcond import data as kdata
  from kernelcond import preprocess

  zca = FLAGS.zca if zca is None else zca
  if zca < 0:
    raise ValueError(f"--zca must be >= 0, got {zca}")
  dataset = kdata.load_dataset(FLAGS.dataset, FLAGS.data_dir, FLAGS.data_source)
  preprocess.check_finite(dataset.x_train, f"{dataset.name} x_train")
  preprocess.check_finite(dataset.x_test, f"{dataset.name} x_test")
  dataset = preprocess.prepare(dataset, standardize=FLAGS.standardize,
                               zca_reg=zca if zca > 0 else None)
  preprocess.check_finite(dataset.x_train, f"preprocessed {dataset.name} x_train")
  from kernelcond import evaluate
  evaluate.check_magnitude(dataset.x_train, f"preprocessed {dataset.name} x_train")
  evaluate.check_magnitude(dataset.x_test, f"preprocessed {dataset.name} x_test")
  logging.info("Loaded %r", dataset)
  return dataset


@contextlib.contextmanager
def user_errors(*extra: type) -> Iterator[None]:
  """Turns bad-input errors into one line on stderr and exit status 1.

  ValueError, ImportError and OSError (a missing, unreadable or unwritable
  file: FileNotFoundError, PermissionError, a path that is a file, a full
  disk; the message names the path), and the `extra` exception types, raised
  inside are printed as `error: <Type>: <message>` without a traceback (which
  is still logged at debug level, `--verbosity=1`, for developers), then the
  program exits with 1.
  """
  try:
    yield
  except (ValueError, ImportError, OSError, *extra) as e:
    logging.debug("%s", traceback.format_exc())
    print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    raise SystemExit(1) from None
