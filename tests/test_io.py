"""Atomic io: round trips, corrupt files, checkpoints, config guards."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kernelcond import io


def test_json_and_npz_round_trip(tmp_path):
  path = str(tmp_path / "r.json")
  io.save_json(path, {"a": np.float32(1.5), "b": jnp.arange(3), "c": (1, 2)})
  assert io.load_json(path) == {"a": 1.5, "b": [0, 1, 2], "c": [1, 2]}
  npz = str(tmp_path / "a.npz")
  io.save_npz(npz, x=np.ones((2, 3)), config={"k": 1})
  out = io.load_npz(npz)
  np.testing.assert_array_equal(out["x"], np.ones((2, 3)))
  assert str(out["config"]) == '{"k": 1}'
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_corrupt_and_missing_files_are_named(tmp_path):
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="bad.npz"):
    io.load_npz(str(bad))
  with pytest.raises(FileNotFoundError, match="missing.json"):
    io.load_json(str(tmp_path / "missing.json"))
  (tmp_path / "bad.json").write_text("{")
  with pytest.raises(ValueError, match="bad.json"):
    io.load_json(str(tmp_path / "bad.json"))


def test_checkpoint_round_trip_keeps_latest(tmp_path):
  params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
  opt = optax.adam(1e-2)
  state = (params, opt.init(params))
  d = str(tmp_path / "ckpt")
  assert io.restore_checkpoint(d, state) == (state, 0)
  for step in (1, 2, 3):
    new_params = {"w": params["w"] * step, "b": params["b"] + step}
    io.save_checkpoint(d, step, (new_params, opt.init(new_params)), keep=2)
  assert io.checkpoint_steps(d) == [2, 3]
  restored, step = io.restore_checkpoint(d, state)
  assert step == 3
  np.testing.assert_array_equal(restored[0]["w"], 3 * np.ones((2, 2)))
  np.testing.assert_array_equal(restored[0]["b"], 3 * np.ones(2))
  assert type(restored[1][0]) is type(state[1][0])  # optax state types survive
  with pytest.raises(ValueError, match="shape"):
    io.restore_checkpoint(d, ({"w": jnp.ones((3, 3)), "b": jnp.zeros(2)}, state[1]))


def test_check_run_config_refuses_other_config(tmp_path):
  d = str(tmp_path / "run")
  io.check_run_config(d, {"lr": 0.1, "steps": 10})
  io.check_run_config(d, {"lr": 0.1, "steps": 10})  # same config: resume
  io.check_run_config(d, {"lr": 0.1, "steps": 10, "log_every": 5}, ignore=("log_every",))
  io.save_json(os.path.join(d, "results.json"), {"accuracy": 0.5})  # the run's first output
  with pytest.raises(ValueError, match="lr: 0.1 -> 0.2"):
    io.check_run_config(d, {"lr": 0.2, "steps": 10})


def test_exclusive_workdir_refuses_a_second_holder_until_the_first_ends(tmp_path):
  workdir = str(tmp_path)
  with io.exclusive_workdir(workdir):
    with pytest.raises(ValueError, match=f"--workdir={workdir} is in use by another"):
      with io.exclusive_workdir(workdir):
        pass
  with io.exclusive_workdir(workdir):  # released at the end of the block
    pass
  assert os.listdir(workdir) == []  # the lock writes nothing
  # Another process: refused while it holds the directory, free once it is killed.
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from kernelcond import io\n"
       "with io.exclusive_workdir(sys.argv[1]):\n print('held', flush=True); time.sleep(60)",
       workdir], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ValueError, match="in use by another running process"):
      with io.exclusive_workdir(workdir, "--out"):
        pass
  finally:
    holder.kill()
    holder.wait()
  with io.exclusive_workdir(workdir):
    pass


def test_finished_results_match_the_whole_config(tmp_path):
  d = str(tmp_path / "run")
  assert io.finished_results(d, {"lr": 0.1}) is None  # no workdir
  io.save_json(os.path.join(d, "results.json"), {"config": {"lr": 0.1, "every": 5}, "acc": 1})
  assert io.finished_results(d, {"lr": 0.1, "every": 5})["acc"] == 1
  assert io.finished_results(d, {"lr": 0.1, "every": 9}, ignore=("every",))["acc"] == 1
  assert io.finished_results(d, {"lr": 0.2, "every": 5}) is None
  with open(os.path.join(d, "results.json"), "w") as f:
    f.write('{"config": {"lr"')  # unreadable: not finished
  assert io.finished_results(d, {"lr": 0.1, "every": 5}) is None


def test_fingerprint_depends_on_content():
  a = np.arange(6).reshape(2, 3)
  assert io.fingerprint(a) == io.fingerprint(a.copy())
  assert io.fingerprint(a) != io.fingerprint(a + 1)
  assert io.fingerprint(a) != io.fingerprint(a.reshape(3, 2))
