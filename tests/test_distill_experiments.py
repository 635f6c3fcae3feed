"""experiments/distill.py, evaluate.py and tune_kip.py on digits, and the library runs under them.

Library runs (`experiment.distill`) are called in-process; a script's `main`
runs through `test_hardening.run_main` (its cases in ONE subprocess, absl's real
flag parsing), except the SIGTERM test, which needs a process of its own. Every
run is tiny: a few steps, the native kernel backend, the 4 fake CPU devices of
conftest.py. Accuracies are pinned against an independent recomputation or
against the natural subset the method started from (a margin that holds for
these seeds on both stacks).
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

from test_hardening import run_main

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
  accuracy = {k: v["krr"]["accuracy"] for k, v in results["evaluations"].items()}
  assert accuracy["distilled"] > accuracy["natural"] + 0.05, accuracy  # 0.75 -> 0.89 measured
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
  from kernelcond import evaluate, experiment, kernels, support
  config = _config(steps=2, val_size=200, eval_every=1)
  workdir = str(tmp_path / "val")
  results = experiment.distill(config, digits, workdir)
  # The running validation accuracy is KRR of the final set on the held-out examples.
  parts = experiment.split(config, digits)
  assert len(parts.x_val) == 200 and len(parts.x_train) == digits.num_train - 200
  x_s, y_s, _ = support.load_support(os.path.join(workdir, "distilled.npz"), digits)
  kernel_fn = kernels.make_kernel_fn("fc2", "native")
  expected = evaluate.krr_accuracy(kernel_fn, x_s, y_s, parts.x_val, parts.y_val, 1e-6)
  assert results["run"]["last_val"]["val_accuracy"] == pytest.approx(expected)
  assert results["run"]["last_val"]["val_accuracy"] > results["run"]["natural_val_accuracy"]


def test_label_solve_with_mlp_transfer(tmp_path):
  workdir = str(tmp_path / "ls")
  (result,), _ = run_main(DISTILL, [[*LS_FAST, "--method=ls", "--protocols=mlp",
                                     "--net_epochs=1", "--net_seeds=0", f"--workdir={workdir}"]])
  assert result["code"] == 0, result["stderr"]
  results = _results(workdir)
  assert results["config"]["method"] == "ls"
  krr = {k: results["evaluations"][k]["krr"]["accuracy"] for k in ("natural", "distilled")}
  assert krr["distilled"] > krr["natural"] + 0.05, krr
  for name in ("natural", "distilled"):
    assert len(results["evaluations"][name]["networks"]["mlp"]["accuracies"]) == 1
  gain = f"KRR gain over the natural subset: {krr['distilled'] - krr['natural']:+.4f}"
  assert gain in result["stdout"]
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


def test_evaluate_smoke(kip_run, digits, tmp_path):
  from kernelcond import evaluate, kernels, preprocess
  workdir, _ = kip_run
  kip_results = _results(workdir)  # an earlier test may have resumed the run further
  support = os.path.join(workdir, "distilled.npz")
  out = str(tmp_path / "eval")
  idx_file = str(tmp_path / "subset.npz")
  idx = np.arange(0, 40, 2)
  np.savez(idx_file, indices=idx)
  native = ["--kernel=fc2", "--kernel_backend=native"]
  outputs, _ = run_main(EVALUATE, [
      [f"--support={support}", *native, "--protocol=mlp", "--net_epochs=1", "--net_seeds=0",
       f"--workdir={out}"],
      # Other settings in the same workdir, or a distill workdir, are refused.
      [f"--support={support}", "--kernel=fc3", "--kernel_backend=native", "--protocols=",
       f"--workdir={out}"],
      [f"--support={support}", "--protocols=", f"--workdir={workdir}"],
      # A support set made from digits is refused on another dataset.
      [f"--support={support}", "--dataset=fashion_mnist", "--protocols=",
       f"--workdir={tmp_path / 'other'}"],
      # A selected subset given as indices into the training set.
      [f"--support={idx_file}", "--dataset=digits", *native, "--protocols=",
       f"--workdir={tmp_path / 'idx'}"]])
  assert outputs[0]["code"] == 0, outputs[0]["stderr"]
  result = _results(out)["evaluations"]["support"]
  # The same set, kernel and test set as the distill run's own evaluation: the same accuracy.
  assert result["krr"]["accuracy"] == pytest.approx(
      kip_results["evaluations"]["distilled"]["krr"]["accuracy"])
  assert result["support_size"] == 20 and result["label_kind"] == "soft"
  assert len(result["networks"]["mlp"]["accuracies"]) == 1 and "KRR" in outputs[0]["stdout"]
  assert outputs[1]["code"] == 1 and "another configuration" in outputs[1]["stderr"]
  assert outputs[2]["code"] == 1 and "experiment: 'distill' -> 'evaluate'" in outputs[2]["stderr"]
  assert outputs[3]["code"] == 1 and "made from dataset 'digits'" in outputs[3]["stderr"]
  assert not os.path.exists(tmp_path / "other")
  assert outputs[4]["code"] == 0, outputs[4]["stderr"]
  result = _results(str(tmp_path / "idx"))["evaluations"]["support"]
  assert result["networks"] == {} and result["support_size"] == 20
  assert result["label_kind"] == "hard"
  expected = evaluate.krr_accuracy(
      kernels.make_kernel_fn("fc2", "native"), digits.x_train[idx],
      preprocess.one_hot(digits.y_train[idx], 10, center=True), digits.x_test, digits.y_test)
  assert result["krr"]["accuracy"] == pytest.approx(expected)


def test_tune_kip_selects_on_validation_and_resumes(tmp_path, digits):
  from kernelcond import evaluate, experiment, kernels, support
  tune = os.path.join(ROOT, "experiments", "tune_kip.py")
  out = str(tmp_path / "tune.jsonl")
  args = ["--dataset=digits", "--ipc=2", "--kernel=fc2", "--kernel_backend=native",
          "--steps=2", "--target_batch=100", "--val_size=200", "--eval_points=2",
          '--grid=[{"lr": 0.01}, {"lr": 0.05, "lr_schedule": "cosine"}]', f"--out={out}"]
  (first, again, bad, summary), _ = run_main(tune, [
      args, args, [*args[:-2], '--grid=[{"learning_rate": 1}]', f"--out={out}"],
      [f"--summarize={out}"]])
  assert first["code"] == 0, first["stderr"]
  with open(out) as f:
    records = [json.loads(line) for line in f]
  assert [r["config"]["lr"] for r in records] == [0.01, 0.05]
  _, val_idx = experiment.split_validation(digits.y_train, 200)
  kernel_fn = kernels.make_kernel_fn("fc2", "native")
  for r in records:
    assert [p["step"] for p in r["curve"]] == [1, 2]
    # The recorded validation accuracy is KRR of the entry's final set on the held-out split.
    x_s, y_s, _ = support.load_support(os.path.join(r["workdir"], "distilled.npz"), digits)
    expected = evaluate.krr_accuracy(kernel_fn, x_s, y_s, digits.x_train[val_idx],
                                     digits.y_train[val_idx])
    assert r["val_accuracy"] == pytest.approx(expected)
  best = max(records, key=lambda r: r["val_accuracy"])
  assert f"val {best['val_accuracy']:.4f}" in first["stdout"]
  # A re-run skips finished configurations; a bad grid key is named.
  assert again["code"] == 0 and "[1/2]" not in again["stdout"]
  with open(out) as f:
    assert len(f.readlines()) == 2
  assert bad["code"] == 1 and "learning_rate" in bad["stderr"]
  assert "| settings" in summary["stdout"]
  assert "digits, 2 images per class" in summary["stdout"]
