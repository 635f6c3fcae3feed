"""Smoke runs of experiments/score.py and experiments/prune.py on the embedded digits."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kernelcond.prune import scores

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=digits", "--model=mlp", "--model_kwargs=widths=16", "--batch_size=64"]


def _run(script, *args):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
  return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def score_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("score"))
  rc, out = _run("score.py", *TINY, "--method=el2n", "--epochs=1", "--num_inits=1",
                 f"--workdir={workdir}")
  assert rc == 0, out
  return workdir


def test_score_writes_scores_with_fingerprint(score_workdir):
  rc, out = _run("score.py", *TINY, "--method=el2n", "--epochs=1", "--num_inits=1",
                 f"--workdir={score_workdir}")
  assert rc == 0 and "already finished" in out, out
  from kernelcond import data as kdata
  from kernelcond import preprocess
  dataset = preprocess.prepare(kdata.load_dataset("digits"))
  values, meta = scores.load_scores(os.path.join(score_workdir, "scores_el2n.npz"),
                                    dataset.fingerprint(), "el2n")
  assert values.shape == (dataset.num_train,) and np.all(values >= 0)
  assert meta["config"]["epochs"] == 1
  assert os.path.exists(os.path.join(score_workdir, "config.json"))


def test_prune_runs_resumes_and_refuses_bad_input(tmp_path, score_workdir):
  workdir = str(tmp_path / "prune")
  args = [*TINY, "--methods=random,el2n", "--fractions=1.0,0.5", "--seeds=0", "--epochs=1",
          f"--scores_dir={score_workdir}", f"--workdir={workdir}"]
  rc, out = _run("prune.py", *args)
  assert rc == 0, out
  results = json.load(open(os.path.join(workdir, "results.json")))
  cells = results["results"]
  assert set(cells) == {"full", "random", "el2n"}
  for cell in (cells["full"]["1"], cells["random"]["0.5"], cells["el2n"]["0.5"]):
    assert cell["seeds"] == [0] and len(cell["test_accuracy"]) == 1
  assert cells["full"]["1"]["test_accuracy_mean"] > 0.5  # 10 classes: chance is 0.1
  # Steps budget: the half set trains as many steps as the full one.
  assert cells["el2n"]["0.5"]["steps"] == cells["full"]["1"]["steps"] == results["full_steps"]
  assert cells["el2n"]["0.5"]["n_kept"] == round(0.5 * results["n_train"])
  assert os.path.getsize(os.path.join(workdir, "accuracy_vs_fraction.png")) > 1000
  assert "el2n" in out and "random" in out  # the printed table

  rc, out = _run("prune.py", *args)  # re-run of a finished command: nothing recomputed
  assert rc == 0, out
  assert "already finished" in out and "el2n" in out
  assert json.load(open(os.path.join(workdir, "results.json")))["results"] == cells

  rc, out = _run("prune.py", *args[:-1], "--lr=0.2", f"--workdir={workdir}")
  assert rc != 0 and "another configuration" in out
  rc, out = _run("prune.py", *TINY, "--fractions=0.5,1.5", f"--workdir={tmp_path / 'b1'}")
  assert rc != 0 and "(0, 1]" in out
  rc, out = _run("prune.py", *TINY, "--methods=random,loss", f"--workdir={tmp_path / 'b2'}")
  assert rc != 0 and "Unknown method" in out


@pytest.mark.parametrize("script,flag,message", [
    ("prune.py", "--dataset=digitz", "Unknown dataset 'digitz'"),
    ("prune.py", "--strategy=hardest,cc", "--strategy"),
    ("prune.py", "--proxy_model=vgg", "--proxy_model"),
    ("score.py", "--dataset=digitz", "Unknown dataset 'digitz'"),
    ("score.py", "--kernel_reg=-1", "--kernel_reg"),
])
def test_bad_values_fail_in_one_line_before_anything_is_written(tmp_path, script, flag, message):
  workdir = tmp_path / "w"
  extra = ["--method=krr_loo"] if "kernel" in flag else []
  rc, out = _run(script, flag, *extra, f"--workdir={workdir}")
  assert rc == 1 and message in out, out
  assert out.strip().splitlines()[-1].startswith("error: ")
  assert not workdir.exists()


def test_prune_refuses_scores_of_another_dataset(tmp_path, score_workdir):
  rc, out = _run("prune.py", *TINY, "--methods=el2n", "--fractions=0.5", "--seeds=0",
                 "--epochs=1", "--nostandardize", f"--scores_dir={score_workdir}",
                 f"--workdir={tmp_path / 'other'}")
  assert rc != 0 and "fingerprint" in out
