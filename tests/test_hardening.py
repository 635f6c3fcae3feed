"""Hostile and unlucky inputs of the entrypoints: one line each, nothing written, nothing lost.

The entrypoints' `main`s run in-process in ONE subprocess per script (`run_main`:
the script is imported once, then `app.run(main, argv)` runs each case with
absl's real flag parsing and the script's own error wrapper, capturing what the
user sees and the exit status), so many cases cost one start-up. Each class of
issue 17 has a test here; the library-level ones call functions.
"""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, "experiments")
DISTILL = os.path.join(EXPERIMENTS, "distill.py")
EVALUATE = os.path.join(EXPERIMENTS, "evaluate.py")
TUNE = os.path.join(EXPERIMENTS, "tune_kip.py")
LS = ["--dataset=digits", "--method=ls", "--ipc=1", "--kernel=fc2", "--kernel_backend=native",
      "--protocols="]

_DRIVER = r"""
import contextlib, io, json, os, runpy, sys, traceback
from absl import app, flags
script, cases = sys.argv[1], json.loads(sys.argv[2])
mains = []
app_run, app.run = app.run, lambda main, **kw: mains.append((main, kw))
sys.argv = [script]
module = runpy.run_path(script, run_name="__main__")
app.run = app_run
sys.modules["__main__"].__doc__ = module["__doc__"]  # --help shows the script's text
main, run_kw = mains[0]


def snapshot(root):
  files = {}
  for d, _, names in os.walk(root):
    for n in names:
      st = os.stat(os.path.join(d, n))
      files[os.path.relpath(os.path.join(d, n), root)] = [st.st_mtime_ns, st.st_size]
  return files


out = []
for case in cases:
  if isinstance(case, dict):  # {"snapshot": dir} or {"read_only": dir}
    if "read_only" in case:
      for d, _, names in os.walk(case["read_only"]):
        for n in names:
          os.chmod(os.path.join(d, n), 0o444)
        os.chmod(d, 0o555)
    out.append(snapshot(case["snapshot"]) if "snapshot" in case else None)
    continue
  flags.FLAGS.unparse_flags()
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    try:
      app_run(main, argv=[script, *case], **run_kw)
      code = 0
    except SystemExit as e:
      code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    except BaseException:
      traceback.print_exc()
      code = "traceback"
  out.append({"argv": case, "code": code, "stdout": stdout.getvalue(),
              "stderr": stderr.getvalue()})
print("\n@@RESULTS@@" + json.dumps(out))
"""


