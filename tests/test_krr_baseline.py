"""experiments/krr_baseline.py end to end on digits: outputs, resume, bad input."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "krr_baseline.py")


def _run(*args):
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, SCRIPT, "--dataset=digits", *args],
                        capture_output=True, text=True, env=env, timeout=300)


def test_results_resume_and_bad_ipc(tmp_path):
  workdir = str(tmp_path / "run")
  out = _run("--ipc=1,5", "--seeds=0,1", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr[-2000:]
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert set(results["results"]) == {"1", "5"}
  for cell in results["results"].values():
    assert cell["seeds"] == [0, 1] and len(cell["test_accuracy"]) == 2
    assert cell["test_accuracy_mean"] == np.mean(cell["test_accuracy"])
    assert 0.1 < cell["test_accuracy_mean"] <= 1.0
  # More data per class helps a KRR classifier on digits.
  assert results["results"]["5"]["test_accuracy_mean"] > results["results"]["1"]["test_accuracy_mean"]
  assert results["versions"]["jax"] and results["config"]["kernel_backend"] in ("nt", "native")

  again = _run("--ipc=1,5", "--seeds=0,1", f"--workdir={workdir}")
  assert again.returncode == 0
  assert "already done" in again.stderr
  assert json.load(open(os.path.join(workdir, "results.json")))["results"] == results["results"]

  other = _run("--ipc=1,5", "--seeds=0,1", "--reg=0.1", f"--workdir={workdir}")
  assert other.returncode != 0 and "another configuration" in other.stderr

  bad = str(tmp_path / "bad")
  too_many = _run("--ipc=1000", f"--workdir={bad}")
  assert too_many.returncode != 0
  assert "Traceback" not in too_many.stderr and "class" in too_many.stderr
  assert not os.path.exists(bad)
