"""Smoke tests of experiments/distill.py and experiments/evaluate.py on digits.

Each run is a subprocess (the scripts own their absl flags) with a few steps, the
native kernel backend and the 4 fake CPU devices of conftest.py.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, "experiments", "distill.py")
EVALUATE = os.path.join(ROOT, "experiments", "evaluate.py")
FAST = ["--dataset=digits", "--ipc=2", "--kernel=fc2", "--kernel_backend=native",
        "--target_batch=200", "--protocols="]
LS_FAST = ["--dataset=digits", "--ipc=2", "--kernel=fc2", "--kernel_backend=native"]


_ENV = dict(os.environ)


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
  """Share compiled programs between the subprocesses (used by JAX versions that cache on CPU)."""
  _ENV.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def _run(script, *args, check=True):
  proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=300, env=_ENV)
  if check and proc.returncode != 0:
    raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return proc


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def _metric_steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f if line.strip()]


def _config(**kw):
  from kernelcond import evaluate
  from kernelcond import experiment
  from kernelcond.condense import kip
  method_kw = {k: kw.pop(k) for k in list(kw) if k in ("steps", "lr_schedule", "lr")}
  method_config = kip.KipConfig(kernel="fc2", kernel_backend="native", target_batch=200,
                                learn_labels=kw.pop("learn_labels", True),
                                **{"lr_schedule": "constant", **method_kw})
  evaluation = evaluate.EvalConfig(kernel="fc2", kernel_backend="native",
                                   protocols=kw.pop("protocols", ()), net_epochs=1)
  return experiment.DistillConfig(method="kip", method_config=method_config, ipc=2,
                                  evaluation=evaluation, data={"dataset": "digits"}, **kw)


@pytest.fixture(scope="module")
def digits():
  from kernelcond import data, preprocess
  return preprocess.prepare(data.load_dataset("digits"))


@pytest.fixture(scope="module")
def kip_run(tmp_path_factory, digits):
  from kernelcond import experiment
  workdir = str(tmp_path_factory.mktemp("kip"))
  results = experiment.distill(_config(steps=4, checkpoint_every=2, eval_every=2), digits,
                               workdir)
  return workdir, results


def test_kip_outputs(kip_run):
  workdir, results = kip_run
  assert results["dataset"] == _results(workdir)["dataset"]
  for key in ("schema", "experiment", "config", "dataset", "evaluations", "run", "environment"):
    assert key in results, key
  assert results["run"]["steps"] == 4 and results["evaluations"]["distilled"]["support_size"] == 20
  for name in ("natural", "distilled"):
    assert 0.0 <= results["evaluations"][name]["krr"]["accuracy"] <= 1.0
  assert results["evaluations"]["natural"]["label_kind"] == "hard"
  assert results["evaluations"]["distilled"]["label_kind"] == "soft"
  with np.load(os.path.join(workdir, "distilled.npz")) as f:
    assert f["images"].shape == (20, 8, 8, 1) and f["labels"].shape == (20, 10)
    assert json.loads(str(f["config"]))["method"] == "kip"
  with open(os.path.join(workdir, "distilled.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert _metric_steps(workdir) == [1, 2, 3, 4]


def test_resume_continues_from_checkpoint(kip_run, digits):
  from kernelcond import experiment
  workdir, _ = kip_run
  # A run killed after step 4 but before its checkpoint: the latest checkpoint is
  # step 2 and metrics.jsonl holds lines past it. Re-running with a longer budget
  # (a constant schedule may be extended) continues from step 2 and rewrites the log.
  os.remove(os.path.join(workdir, "checkpoints", "ckpt_000000004.npz"))
  results = experiment.distill(_config(steps=6, checkpoint_every=2, eval_every=2), digits,
                               workdir)
  assert results["run"]["resumed_from_step"] == 2 and results["run"]["steps"] == 6
  assert _metric_steps(workdir) == [1, 2, 3, 4, 5, 6]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [
      "ckpt_000000004.npz", "ckpt_000000006.npz"]


def test_another_config_is_refused(kip_run, digits):
  from kernelcond import experiment
  workdir, _ = kip_run
  with pytest.raises(ValueError, match="another configuration.*ipc: 2 -> 3"):
    experiment.distill(dataclasses.replace(_config(steps=4), ipc=3), digits, workdir)


def test_cosine_run_keeps_its_step_budget(tmp_path, digits):
  from kernelcond import experiment
  # The cosine schedule decays over its steps, so a longer budget is another run.
  workdir = str(tmp_path / "cos")
  experiment.distill(_config(steps=2, lr_schedule="cosine"), digits, workdir)
  with pytest.raises(ValueError, match="steps: 2 -> 3"):
    experiment.distill(_config(steps=3, lr_schedule="cosine"), digits, workdir)
  assert _metric_steps(workdir) == [1, 2]


def test_validation_split_is_held_out(tmp_path, digits):
  from kernelcond import experiment
  results = experiment.distill(_config(steps=2, val_size=200, eval_every=1), digits,
                               str(tmp_path / "val"))
  assert 0.0 <= results["run"]["last_val"]["val_accuracy"] <= 1.0
  assert results["run"]["natural_val_accuracy"] is not None


def test_help_shows_every_flag():
  proc = _run(DISTILL, "--help", check=False)  # absl exits 1 after --help
  for flag in ("--dataset", "--zca", "--method", "--ipc", "--lr", "--target_batch",
               "--protocols", "--net_seeds", "--ridge", "--workdir"):
    assert flag in proc.stdout, flag
  assert "kip: 0.04" in proc.stdout or "0.04" in proc.stdout


def test_bad_inputs_fail_cleanly_and_leave_nothing(tmp_path):
  workdir = str(tmp_path / "bad")
  proc = _run(DISTILL, "--dataset=digits", "--ipc=500", "--kernel_backend=native",
              f"--workdir={workdir}", check=False)
  assert proc.returncode == 1 and "fewer than per_class=500" in proc.stderr
  assert "Traceback" not in proc.stderr and not os.path.exists(workdir)
  proc = _run(DISTILL, "--dataset=digits", "--kernel=fc9", f"--workdir={workdir}",
              check=False)
  assert proc.returncode == 1 and "Unknown kernel spec 'fc9'" in proc.stderr
  proc = _run(DISTILL, "--dataset=digits", "--method=ls", "--target_batch=10",
              f"--workdir={workdir}", check=False)
  assert proc.returncode == 1 and "--target_batch does not apply to ls" in proc.stderr
  # NaN pixels in a dataset file.
  bad = str(tmp_path / "nan.npz")
  x = np.random.default_rng(0).random((20, 4, 4, 1)).astype(np.float32)
  x[3, 1, 1, 0] = np.nan
  np.savez(bad, x_train=x, y_train=np.arange(20) % 2, x_test=x[:4], y_test=np.arange(4) % 2)
  proc = _run(DISTILL, "--dataset=npz", f"--data_dir={bad}", "--ipc=1",
              "--kernel_backend=native", f"--workdir={workdir}", check=False)
  assert proc.returncode == 1 and "NaN" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.path.exists(workdir)


def test_label_solve_with_mlp_transfer(tmp_path):
  workdir = str(tmp_path / "ls")
  proc = _run(DISTILL, *LS_FAST, "--method=ls", "--protocols=mlp", "--net_epochs=1",
              "--net_seeds=0", f"--workdir={workdir}")
  results = _results(workdir)
  assert results["config"]["method"] == "ls"
  for name in ("natural", "distilled"):
    network = results["evaluations"][name]["networks"]["mlp"]
    assert len(network["accuracies"]) == 1 and 0.0 <= network["mean"] <= 1.0
  assert "natural" in proc.stdout and "distilled" in proc.stdout
  with np.load(os.path.join(workdir, "distilled.npz")) as f:
    assert f["labels"].shape == (20, 10)
  assert os.path.exists(os.path.join(workdir, "distilled.png"))


def test_sigterm_saves_a_checkpoint(tmp_path):
  workdir = str(tmp_path / "term")
  args = [sys.executable, DISTILL, *FAST, "--steps=100000", "--checkpoint_every=100000",
          "--eval_every=100000", f"--workdir={workdir}"]
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=_ENV)
  log = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 120
  while time.time() < deadline and not (os.path.exists(log) and os.path.getsize(log) > 200):
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 130, err[-2000:]
  assert "re-run the same command to resume" in err
  ckpts = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  saved = int(ckpts[-1][5:14])
  assert saved >= 1 and saved >= _metric_steps(workdir)[-1]


def test_evaluate_smoke(kip_run, tmp_path):
  workdir, _ = kip_run
  support = os.path.join(workdir, "distilled.npz")
  out = str(tmp_path / "eval")
  proc = _run(EVALUATE, f"--support={support}", "--kernel=fc2", "--kernel_backend=native",
              "--protocol=mlp", "--net_epochs=1", "--net_seeds=0", f"--workdir={out}")
  result = _results(out)["evaluations"]["support"]
  assert 0.0 <= result["krr"]["accuracy"] <= 1.0 and result["support_size"] == 20
  assert len(result["networks"]["mlp"]["accuracies"]) == 1 and "KRR" in proc.stdout
  # Other settings in the same workdir, or a distill workdir, are refused.
  proc = _run(EVALUATE, f"--support={support}", "--kernel=fc3", "--kernel_backend=native",
              "--protocols=", f"--workdir={out}", check=False)
  assert proc.returncode == 1 and "another configuration" in proc.stderr
  proc = _run(EVALUATE, f"--support={support}", "--protocols=", f"--workdir={workdir}",
              check=False)
  assert proc.returncode == 1 and "experiment: 'distill' -> 'evaluate'" in proc.stderr
  # A support set made from digits is refused on another dataset.
  proc = _run(EVALUATE, f"--support={support}", "--dataset=fashion_mnist", "--protocols=",
              f"--workdir={tmp_path / 'other'}", check=False)
  assert proc.returncode == 1 and "made from dataset 'digits'" in proc.stderr
  # A selected subset given as indices into the training set.
  idx_file = str(tmp_path / "subset.npz")
  np.savez(idx_file, indices=np.arange(0, 40, 2))
  _run(EVALUATE, f"--support={idx_file}", "--dataset=digits", "--kernel=fc2",
       "--kernel_backend=native", "--protocols=", f"--workdir={tmp_path / 'idx'}")
  result = _results(str(tmp_path / "idx"))["evaluations"]["support"]
  assert result["networks"] == {} and result["support_size"] == 20
  assert result["label_kind"] == "hard"


def test_tune_kip_selects_on_validation_and_resumes(tmp_path):
  tune = os.path.join(ROOT, "experiments", "tune_kip.py")
  out = str(tmp_path / "tune.jsonl")
  args = ["--dataset=digits", "--ipc=2", "--kernel=fc2", "--kernel_backend=native",
          "--steps=4", "--target_batch=100", "--val_size=200", "--eval_points=2",
          '--grid=[{"lr": 0.01}, {"lr": 0.05, "lr_schedule": "cosine"}]', f"--out={out}"]
  proc = _run(tune, *args)
  with open(out) as f:
    records = [json.loads(line) for line in f]
  assert [r["config"]["lr"] for r in records] == [0.01, 0.05]
  for r in records:
    assert [p["step"] for p in r["curve"]] == [2, 4]
    assert 0.0 <= r["val_accuracy"] <= 1.0 and 0.0 <= r["test_accuracy"] <= 1.0
  best = max(records, key=lambda r: r["val_accuracy"])
  assert f"val {best['val_accuracy']:.4f}" in proc.stdout
  # A re-run skips finished configurations; a bad grid key is named.
  _run(tune, *args)
  with open(out) as f:
    assert len(f.readlines()) == 2
  proc = _run(tune, *args[:-2], '--grid=[{"learning_rate": 1}]', f"--out={out}", check=False)
  assert proc.returncode == 1 and "learning_rate" in proc.stderr
  assert tune_summary_ok(out)


def tune_summary_ok(out):
  proc = _run(os.path.join(ROOT, "experiments", "tune_kip.py"), f"--summarize={out}")
  return "| settings" in proc.stdout and "digits, 2 images per class" in proc.stdout
