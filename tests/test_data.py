"""Tests for kernelcond.data: every format is written here by hand and read back exactly."""

import codecs
import dataclasses
import gzip
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest

from kernelcond import data

FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
  """Image-tree caches go to a fresh folder per test, never to the user's cache."""
  cache = tmp_path_factory.mktemp("cache")
  monkeypatch.setenv(data.CACHE_DIR_ENV, str(cache))
  return cache


def _rng(seed=0):
  return np.random.default_rng(seed)


def _scaled(pixels):
  """The documented uint8 -> float32 map, x / 255 in float32."""
  return np.asarray(pixels).astype(np.float32) / np.float32(255.0)


# ---------------------------------------------------------------- IDX


def _write_idx(path, array, code=0x08, gz=False):
  """IDX writer independent of the reader: header, big-endian sizes, big-endian data."""
  dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
  payload = struct.pack(">BBBB", 0, 0, code, array.ndim)
  payload += b"".join(struct.pack(">I", s) for s in array.shape)
  payload += np.asarray(array).astype(dtype).tobytes()
  if gz:
    payload = gzip.compress(payload)
  with open(path, "wb") as f:
    f.write(payload)
  return path


def _write_mnist(directory, gz=True, n_train=6, n_test=4, shape=(4, 5), num_classes=10,
                 stems=("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
  rng = _rng(1)
  arrays = [rng.integers(0, 256, size=(n_train,) + shape, dtype=np.uint8),
            rng.integers(0, num_classes, size=n_train, dtype=np.uint8),
            rng.integers(0, 256, size=(n_test,) + shape, dtype=np.uint8),
            rng.integers(0, num_classes, size=n_test, dtype=np.uint8)]
  os.makedirs(directory, exist_ok=True)
  for stem, array in zip(stems, arrays):
    _write_idx(os.path.join(directory, stem + (".gz" if gz else "")), array, gz=gz)
  return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_mnist_roundtrip(tmp_path, gz):
  x_tr, y_tr, x_te, y_te = _write_mnist(tmp_path, gz=gz)
  ds = data.load_dataset("mnist", str(tmp_path))
  assert ds.x_train.shape == (6, 4, 5, 1) and ds.x_test.shape == (4, 4, 5, 1)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  np.testing.assert_array_equal(ds.x_train[..., 0], _scaled(x_tr))
  np.testing.assert_array_equal(ds.x_test[..., 0], _scaled(x_te))
  np.testing.assert_array_equal(ds.y_train, y_tr)
  np.testing.assert_array_equal(ds.y_test, y_te)
  assert ds.num_classes == 10 and ds.class_names[3] == "3"
  assert ds.source == f"idx:{tmp_path}" and ds.image_shape == (4, 5, 1)


def test_idx_dotted_names_and_other_dtypes(tmp_path):
  stems = ("train-images.idx3-ubyte", "train-labels.idx1-ubyte",
           "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte")
  _write_mnist(tmp_path, gz=False, stems=stems)
  assert data.load_dataset("mnist", str(tmp_path)).num_train == 6
  ints = np.array([[1, -70000], [3, 2 ** 30]], np.int32)
  np.testing.assert_array_equal(data.read_idx(_write_idx(tmp_path / "i", ints, 0x0C)), ints)
  floats = np.array([0.5, -2.25], np.float32)
  out = data.read_idx(_write_idx(tmp_path / "f.gz", floats, 0x0D, gz=True))
  np.testing.assert_array_equal(out, floats)
  assert out.dtype == np.float32 and out.dtype.isnative


def _replace(path, payload):
  with open(path, "wb") as f:
    f.write(payload)


def test_idx_corrupt_files_name_the_file(tmp_path):
  _write_mnist(tmp_path, gz=True)
  images = str(tmp_path / "train-images-idx3-ubyte.gz")
  raw = gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
  cases = {
      "bad magic": (gzip.compress(b"\x08\x03" + raw[2:]), "not an IDX file"),
      "truncated": (gzip.compress(raw[:-7]), "truncated or corrupt"),
      "trailing": (gzip.compress(raw + b"\x00"), "truncated or corrupt"),
      "bad gzip": (gzip.compress(raw)[:40], "gzip"),
      "not gzip": (raw, "not a gzip file"),
      "empty": (gzip.compress(b""), "not an IDX file"),
  }
  for name, (payload, message) in cases.items():
    _replace(images, payload)
    with pytest.raises(ValueError, match=message) as info:
      data.load_dataset("mnist", str(tmp_path))
    assert images in str(info.value), name


def test_idx_count_mismatch_and_label_range(tmp_path):
  _write_mnist(tmp_path, gz=False)
  labels = str(tmp_path / "train-labels-idx1-ubyte")
  _write_idx(labels, np.zeros(5, np.uint8))
  with pytest.raises(ValueError, match="6 images .* but 5 labels") as info:
    data.load_dataset("mnist", str(tmp_path))
  assert labels in str(info.value)
  _write_idx(labels, np.array([0, 1, 2, 3, 4, 10], np.uint8))
  with pytest.raises(ValueError, match=r"outside \[0, 10\)") as info:
    data.load_dataset("mnist", str(tmp_path))
  assert labels in str(info.value)


def test_idx_missing_files_and_dirs(tmp_path):
  _write_mnist(tmp_path, gz=True)
  os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
  with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
    data.load_dataset("mnist", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.load_dataset("mnist", str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="needs data_dir"):
    data.load_dataset("mnist")
  with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
    data.load_dataset("fashion_mnist", str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
    data.load_dataset("fashion_mnist", str(tmp_path / "empty_dir_does_not_exist"))
  os.makedirs(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
    data.load_dataset("fashion_mnist", str(tmp_path / "empty"))


def test_fashion_mnist_real_files():
  if not os.path.isdir(FASHION):
    pytest.skip(f"{FASHION} absent (apt-get install -y dataset-fashion-mnist)")
  ds = data.load_dataset("fashion_mnist")
  assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
  np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  assert ds.class_names[9] == "Ankle boot" and ds.source == f"idx:{FASHION}"


# ---------------------------------------------------------------- digits


def test_digits_split_is_stratified_fixed_and_indexes_sklearn():
  from sklearn.datasets import load_digits

  ds = data.load_dataset("digits")
  assert ds.x_train.shape == (1347, 8, 8, 1) and ds.x_test.shape == (450, 8, 8, 1)
  assert ds.num_classes == 10 and ds.source == "sklearn"
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  raw = load_digits()
  train, test = data.stratified_split(raw.target, 450, seed=0)
  np.testing.assert_array_equal(ds.x_train.reshape(1347, 64) * 16.0, raw.data[train])
  np.testing.assert_array_equal(ds.y_test, raw.target[test])
  counts = np.bincount(raw.target)
  assert np.all(np.abs(np.bincount(ds.y_test) - counts * 450 / 1797) < 1.0)
  # The split is frozen: a change of numpy's stream or of the data would show here.
  assert test[:8].tolist() == _DIGITS_FIRST_TEST
  assert ds.fingerprint() == data.load_dataset("digits").fingerprint()


_DIGITS_FIRST_TEST = [1, 5, 9, 12, 14, 15, 16, 17]


@pytest.mark.parametrize("n", [29, 30, 31])
def test_stratified_split_partitions(n):
  labels = np.arange(n) % 3
  train, test = data.stratified_split(labels, 10, seed=1)
  assert len(test) == 10 and len(np.intersect1d(train, test)) == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
  assert np.bincount(labels[test]).max() - np.bincount(labels[test]).min() <= 1
  with pytest.raises(ValueError, match="test_size"):
    data.stratified_split(labels, n, seed=1)


# ---------------------------------------------------------------- CIFAR pickles


def _cifar_rows(images):
  """(n, 32, 32, 3) -> (n, 3072) rows: all red, then green, then blue, row-major."""
  return np.concatenate([images[..., c].reshape(len(images), -1) for c in range(3)], axis=1)


def _pickle(path, obj, protocol=None):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=protocol)


def _write_cifar10(directory, per_batch=2, protocol=None):
  rng = _rng(2)
  os.makedirs(directory, exist_ok=True)
  names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
  out = {}
  for name in names:
    images = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=per_batch).tolist()
    _pickle(os.path.join(directory, name), {b"batch_label": name.encode(),
                                            b"data": _cifar_rows(images), b"labels": labels},
            protocol)
    out[name] = (images, labels)
  names10 = [n.encode() for n in data.CIFAR10_CLASSES[::-1]]  # reversed: must be read
  _pickle(os.path.join(directory, "batches.meta"), {b"label_names": names10}, protocol)
  return out


def _check_cifar10(ds, batches):
  train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
  np.testing.assert_array_equal(ds.x_train, _scaled(np.concatenate([b[0] for b in train])))
  np.testing.assert_array_equal(ds.y_train, np.concatenate([b[1] for b in train]))
  np.testing.assert_array_equal(ds.x_test, _scaled(batches["test_batch"][0]))
  assert ds.class_names == data.CIFAR10_CLASSES[::-1] and ds.image_shape == (32, 32, 3)


def test_cifar10_folder_parent_and_tarball(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  batches = _write_cifar10(folder)
  ds = data.load_dataset("cifar10", str(folder))
  _check_cifar10(ds, batches)
  # One pixel by hand: image 1 of batch 3, row 5, column 7, green.
  rows = _cifar_rows(batches["data_batch_3"][0])
  assert ds.x_train[5, 5, 7, 1] == _scaled(rows[1, 1024 + 5 * 32 + 7])
  _check_cifar10(data.load_dataset("cifar10", str(tmp_path)), batches)
  archive = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(folder, arcname="cifar-10-batches-py")
  ds_tar = data.load_dataset("cifar10", str(archive))
  _check_cifar10(ds_tar, batches)
  assert ds_tar.fingerprint() == ds.fingerprint()


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_cifar10_python3_pickles(tmp_path, protocol):
  # Protocol 2 writes bytes as _codecs.encode(str, 'latin1'); 5 writes arrays with
  # numpy's _frombuffer. Both must load, equal to the default protocol's result.
  batches = _write_cifar10(tmp_path / "p", protocol=protocol)
  if protocol == 2:
    assert b"_codecs" in (tmp_path / "p" / "data_batch_1").read_bytes()
  _check_cifar10(data.load_dataset("cifar10", str(tmp_path / "p")), batches)


class _Codec:
  """Pickles as a call of `function(*args)` (`_codecs.encode` or `_codecs.decode`)."""

  def __init__(self, function, *args):
    self.call = (function, args)

  def __reduce__(self):
    return self.call


def test_cifar_pickle_codecs_only_latin1(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  _write_cifar10(folder)
  batch = str(folder / "data_batch_1")
  for call, message in (((codecs.encode, "nop", "rot13"), "only latin-1"),
                        ((codecs.encode, b"x", "latin1"), "only latin-1"),
                        ((codecs.decode, b"x", "latin1"), "refusing .* _codecs.decode")):
    payload = pickle.dumps({b"data": _Codec(*call), b"labels": [0]}, protocol=2)
    _replace(batch, payload)
    with pytest.raises(ValueError, match=message) as info:
      data.load_dataset("cifar10", str(folder))
    assert batch in str(info.value)


def test_cifar100_fine_labels(tmp_path):
  rng = _rng(3)
  folder = tmp_path / "cifar-100-python"
  os.makedirs(folder)
  splits = {}
  for name, n in (("train", 5), ("test", 3)):
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    fine = rng.integers(0, 100, size=n).tolist()
    _pickle(folder / name, {b"data": _cifar_rows(images), b"fine_labels": fine,
                            b"coarse_labels": [f // 5 for f in fine]})
    splits[name] = (images, fine)
  _pickle(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                            b"coarse_label_names": [b"x"] * 20})
  ds = data.load_dataset("cifar100", str(tmp_path))
  np.testing.assert_array_equal(ds.x_train, _scaled(splits["train"][0]))
  np.testing.assert_array_equal(ds.y_test, splits["test"][1])
  assert ds.num_classes == 100 and ds.class_names[42] == "c42"


class _Evil:

  def __reduce__(self):
    return (os.system, ("echo pwned",))


def test_cifar_errors_name_the_file(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  _write_cifar10(folder)
  batch = str(folder / "data_batch_2")
  original = (folder / "data_batch_2").read_bytes()
  for payload, message in ((b"garbage", "Corrupt or unreadable pickle"),
                           (original[:100], "Corrupt or unreadable pickle"),
                           (pickle.dumps(_Evil()), "refusing to load global"),
                           (pickle.dumps([1, 2]), "expected a dict"),
                           (pickle.dumps({b"data": np.zeros((2, 10), np.uint8),
                                          b"labels": [0, 1]}), r"\(n, 3072\)"),
                           (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                          b"labels": [0]}), "2 images but 1 labels"),
                           (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                          b"labels": [0, 10]}), r"outside \[0, 10\)")):
    _replace(batch, payload)
    with pytest.raises(ValueError, match=message) as info:
      data.load_dataset("cifar10", str(folder))
    assert batch in str(info.value)
  _replace(batch, original)
  os.remove(folder / "test_batch")
  with pytest.raises(FileNotFoundError, match="test_batch"):
    data.load_dataset("cifar10", str(folder))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.load_dataset("cifar10", str(tmp_path / "nowhere"))
  not_tar = tmp_path / "cifar-10-python.tar.gz"
  _replace(not_tar, b"not a tarball")
  with pytest.raises(ValueError, match="not a readable tar archive"):
    data.load_dataset("cifar10", str(not_tar))


# ---------------------------------------------------------------- image folders


def _write_tree(root, mode="RGB", size=(5, 4), per_class=(3, 2), classes=("cat", "dog")):
  from PIL import Image

  rng = _rng(4)
  channels = 3 if mode == "RGB" else 1
  expected = {"train": ([], []), "test": ([], [])}
  for split, count in zip(("train", "test"), per_class):
    for label, cls in enumerate(classes):
      os.makedirs(os.path.join(root, split, cls), exist_ok=True)
      for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
        image = Image.fromarray(pixels if channels == 3 else pixels[..., 0], mode=mode)
        image.save(os.path.join(root, split, cls, f"img{i:02d}.png"))
        expected[split][0].append(pixels)
        expected[split][1].append(label)
  return {s: (np.stack(x), np.array(y)) for s, (x, y) in expected.items()}


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_folder_tree_roundtrip(tmp_path, mode):
  expected = _write_tree(tmp_path / "tree", mode=mode)
  (tmp_path / "tree" / "train" / ".DS_Store").write_bytes(b"junk")  # ignored
  ds = data.load_dataset("folder", str(tmp_path / "tree"))
  assert ds.class_names == ("cat", "dog")
  assert ds.image_shape == (4, 5, 3 if mode == "RGB" else 1)
  np.testing.assert_array_equal(ds.x_train, _scaled(expected["train"][0]))
  np.testing.assert_array_equal(ds.y_train, expected["train"][1])
  np.testing.assert_array_equal(ds.x_test, _scaled(expected["test"][0]))
  np.testing.assert_array_equal(ds.y_test, expected["test"][1])


def test_folder_zip_roundtrip(tmp_path):
  _write_tree(tmp_path / "tree")
  direct = data.load_dataset("folder", str(tmp_path / "tree"))
  for top in ("", "mydata/"):
    archive = tmp_path / f"tree{len(top)}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
      for dirpath, _, files in os.walk(tmp_path / "tree"):
        for f in files:
          full = os.path.join(dirpath, f)
          zf.write(full, top + os.path.relpath(full, tmp_path / "tree"))
      zf.writestr("__MACOSX/train/cat/._img00.png", b"resource fork")
    zipped = data.load_dataset("folder", str(archive))
    assert zipped.fingerprint() == direct.fingerprint()
    np.testing.assert_array_equal(zipped.x_test, direct.x_test)
    assert zipped.class_names == direct.class_names


def test_mixed_grey_and_colour_become_rgb(tmp_path):
  from PIL import Image

  expected = _write_tree(tmp_path, mode="RGB")
  grey = np.full((4, 5), 77, np.uint8)
  Image.fromarray(grey, mode="L").save(tmp_path / "test" / "dog" / "zz.png")
  ds = data.load_dataset("folder", str(tmp_path))
  assert ds.image_shape == (4, 5, 3) and ds.num_test == 5
  np.testing.assert_array_equal(ds.x_test[-1], _scaled(np.full((4, 5, 3), 77.0)))
  np.testing.assert_array_equal(ds.x_train, _scaled(expected["train"][0]))


def test_folder_errors_name_the_file(tmp_path):
  from PIL import Image

  _write_tree(tmp_path)
  odd = tmp_path / "train" / "dog" / "odd.png"
  Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(odd)
  with pytest.raises(ValueError, match="all images must have one size") as info:
    data.load_dataset("folder", str(tmp_path))
  assert str(odd) in str(info.value)
  os.remove(odd)
  bad = tmp_path / "test" / "cat" / "broken.png"
  bad.write_bytes(b"this is not a png")
  with pytest.raises(ValueError, match="Cannot read image") as info:
    data.load_dataset("folder", str(tmp_path))
  assert str(bad) in str(info.value)
  os.remove(bad)
  os.makedirs(tmp_path / "test" / "bird")
  with pytest.raises(ValueError, match=r"\['bird'\]"):
    data.load_dataset("folder", str(tmp_path))
  os.rmdir(tmp_path / "test" / "bird")
  data.load_dataset("folder", str(tmp_path))  # valid again
  with pytest.raises(FileNotFoundError, match="test"):
    data.load_dataset("folder", str(tmp_path / "train"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.load_dataset("folder", str(tmp_path / "nowhere.zip"))
  not_zip = tmp_path / "x.zip"
  not_zip.write_bytes(b"PK but not really")
  with pytest.raises(ValueError, match="not a folder or a readable zip"):
    data.load_dataset("folder", str(not_zip))
  no_tree = tmp_path / "flat.zip"
  with zipfile.ZipFile(no_tree, "w") as zf:
    zf.writestr("a.png", b"x")
  with pytest.raises(ValueError, match="no train/<class>/<image> trees"):
    data.load_dataset("folder", str(no_tree))


def _assert_same(a, b):
  for field in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert getattr(a, field).dtype == getattr(b, field).dtype
  assert (a.class_names, a.source, a.name) == (b.class_names, b.source, b.name)


def _no_decoding(monkeypatch):
  """Makes decoding an image fail: a load that succeeds afterwards read the cache."""
  def fail(raw, where):
    raise AssertionError(f"decoded {where} instead of reading the cache")
  monkeypatch.setattr(data, "_decode_image", fail)


def test_folder_cache_reused_invalidated_and_rewritten(tmp_path, monkeypatch, _cache_dir):
  from PIL import Image

  root = tmp_path / "tree"
  _write_tree(root, size=(4, 4))
  tree_files = sorted(p for p in root.rglob("*"))
  first = data.load_dataset("folder", str(root))
  cache = data.folder_cache_path(str(root))
  assert os.path.dirname(cache) == str(_cache_dir) and os.path.isfile(cache)
  assert sorted(p for p in root.rglob("*")) == tree_files  # the data folder is not written
  with monkeypatch.context() as m:
    _no_decoding(m)
    _assert_same(data.load_dataset("folder", str(root)), first)

  # A changed image (new pixels, new mtime) is decoded again and the cache replaced.
  changed = root / "test" / "dog" / "img01.png"
  pixels = np.full((4, 4, 3), 9, np.uint8)
  Image.fromarray(pixels).save(changed)
  stat = os.stat(changed)
  os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
  second = data.load_dataset("folder", str(root))
  np.testing.assert_array_equal(second.x_test[-1], _scaled(pixels))
  np.testing.assert_array_equal(second.x_train, first.x_train)
  with monkeypatch.context() as m:
    _no_decoding(m)
    _assert_same(data.load_dataset("folder", str(root)), second)

  # So is an added image, and an added (empty) class folder.
  Image.fromarray(pixels).save(root / "train" / "cat" / "img99.png")
  assert data.load_dataset("folder", str(root)).num_train == first.num_train + 1
  os.makedirs(root / "train" / "emu")
  assert data.load_dataset("folder", str(root)).class_names == ("cat", "dog", "emu")
  os.rmdir(root / "train" / "emu")
  os.remove(root / "train" / "cat" / "img99.png")

  # A corrupt or truncated cache is ignored and rewritten.
  for damage in (b"garbage", open(cache, "rb").read()[:200]):
    with open(cache, "wb") as f:
      f.write(damage)
    _assert_same(data.load_dataset("folder", str(root)), second)
    with monkeypatch.context() as m:
      _no_decoding(m)
      _assert_same(data.load_dataset("folder", str(root)), second)


def test_folder_cache_of_a_zip(tmp_path, monkeypatch):
  _write_tree(tmp_path / "tree")
  archive = tmp_path / "tree.zip"

  def write_zip(skip=()):
    with zipfile.ZipFile(archive, "w") as zf:
      for path in sorted((tmp_path / "tree").rglob("*.png")):
        if path.name not in skip:
          zf.write(path, path.relative_to(tmp_path / "tree").as_posix())

  write_zip()
  first = data.load_dataset("folder", str(archive))
  with monkeypatch.context() as m:
    _no_decoding(m)
    _assert_same(data.load_dataset("folder", str(archive)), first)
  write_zip(skip=("img00.png",))
  stat = os.stat(archive)
  os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
  assert data.load_dataset("folder", str(archive)).num_train == first.num_train - 2


def test_folder_cache_location(tmp_path, monkeypatch):
  monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "mine"))
  path = data.folder_cache_path(str(tmp_path / "my data"))
  assert path.startswith(str(tmp_path / "mine" / "folder-my_data-")) and path.endswith(".npz")
  assert data.folder_cache_path(str(tmp_path / "other" / "my data")) != path
  monkeypatch.delenv(data.CACHE_DIR_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert data.folder_cache_path("d").startswith(str(tmp_path / "xdg" / "kernelcond" / "folder-d-"))
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert data.folder_cache_path("d").startswith(str(tmp_path / "home" / ".cache" / "kernelcond"))


def test_folder_unwritable_cache_warns_and_loads(tmp_path, monkeypatch):
  _write_tree(tmp_path / "tree")
  not_a_dir = tmp_path / "file"
  not_a_dir.write_bytes(b"")
  monkeypatch.setenv(data.CACHE_DIR_ENV, str(not_a_dir))
  with pytest.warns(UserWarning, match="Could not write the image cache"):
    ds = data.load_dataset("folder", str(tmp_path / "tree"))
  assert ds.num_train == 6


# ---------------------------------------------------------------- npz


def test_npz_uint8_and_float(tmp_path):
  rng = _rng(5)
  x_tr = rng.integers(0, 256, size=(7, 3, 4), dtype=np.uint8)
  x_te = rng.integers(0, 256, size=(2, 3, 4), dtype=np.uint8)
  path = tmp_path / "a.npz"
  np.savez(path, x_train=x_tr, y_train=np.array([0, 1, 2, 0, 1, 2, 0]),
           x_test=x_te, y_test=np.array([[1], [2]]))
  ds = data.load_dataset("npz", str(path))
  np.testing.assert_array_equal(ds.x_train[..., 0], _scaled(x_tr))
  np.testing.assert_array_equal(ds.y_test, [1, 2])
  assert ds.class_names == ("0", "1", "2") and ds.source == f"npz:{path}"
  f_tr = rng.uniform(size=(4, 2, 2, 3)).astype(np.float32)
  np.savez(path, x_train=f_tr, y_train=np.arange(4), x_test=f_tr[:1], y_test=np.array([3]),
           class_names=np.array(["a", "b", "c", "d", "e"]))
  ds = data.load_dataset("npz", str(path))
  np.testing.assert_array_equal(ds.x_train, f_tr)
  assert ds.num_classes == 5 and ds.class_names[4] == "e"


def test_npz_errors(tmp_path):
  path = tmp_path / "b.npz"
  good = dict(x_train=np.zeros((3, 2, 2), np.uint8), y_train=np.array([0, 1, 1]),
              x_test=np.zeros((1, 2, 2), np.uint8), y_test=np.array([0]))

  def expect(message, **changes):
    np.savez(path, **{**good, **changes})
    with pytest.raises(ValueError, match=message) as info:
      data.load_dataset("npz", str(path))
    assert str(path) in str(info.value)

  nan = np.zeros((3, 2, 2), np.float32)
  nan[1, 0, 1] = np.nan
  expect("non-finite", x_train=nan)
  expect(r"must lie in \[0, 1\]", x_train=np.full((3, 2, 2), 255.0))
  expect("3 images .* but 2 labels", y_train=np.array([0, 1]))
  expect(r"outside \[0, 2\)", y_test=np.array([-1]))
  expect(r"outside \[0, 2\)", class_names=np.array(["a", "b"]), y_train=np.array([0, 1, 2]))
  expect("integers", y_train=np.array([0.5, 1.0, 1.0]))
  expect("uint8 or float", x_train=np.zeros((3, 2, 2), np.int64))
  np.savez(path, x_train=good["x_train"], y_train=good["y_train"])
  with pytest.raises(ValueError, match=r"lacks \['x_test', 'y_test'\]"):
    data.load_dataset("npz", str(path))
  path.write_bytes(b"garbage")
  with pytest.raises(ValueError, match="Corrupt or unreadable .npz"):
    data.load_dataset("npz", str(path))
  with pytest.raises(FileNotFoundError, match="x_train"):
    data.load_dataset("npz", str(tmp_path / "missing.npz"))


# ---------------------------------------------------------------- SVHN


def test_svhn_mat_roundtrip_and_errors(tmp_path):
  import scipy.io

  rng = _rng(6)
  out = {}
  for split, n in (("train", 5), ("test", 3)):
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = np.array([10, 1, 9, 10, 3][:n], np.uint8)[:, None]
    scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    out[split] = (x, y)
  ds = data.load_dataset("svhn", str(tmp_path))
  assert ds.x_train.shape == (5, 32, 32, 3)
  assert ds.x_train[2, 4, 7, 1] == _scaled(out["train"][0][4, 7, 1, 2])
  np.testing.assert_array_equal(ds.y_train, [0, 1, 9, 0, 3])
  np.testing.assert_array_equal(ds.y_test, [0, 1, 9])
  bad = tmp_path / "test_32x32.mat"
  bad.write_bytes(b"MATLAB 5.0 MAT-file, but truncated")
  with pytest.raises(ValueError, match="test_32x32.mat"):
    data.load_dataset("svhn", str(tmp_path))
  os.remove(bad)
  with pytest.raises(FileNotFoundError, match="test_32x32.mat"):
    data.load_dataset("svhn", str(tmp_path))


# ---------------------------------------------------------------- registry / Dataset


def test_registry_errors():
  names = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "folder", "npz",
           "csv", "two_moons")
  assert data.DATASETS.names() == names
  with pytest.raises(ValueError, match=f"Unknown dataset 'imagenet'; valid: {', '.join(names)} "
                     r"\(or source='tfds'"):
    data.load_dataset("imagenet")
  assert data.DATASETS.get("npz") is data.load_npz_dataset
  with pytest.raises(ValueError, match="valid sources"):
    data.load_dataset("digits", source="web")
  with pytest.raises(ValueError, match="tfds_name"):
    data.load_dataset("digits", tfds_name="mnist")
  with pytest.raises(ValueError, match="embedded"):
    data.load_dataset("digits", "/tmp")
  assert data.load_dataset("Digits", "").num_test == 450  # '' means no data_dir


def test_dataset_is_frozen_and_validated():
  ds = data.load_dataset("digits")
  with pytest.raises(dataclasses.FrozenInstanceError):
    ds.name = "other"
  assert "train=1347" in repr(ds) and len(repr(ds)) < 200
  other = dataclasses.replace(ds, y_train=(ds.y_train + 1) % 10)
  assert other.fingerprint() != ds.fingerprint()
  with pytest.raises(ValueError, match="y_train"):
    dataclasses.replace(ds, y_train=ds.y_train[:-1])
  with pytest.raises(ValueError, match="class names"):
    dataclasses.replace(ds, class_names=("a",))
  with pytest.raises(ValueError, match="differ in shape"):
    dataclasses.replace(ds, x_test=ds.x_test[:, :4])


# ---------------------------------------------------------------- TFDS


def test_tfds_mock_mnist():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=5):
    ds = data.load_dataset("mnist", source="tfds")
  assert ds.x_train.shape == (5, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)
  assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
  assert ds.class_names == tuple(str(i) for i in range(10)) and ds.source == "tfds:mnist"
  assert ds.y_train.dtype == np.int32 and ds.y_train.max() < 10
