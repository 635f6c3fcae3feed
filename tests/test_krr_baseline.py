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
  assert results["schema"] == 2 and results["experiment"] == "krr_baseline"
  evaluations = results["evaluations"]
  assert sorted(evaluations) == ["ipc1/seed0", "ipc1/seed1", "ipc5/seed0", "ipc5/seed1"]
  mean = {}
  for name, ev in evaluations.items():
    ipc, seed = ev["subset"]["ipc"], ev["subset"]["seed"]
    assert name == f"ipc{ipc}/seed{seed}" and ev["support_size"] == 10 * ipc
    assert ev["label_kind"] == "hard" and ev["networks"] == {}
    assert ev["krr"]["kernel"] == "fc3" and 0.1 < ev["krr"]["accuracy"] <= 1.0
    mean.setdefault(ipc, []).append(ev["krr"]["accuracy"])
  # More data per class helps a KRR classifier on digits.
  assert np.mean(mean[5]) > np.mean(mean[1])
  assert results["environment"]["versions"]["jax"]
  assert results["config"]["kernel_backend"] in ("nt", "native")
  assert results["run"]["wall_time_s"] > 0 and results["dataset"]["name"] == "digits"

  again = _run("--ipc=1,5", "--seeds=0,1", f"--workdir={workdir}")
  assert again.returncode == 0
  assert "already done" in again.stderr
  assert json.load(open(os.path.join(workdir, "results.json")))["evaluations"] == evaluations

  other = _run("--ipc=1,5", "--seeds=0,1", "--reg=0.1", f"--workdir={workdir}")
  assert other.returncode != 0 and "another configuration" in other.stderr

  bad = str(tmp_path / "bad")
  too_many = _run("--ipc=1000", f"--workdir={bad}")
  assert too_many.returncode != 0
  assert "Traceback" not in too_many.stderr and "class" in too_many.stderr
  assert not os.path.exists(bad)
