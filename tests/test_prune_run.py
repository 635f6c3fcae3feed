"""A pruning run in-process: strategies, proxy, kernel scores, dynamic, correlations."""

import os

import numpy as np
import pytest

from kernelcond import data as kdata
from kernelcond import io
from kernelcond import preprocess
from kernelcond.nets import train
from kernelcond.prune import experiment
from kernelcond.prune import scores
from kernelcond.prune import select


@pytest.fixture(scope="module")
def dataset():
  full = preprocess.prepare(kdata.load_dataset("digits"))
  return kdata.Dataset("digits", full.x_train[:300], full.y_train[:300], full.x_test[:200],
                       full.y_test[:200], full.num_classes, full.class_names, full.source)


TRAIN = train.TrainConfig(model="convnet", model_kwargs={"width": 4, "depth": 1}, epochs=2,
                          batch_size=50, lr=0.05)


def test_run_with_strategies_proxy_kernel_scores_and_dynamic(tmp_path, dataset):
  config = experiment.PruneConfig(
      train=TRAIN, methods=("random", "el2n", "krr_loo", "dynamic"), fractions=(1.0, 0.2),
      seeds=(0,), strategy=("hardest", "ccs"), score_epochs=1, score_inits=1,
      proxy_model="mlp", proxy_model_kwargs="widths=8", kernel_reg=1e-3)
  workdir = str(tmp_path / "run")
  results = experiment.run(config, dataset, workdir)
  cells = results["results"]
  assert set(cells) == {"full", "random", "el2n@proxy", "el2n-ccs@proxy", "krr_loo",
                        "krr_loo-ccs", "dynamic"}
  # The proxy is named in the results and computed the scores.
  assert results["proxy"] == {"model": "mlp", "model_kwargs": "widths=8", "epochs": 1}
  assert results["scores"]["el2n"]["scorer"]["model"] == "mlp"
  el2n, _ = scores.load_scores(os.path.join(workdir, "scores", "scores_el2n.npz"))
  proxy_config = train.TrainConfig(model="mlp", model_kwargs={"widths": (8,)}, epochs=2,
                                   batch_size=50, lr=0.05)
  np.testing.assert_allclose(el2n, scores.compute_scores(
      "el2n", dataset.x_train, dataset.y_train, proxy_config, 1, 1, 100,
      num_classes=10), rtol=1e-5)
  # Steps budget for every pruned cell, CCS keeps its class shares.
  for name, by_fraction in cells.items():
    assert by_fraction[next(iter(by_fraction))]["steps"] == results["full_steps"]
  assert cells["el2n-ccs@proxy"]["0.2"]["n_kept"] == cells["dynamic"]["0.2"]["n_kept"] == 60
  assert cells["dynamic"]["0.2"]["refreshes"] == 1  # 2 epochs, redrawn after each but the last
  assert 0.2 < cells["dynamic"]["0.2"]["ever_active"][0] <= 0.4
  # Correlations of the two scores: a table in results.json and a PNG.
  corr = results["score_correlations"]
  assert corr["methods"] == ["el2n", "krr_loo"] and corr["spearman"][0][0] == 1.0
  assert -1 < corr["spearman"][0][1] < 1
  assert os.path.getsize(os.path.join(workdir, "score_correlations.png")) > 1000
  assert experiment.finished(config, workdir) is not None
  # Another strategy may be added to a finished workdir; another beta may not.
  assert experiment.finished(experiment.PruneConfig(**{**config.__dict__, "strategy": (
      "easiest",)}), workdir) is None
  with pytest.raises(ValueError, match="another configuration"):
    experiment.run(experiment.PruneConfig(**{**config.__dict__, "ccs_beta": 0.1}), dataset,
                   workdir)


def test_a_workdir_in_use_is_refused_before_anything_is_written(tmp_path, dataset):
  config = experiment.PruneConfig(train=TRAIN, methods=("random",), fractions=(0.5,),
                                  seeds=(0,))
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with io.exclusive_workdir(workdir):  # as another process resuming it would hold it
    with pytest.raises(ValueError, match="in use by another running process"):
      experiment.run(config, dataset, workdir)
  assert os.listdir(workdir) == []


def test_ccs_cell_selects_what_the_selector_selects(dataset):
  config = experiment.PruneConfig(train=TRAIN, methods=("el2n",), strategy=("ccs",))
  values = np.random.default_rng(0).random(dataset.num_train)
  got = experiment.select_subset(config, "el2n", "ccs", 0.2, 3, dataset.y_train,
                                 {"el2n": values}, None)
  np.testing.assert_array_equal(got, select.coverage_centric(values, dataset.y_train, 0.2, 3,
                                                             select.ccs_beta(0.2)))