def run_main(script, cases, cwd=ROOT, timeout=300):
  """Runs `script`'s main on each argv list of `cases` in one subprocess.

  A case may also be `{"snapshot": dir}` (returns `{path: [mtime_ns, size]}` of
  the files under dir) or `{"read_only": dir}` (chmods dir's tree read-only).

  Returns:
    `(outputs, stderr)`: one `{'code', 'stdout', 'stderr'}` (or snapshot) per
    case, and the process's own stderr (log lines).
  """
  proc = subprocess.run([sys.executable, "-c", _DRIVER, script, json.dumps(cases)],
                        capture_output=True, text=True, cwd=cwd, timeout=timeout)
  if "@@RESULTS@@" not in proc.stdout:
    raise AssertionError(f"driver of {script} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.split("@@RESULTS@@")[-1]), proc.stderr


def one_error_line(result, *fragments):
  """The case failed with exit status 1 and exactly one stderr line holding `fragments`."""
  lines = [line for line in result["stderr"].splitlines() if line.strip()]
  assert result["code"] == 1, result
  assert len(lines) == 1 and lines[0].startswith("error: "), result["stderr"]
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  return lines[0]


# ----------------------------------------------------------------------------
# distill.py and evaluate.py, each in one process


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("inputs")
  rng = np.random.default_rng(0)
  (d / "a_file").write_text("not a directory")
  np.savez(d / "huge_support.npz", images=np.full((10, 8, 8, 1), 1e30, np.float32),
           labels=np.arange(10))
  x = rng.random((40, 4, 4, 1)).astype(np.float32)
  np.savez(d / "huge_data.npz", x_train=x * 1e30, y_train=np.arange(40) % 2, x_test=x[:8],
           y_test=np.arange(8) % 2)
  x_nan = x.copy()
  x_nan[3, 1, 1, 0] = np.nan
  np.savez(d / "nan_data.npz", x_train=x_nan, y_train=np.arange(40) % 2, x_test=x[:8],
           y_test=np.arange(8) % 2)
  return d


_BAD_DISTILL = {  # flags -> what the one error line must say
    ("--lr=inf",): ["--lr=inf", "must be a finite number"],
    ("--ipc=ten",): ["--ipc=ten", "invalid literal for int()"],
    ("--seed=-1",): ["seed must be >= 0"],
    ("--protocols=mlp", "--net_epochs=-1"): ["net_epochs must be >= 0"],
    ("--protocols=nope",): ["Unknown evaluation protocol 'nope'"],
    ("--kernel_backend=bogus",): ["bogus", "valid"],
    ("--ipc=500",): ["fewer than per_class=500"],
    ("--kernel=fc9",): ["Unknown kernel spec 'fc9'"],
    ("--target_batch=10",): ["--target_batch does not apply to ls"],
    ("--init_npz={d}/huge_support.npz",): ["huge_support.npz: images reach 1e+30"],
    ("--dataset=npz", "--data_dir={d}/huge_data.npz", "--nostandardize"):
        ["huge_data.npz", "float images must lie in [0, 1]"],
    ("--dataset=npz", "--data_dir={d}/nan_data.npz"): ["NaN"],
}


@pytest.fixture(scope="module")
def distill_runs(files, tmp_path_factory):
  """distill.py: --help, bad inputs, a Label Solve run, then the same command twice more."""
  out = tmp_path_factory.mktemp("distill")
  bad = [[*LS, *(f.format(d=files) for f in flags), f"--workdir={out / f'bad{i}'}"]
         for i, flags in enumerate(_BAD_DISTILL)]
  workdir = str(out / "ls")
  run = [*LS, f"--workdir={workdir}"]
  cases = [["--help"], [*LS, f"--workdir={files / 'a_file'}"], *bad, run,
           {"snapshot": workdir}, run, {"read_only": workdir}, run, {"snapshot": workdir}]
  outputs, stderr = run_main(DISTILL, cases)
  return {"help": outputs[0], "file": outputs[1], "bad": outputs[2:2 + len(bad)],
          "first": outputs[-6], "before": outputs[-5], "again": outputs[-4],
          "read_only": outputs[-2], "after": outputs[-1], "out": out, "workdir": workdir,
          "log": stderr}


@pytest.fixture(scope="module")
def evaluate_runs(files, distill_runs, tmp_path_factory):
  out = tmp_path_factory.mktemp("evaluate")
  support = os.path.join(distill_runs["workdir"], "distilled.npz")
  common = ["--kernel=fc2", "--kernel_backend=native", "--protocols="]
  run = [f"--support={support}", *common, f"--workdir={out / 'ev'}"]
  cases = [["--help"],
           [f"--support={files / 'huge_support.npz'}", "--dataset=digits", *common,
            f"--workdir={out / 'bad0'}"],
           [f"--support={support}", *common, f"--workdir={files / 'a_file'}"],
           [f"--support={support}", *common[:2], "--protocols=nope", f"--workdir={out / 'bad1'}"],
           [f"--support={support}", "--kernel_backend=bogus", f"--workdir={out / 'bad2'}"],
           run, {"snapshot": str(out / "ev")}, run, {"snapshot": str(out / "ev")}]
  outputs, _ = run_main(EVALUATE, cases)
  return {"help": outputs[0], "huge": outputs[1], "file": outputs[2], "bad": outputs[3:5],
          "first": outputs[5], "before": outputs[6], "again": outputs[7], "after": outputs[8],
          "out": out}


def test_errors_outside_the_wrapper_are_one_line(distill_runs, evaluate_runs):
  """Class 1: a --workdir that is a file, huge support values, a read-only workdir."""
  one_error_line(distill_runs["file"], "--workdir=", "a_file is an existing file")
  one_error_line(evaluate_runs["file"], "--workdir=", "a_file is an existing file")
  one_error_line(evaluate_runs["huge"], "huge_support.npz: images reach 1e+30")
  # A finished run in a read-only workdir re-runs without writing (checked by mtimes below).
  assert distill_runs["read_only"]["code"] == 0, distill_runs["read_only"]["stderr"]
  assert "already finished" in distill_runs["read_only"]["stdout"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_unfinished_run_in_a_read_only_workdir_is_refused(tmp_path):
  from kernelcond import io
  workdir = tmp_path / "ro"
  workdir.mkdir()
  workdir.chmod(0o555)
  with pytest.raises(ValueError, match="is not writable"):
    io.check_workdir(str(workdir), "--workdir")


def test_label_solve_on_huge_inputs_names_the_cause():
  """Class 1: Label Solve on finite but huge inputs stops on the inf kernel, saying why."""
  from kernelcond import kernels
  from kernelcond.condense import label_solve
  x = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32) * 1e30
  y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
  with pytest.raises(ValueError, match="support kernel is not finite.*e\\+30"):
    label_solve.label_solve(kernels.make_kernel_fn("fc2", "native"), x[:3], x, y)


def test_nothing_is_written_before_validation_passes(distill_runs, evaluate_runs):
  """Class 2 (and 5: flag values name the flag): every bad input is one line, no workdir."""
  for flags_given, result in zip(_BAD_DISTILL, distill_runs["bad"]):
    one_error_line(result, *_BAD_DISTILL[flags_given])
  assert not [p for p in os.listdir(distill_runs["out"]) if p.startswith("bad")]
  one_error_line(evaluate_runs["bad"][0], "Unknown evaluation protocol 'nope'")
  one_error_line(evaluate_runs["bad"][1], "bogus")
  assert not [p for p in os.listdir(evaluate_runs["out"]) if p.startswith("bad")]


def test_a_config_that_failed_before_any_output_gives_way(tmp_path):
  """Class 2: a run that wrote only config.json (it failed at once) does not lock its workdir."""
  from kernelcond import io
  workdir = str(tmp_path / "run")
  io.check_run_config(workdir, {"lr": 1e30})
  io.check_run_config(workdir, {"lr": 0.01})  # the corrected command
  assert io.load_json(os.path.join(workdir, "config.json")) == {"lr": 0.01}
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write('{"step": 1}\n')
  with pytest.raises(ValueError, match="another configuration.*lr: 0.01 -> 0.02"):
    io.check_run_config(workdir, {"lr": 0.02})


def test_a_run_resumed_on_another_stack_is_noted(tmp_path, monkeypatch, caplog):
  """Class 3: results.json notes every stack, and one warning line says what changed."""
  from kernelcond import data, evaluate, experiment, io, preprocess
  from kernelcond.condense import label_solve
  config = experiment.DistillConfig(
      method="ls", method_config=label_solve.LabelSolveConfig(kernel="fc2",
                                                               kernel_backend="native"),
      ipc=1, evaluation=evaluate.EvalConfig(kernel="fc2", kernel_backend="native",
                                            protocols=()), data={"dataset": "digits"})
  workdir = str(tmp_path / "run")
  current = io.versions()
  old = {**current, "jax": "0.3.25", "numpy": "1.21.6"}  # neither venv's
  with monkeypatch.context() as m:  # the first session, on the pinned stack, stopped early
    m.setattr(io, "versions", lambda: old)
    io.check_run_config(workdir, config.to_dict())
    io.record_stack(workdir)
  digits = preprocess.prepare(data.load_dataset("digits"))
  with caplog.at_level(logging.WARNING):
    results = experiment.distill(config, digits, workdir)
  assert results["environment"]["stacks"] == [old, current]
  assert io.load_json(os.path.join(workdir, "stacks.json")) == [old, current]
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and f"jax 0.3.25 -> {current['jax']}" in warnings[0]


def test_one_stack_gets_no_note(distill_runs):
  from kernelcond import io
  results = io.load_json(os.path.join(distill_runs["workdir"], "results.json"))
  assert "stacks" not in results["environment"]
  assert io.load_json(os.path.join(distill_runs["workdir"], "stacks.json")) == [io.versions()]


_KILLED_WRITE = """
import os, sys
from kernelcond import io
for path in sys.argv[1:]:
  tmp = io.atomic_path(path).__enter__()
  with open(tmp, "w") as f:
    f.write("half")
os._exit(9)  # killed mid-write: no rename, no clean-up
"""


def test_temp_files_of_killed_writes_are_cleaned_on_the_next_run(tmp_path):
  """Class 4: the next run in the workdir removes what a killed writer left."""
  from kernelcond import io
  workdir = tmp_path / "run"
  targets = [workdir / "results.json", workdir / "checkpoints" / "ckpt_000000004.npz"]
  subprocess.run([sys.executable, "-c", _KILLED_WRITE, *map(str, targets)], cwd=ROOT,
                 check=False, timeout=60)
  left = sorted(str(p) for p in workdir.rglob(".tmp-*"))
  assert len(left) == 2 and not any(t.exists() for t in targets)
  live = io.atomic_path(str(workdir / "metrics.jsonl"))  # a write in progress (this process)
  live_tmp = live.__enter__()
  io.check_run_config(str(workdir), {"lr": 0.1})
  assert sorted(str(p) for p in workdir.rglob(".tmp-*")) == [live_tmp]
  live.__exit__(None, None, None)
  assert not list(workdir.rglob(".tmp-*"))


def test_finished_commands_are_not_recomputed(distill_runs, evaluate_runs):
  """Class 6: a re-run says 'already finished', prints the stored results, writes nothing."""
  for runs in (distill_runs, evaluate_runs):
    assert runs["first"]["code"] == 0, runs["first"]["stderr"]
    assert "already finished" not in runs["first"]["stdout"]
    again = runs["again"]
    assert again["code"] == 0 and again["stdout"].startswith("already finished: ")
    assert "KRR" in again["stdout"]
    # The stored numbers, not new ones, and not one file touched (mtimes and sizes).
    first_line = [l for l in runs["first"]["stdout"].splitlines() if "KRR" in l]
    assert first_line == [l for l in again["stdout"].splitlines() if "KRR" in l]
    assert runs["before"] == runs["after"] and runs["before"]
  assert "metrics.jsonl" in distill_runs["after"]


def test_start_up_lines_about_absent_backends_are_silenced(distill_runs):
  """Class 7: no 'Unable to initialize backend' INFO lines; JAX warnings still pass."""
  assert "Unable to initialize backend" not in distill_runs["log"]
  sys.path.insert(0, EXPERIMENTS)
  try:
    import _common
  finally:
    sys.path.remove(EXPERIMENTS)
  probe = logging.getLogger("jax._src.xla_bridge")
  _common.quiet_backend_probes()
  assert not probe.isEnabledFor(logging.INFO) and probe.isEnabledFor(logging.WARNING)


@pytest.mark.parametrize("script,expected", [
    ("sweep.py", ["--sweep", "--root", "--dataset", "--ipc", "--steps", "--only", "--dry_run"]),
    ("report.py", ["--roots", "--out", "--sections", "--protocol_roots"]),
])
def test_help_shows_the_main_flags_of_light_scripts(script, expected):
  """Class 8 (scripts that start without JAX): a real `--help`."""
  proc = subprocess.run([sys.executable, os.path.join(EXPERIMENTS, script), "--help"],
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
  for flag in expected:
    assert flag in proc.stdout, (script, flag)


def test_help_shows_the_main_flags(distill_runs, evaluate_runs):
  """Class 8: the main flags of distill.py and evaluate.py are in `--help`."""
  text = distill_runs["help"]["stdout"]
  for flag in ("--dataset", "--zca", "--method", "--ipc", "--lr", "--target_batch", "--ridge",
               "--protocols", "--net_seeds", "--workdir", "--steps", "--kernel"):
    assert f"  {flag}" in text, flag
  assert "kip: 0.04" in text and "Condense a dataset" in text
  text = evaluate_runs["help"]["stdout"]
  for flag in ("--support", "--dataset", "--kernel", "--protocols", "--net_seeds", "--workdir"):
    assert f"  {flag}" in text, flag


def test_tune_kip_validates_before_its_first_run(tmp_path):
  """Classes 2, 5 and 8 for tune_kip.py: bad values are one line and nothing is written."""
  common = ["--dataset=digits", "--ipc=1", "--kernel=fc2", "--kernel_backend=native"]
  out = tmp_path / "tune.jsonl"
  (tmp_path / "a_dir.jsonl").mkdir()
  cases = [["--help"],
           [*common, f"--out={tmp_path / 'a_dir.jsonl'}"],
           [*common, "--eval_points=0", f"--out={out}"],
           [*common, "--protocols=mlp", "--net_seeds=a", f"--out={out}"],
           [*common, "--protocols=nope", f"--out={out}"],
           [*common, "--lr=nan", f"--out={out}"]]
  outputs, _ = run_main(TUNE, cases)
  for flag in ("--grid", "--out", "--val_size", "--select_by", "--lr", "--target_batch"):
    assert f"  {flag}" in outputs[0]["stdout"], flag
  one_error_line(outputs[1], "a_dir.jsonl is a directory")
  one_error_line(outputs[2], "--eval_points must be >= 1")
  one_error_line(outputs[3], "--net_seeds must be integers")
  one_error_line(outputs[4], "Unknown evaluation protocol 'nope'")
  one_error_line(outputs[5], "--lr=nan", "must be a finite number")
  assert sorted(os.listdir(tmp_path)) == ["a_dir.jsonl"]
