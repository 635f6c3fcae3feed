"""Tabular sources (CSV files, two moons) and the vector methods on them."""

import jax
import numpy as np
import pytest

from kernelcond import condense
from kernelcond import data
from kernelcond import kernels
from kernelcond import preprocess


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_csv_with_header_named_label_column_and_string_classes(tmp_path):
  rng = np.random.default_rng(0)
  rows = ["height,class,weight"]
  feats = rng.normal([170.0, 60.0], [10.0, 5.0], size=(50, 2))
  names = np.array(["cat", "ant", "bee"])[np.arange(50) % 3]
  rows += [f"{a:.3f},{s},{b:.3f}" for (a, b), s in zip(feats, names)]
  ds = data.load_dataset("csv", _write(tmp_path / "t.csv", "\n".join(rows) + "\n"))
  assert ds.class_names == ("ant", "bee", "cat") and ds.num_classes == 3
  assert ds.num_train == 40 and ds.num_test == 10 and ds.image_shape == (1, 2, 1)
  x_tr = ds.x_train.reshape(-1, 2)
  np.testing.assert_allclose(x_tr.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(x_tr.std(0), 1.0, atol=1e-5)
  # Standardised with the training statistics: the test rows map back to the file's values.
  train, test = data.stratified_split(np.searchsorted(["ant", "bee", "cat"], names), 10, 0)
  mean, std = feats[train].mean(0), feats[train].std(0)
  np.testing.assert_allclose(ds.x_test.reshape(-1, 2), (feats[test] - mean) / std, atol=1e-3)
  np.testing.assert_array_equal(ds.y_test, np.searchsorted(["ant", "bee", "cat"], names[test]))


def test_csv_without_header_uses_the_last_column_and_a_folder_split(tmp_path):
  folder = tmp_path / "tab"
  folder.mkdir()
  _write(folder / "train.csv", "0.5,1.0,1\n0.1,2.0,0\n0.3,0.0,1\n0.9,1.0,0\n")
  _write(folder / "test.csv", "0.2,1.5,0\n0.7,0.5,1\n")
  ds = data.load_dataset("csv", str(folder))
  assert ds.class_names == ("0", "1") and ds.num_train == 4 and ds.num_test == 2
  np.testing.assert_array_equal(ds.y_train, [1, 0, 1, 0])
  with pytest.raises(ValueError, match="not numeric"):
    data.load_dataset("csv", _write(tmp_path / "bad.csv", "a,b,label\n1,x,0\n2,3,1\n"))
  with pytest.raises(FileNotFoundError, match="No such CSV"):
    data.load_dataset("csv", str(tmp_path / "missing.csv"))
  with pytest.raises(ValueError, match="needs data_dir"):
    data.load_dataset("csv")


def test_two_moons_is_fixed_and_every_vector_method_runs_on_it():
  ds = data.load_dataset("two_moons")
  again = data.load_dataset("two_moons")
  assert ds.fingerprint() == again.fingerprint() and ds.image_shape == (1, 2, 1)
  assert (ds.num_train, ds.num_test) == (1000, 500)
  assert np.bincount(ds.y_test).tolist() == [250, 250]
  ds = preprocess.prepare(ds)
  y = preprocess.one_hot(ds.y_train, 2, center=True)
  train = condense.Data.create(ds.x_train, y, ds.y_train)
  x0, y0, _ = condense.initial_support(ds.x_train, y, ds.y_train, 3, 0)
  settings = {"kip": dict(kernel="fc2", kernel_backend="native", target_batch=64),
              "ls": dict(kernel="fc2", kernel_backend="native"),
              "dm": dict(net="mlp", width=16, depth=1, batch_real=32, dsa_strategy="none"),
              "dd": dict(width=16, depth=1, inner_steps=2, n_inits=2, target_batch=64)}
  for name, overrides in settings.items():
    method = condense.METHODS.get(name)
    condenser = method.make(method.config(**overrides))
    state = condenser.init(jax.random.PRNGKey(0), train, x0, y0)
    update = jax.jit(condenser.update) if condenser.jittable else condenser.update
    state, metrics = update(state, condenser.sample_batch(jax.random.PRNGKey(1), train),
                            jax.random.PRNGKey(2))
    assert all(np.isfinite(float(v)) for v in metrics.values()), name
    x_s, y_s = condense.support(state)
    assert x_s.shape == (6, 1, 2, 1) and np.all(np.isfinite(x_s)) and np.all(np.isfinite(y_s))
    assert name == "ls" or np.abs(x_s - x0).max() > 0, name
  # The fc2 kernel reads the (n, 1, 2, 1) rows as 2-vectors: KRR on the support set
  # equals KRR on the flattened points.
  kernel_fn = kernels.make_kernel_fn("fc2", "native")
  k4 = kernel_fn(ds.x_test[:5], x0, "ntk")
  k2 = kernel_fn(ds.x_test[:5].reshape(5, 1, 1, 2), x0.reshape(6, 1, 1, 2), "ntk")
  np.testing.assert_allclose(np.asarray(k4), np.asarray(k2), rtol=1e-5)