def test_config_checks_and_old_records_still_resume():
  with pytest.raises(ValueError, match="--strategy"):
    experiment.PruneConfig(train=TRAIN, strategy=("hard",))
  with pytest.raises(ValueError, match="--kernel"):
    experiment.PruneConfig(train=TRAIN, methods=("krr_loo",), kernel="fc9x")
  with pytest.raises(ValueError, match="--scores_dir"):
    experiment.PruneConfig(train=TRAIN, proxy_model="mlp", scores_dir="/tmp")
  with pytest.raises(ValueError, match="needs --score_epochs"):
    experiment.PruneConfig(train=TRAIN, methods=("forgetting",), proxy_epochs=0)
  record = experiment.PruneConfig(train=TRAIN).record()
  # Settings added later appear only when set, so earlier workdirs still match.
  assert not {"ccs_beta", "proxy_model", "kernel", "dynamic_every"} & set(record)
  assert experiment.PruneConfig(train=TRAIN, ccs_beta=0.1).record()["ccs_beta"] == 0.1


def test_kernel_scores_above_the_exact_limit_run_through_nystrom(tmp_path, dataset, monkeypatch):
  # Above the exact limit krr_el2n solves each half in Nystrom feature space; with every
  # example a landmark that is the exact kernel, so the run's scores are the exact ones.
  config = experiment.PruneConfig(train=TRAIN, methods=("krr_el2n",), fractions=(0.5,),
                                  seeds=(0,), score_inits=1, kernel_reg=1e-2)
  exact = scores.compute_scores("krr_el2n", dataset.x_train, dataset.y_train, TRAIN,
                                num_inits=1, seed=config.score_seed, num_classes=10,
                                kernel_reg=1e-2)
  monkeypatch.setattr(scores.loo, "EXACT_AUTO_MAX_N", 100)
  monkeypatch.setattr(scores, "NYSTROM_LANDMARKS", dataset.num_train)
  results = experiment.run(config, dataset, str(tmp_path / "w"))
  assert results["results"]["krr_el2n"]["0.5"]["n_kept"] == 150
  got, _ = scores.load_scores(str(tmp_path / "w" / "scores" / "scores_krr_el2n.npz"))
  np.testing.assert_allclose(got, exact, rtol=2e-2, atol=2e-3)


def test_val_size_holds_examples_out_of_scoring_selection_and_training(tmp_path, dataset):
  config = experiment.PruneConfig(train=TRAIN, methods=("random", "el2n"), fractions=(1.0, 0.5),
                                  seeds=(0,), strategy=("ccs",), score_epochs=1, score_inits=1,
                                  val_size=50)
  results = experiment.run(config, dataset, str(tmp_path / "run"))
  assert results["n_train"] == 250 and results["n_val"] == 50
  keep, val = kdata.stratified_split(dataset.y_train, 50, seed=0)
  cells = results["results"]
  assert cells["full"]["1"]["n_kept"] == 250 and cells["random"]["0.5"]["n_kept"] == 125
  el2n, _ = scores.load_scores(str(tmp_path / "run" / "scores" / "scores_el2n.npz"))
  assert el2n.shape == (250,)  # scored on the kept pool only
  for cell in (cells["full"]["1"], cells["random"]["0.5"], cells["el2n-ccs"]["0.5"]):
    assert len(cell["val_accuracy"]) == 1 and 0.0 <= cell["val_accuracy"][0] <= 1.0
  # The held-out accuracy is the full cell's network on exactly those 50 examples: retrain it.
  rest, x_val, y_val = experiment.hold_out(dataset, 50)
  np.testing.assert_array_equal(rest.y_train, dataset.y_train[keep])
  np.testing.assert_array_equal(y_val, dataset.y_train[val])
  state, _ = train.train_and_evaluate(
      experiment.dataclasses.replace(TRAIN, steps=results["full_steps"], seed=0), rest.x_train,
      rest.y_train, num_classes=10)
  assert train.evaluate(state, x_val, y_val)["accuracy"] == pytest.approx(
      cells["full"]["1"]["val_accuracy"][0], abs=1e-6)
  with pytest.raises(ValueError, match="--val_size=300 leaves no training examples"):
    experiment.run(experiment.PruneConfig(train=TRAIN, methods=("random",), val_size=300),
                   dataset, str(tmp_path / "bad"))
  assert not (tmp_path / "bad").exists()
