"""experiments/krr_baseline.py end to end on digits: outputs, resume, bad input."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, "experiments",
                                      "krr_baseline.py"))


def _run(*args, cwd=None):
  env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, SCRIPT, "--dataset=digits", *args],
                        capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


def test_results_resume_and_bad_ipc(tmp_path):
  from test_hardening import run_main  # one process for the four runs
  workdir = str(tmp_path / "run")
  bad = str(tmp_path / "bad")
  args = ["--dataset=digits", "--ipc=1,5", "--seeds=0,1", f"--workdir={workdir}"]
  outs, _ = run_main(SCRIPT, [args, {"snapshot": workdir}, args, {"snapshot": workdir},
                              args + ["--reg=0.1"], ["--dataset=digits", "--ipc=1000",
                                                     f"--workdir={bad}"]])
  out, before, again, after, other, too_many = outs
  assert out["code"] == 0, out["stderr"][-2000:]
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

  assert again["code"] == 0 and after == before  # nothing rewritten
  assert again["stdout"].startswith("already finished") and "ipc5/seed1 : KRR" in again["stdout"]
  assert json.load(open(os.path.join(workdir, "results.json")))["evaluations"] == evaluations

  assert other["code"] == 1 and "another configuration" in other["stderr"]
  assert too_many["code"] == 1
  assert "Traceback" not in too_many["stderr"] and "class" in too_many["stderr"]
  assert not os.path.exists(bad)


def test_bad_values_fail_in_one_line_before_writing(tmp_path):
  from test_hardening import one_error_line, run_main  # one process for every case
  afile = tmp_path / "afile"
  afile.write_text("")
  cases = {"--reg=-1": "--reg", "--reg=inf": "--reg", "--ipc=ten": "--ipc", "--ipc=0": "--ipc",
           "--cg_tol=0": "--cg_tol", "--solver=qr": "--solver",
           f"--workdir={afile}": "--workdir"}
  argvs = [["--dataset=digits", arg] if arg.startswith("--workdir")
           else ["--dataset=digits", arg, f"--workdir={tmp_path / 'w'}"] for arg in cases]
  outs, _ = run_main(SCRIPT, argvs)
  for (arg, flag), out in zip(cases.items(), outs):
    line = one_error_line(out, flag)
    assert "Traceback" not in out["stderr"], (arg, line)
  assert not os.path.exists(tmp_path / "w")


def test_whole_training_set_by_cg_in_the_default_workdir(tmp_path):
  from kernelcond import data as kdata
  from kernelcond import kernels
  from kernelcond import krr
  from kernelcond import preprocess

  out = _run("--ipc=all", "--solver=cg", "--cg_rank=200", "--cg_tol=1e-6", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  results = json.load(open(tmp_path / "runs" / "krr_baseline" / "results.json"))
  (name, cell), = results["evaluations"].items()
  assert name == "all" and cell["support_size"] == 1347 and cell["subset"]["all"]
  cg = cell["krr"]["cg"]
  assert cell["krr"]["solver"] == "cg" and cg["converged"] and cg["preconditioner"] == "nystrom"
  assert results["config"]["solver"]["rank"] == 200
  # The same fit by Cholesky of the whole kernel.
  data = preprocess.prepare(kdata.load_dataset("digits", None, "local"), standardize=True)
  expected = krr.evaluate(kernels.make_kernel_fn("fc3", cell["krr"]["backend"]), data.x_train,
                          preprocess.one_hot(data.y_train, 10), data.x_test, data.y_test)
  assert abs(cell["krr"]["accuracy"] - expected["accuracy"]) <= 1 / len(data.y_test)
  again = _run("--ipc=all", "--solver=cg", "--cg_rank=200", "--cg_tol=1e-6", cwd=tmp_path)
  assert again.returncode == 0 and again.stdout.startswith("already finished")
  assert "all : KRR" in again.stdout
