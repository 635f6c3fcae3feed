"""experiments/sweep.py (cells, dry run, skip and resume) and experiments/report.py.

The sweep runs as a subprocess; its tiny real run uses digits, a 2-layer FC
kernel on the native backend and a few KIP steps. The report is checked on
fake sweep roots whose results.json files hold known numbers: the markdown must
show exactly those numbers (means and stds worked out by hand here).
"""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(ROOT, "experiments", "sweep.py")
REPORT = os.path.join(ROOT, "experiments", "report.py")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(script, *args):
  proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=300)
  return proc.returncode, proc.stdout, proc.stderr


def _dry_run(*args):
  """{cell name: (status, command)} from a --dry_run listing."""
  rc, out, err = _run(SWEEP, "--dry_run", *args)
  assert rc == 0, err
  cells, lines = {}, out.splitlines()
  for header, command in zip(lines, lines[1:]):
    m = re.fullmatch(r"# (\S+) \[(finished|pending)\]", header)
    if m:
      cells[m.group(1)] = (m.group(2), command)
  return cells, out


# ----------------------------------------------------------------------------
# sweep.py


def test_kip_dry_run_lists_every_cell(tmp_path):
  root = tmp_path / "sweep"
  cells, out = _dry_run("--sweep=kip", f"--root={root}", "--dataset=digits", "--seeds=0,1",
                        "--ipc=1,10", "--steps=7")
  expected = {f"{group}/ipc{ipc}/seed{seed}" for group in ("natural", "ls", "kip")
              for ipc in (1, 10) for seed in (0, 1)}
  assert set(cells) == expected
  assert list(cells)[:4] == [f"natural/ipc{i}/seed{s}" for i in (1, 10) for s in (0, 1)]
  for name, (status, command) in cells.items():
    group, ipc, seed = re.fullmatch(r"(\w+)/ipc(\d+)/seed(\d+)", name).groups()
    assert status == "pending"
    assert command.startswith(sys.executable)
    assert f"--workdir={root / name}" in command and "--dataset=digits" in command
    assert f"--ipc={ipc}" in command
    if group == "natural":
      assert "krr_baseline.py" in command and f"--seeds={seed}" in command
    else:
      assert "distill.py" in command and f"--method={group}" in command
      assert f"--seed={seed}" in command
      assert ("--steps=7" in command) == (group == "kip")
      assert "--protocols=mlp" in command and "--net_seeds=0" in command
      assert "--net_epochs=0" in command and "--transfer" not in command
  assert "12 cell(s), 0 finished, 12 to run" in out
  assert not root.exists()  # a dry run writes nothing


def test_prune_dry_run_lists_scores_then_cells(tmp_path):
  root = tmp_path / "sweep"
  cells, _ = _dry_run("--sweep=prune", f"--root={root}", "--dataset=digits",
                      "--methods=random,el2n,forgetting,kcenter", "--fractions=0.5,1.0,0.25",
                      "--seeds=3")
  assert list(cells) == ["scores/el2n", "scores/forgetting", "prune/full", "prune/random",
                         "prune/el2n", "prune/forgetting", "prune/kcenter"]
  assert "score.py" in cells["scores/el2n"][1] and "--method=el2n" in cells["scores/el2n"][1]
  full = cells["prune/full"][1]
  assert "prune.py" in full and "--fractions=1.0" in full and "--seeds=3" in full
  el2n = cells["prune/el2n"][1]
  assert "--methods=el2n" in el2n and "--fractions=0.5,0.25" in el2n
  assert f"--scores_dir={root / 'scores' / 'el2n'}" in el2n
  assert "--scores_dir" not in cells["prune/kcenter"][1]


def test_sweep_refuses_bad_flags(tmp_path):
  rc, _, err = _run(SWEEP, "--sweep=kip", f"--root={tmp_path}", "--methods=kip,nope",
                    "--dry_run")
  assert rc == 1 and "nope" in err and "valid" in err
  rc, _, err = _run(SWEEP, "--sweep=prune", f"--root={tmp_path}", "--fractions=0.5,1.5",
                    "--dry_run")
  assert rc == 1 and "--fractions" in err
  rc, _, err = _run(SWEEP, "--sweep=kip", f"--root={tmp_path}", "--only=zzz", "--dry_run")
  assert rc == 1 and "matches no cell" in err


TINY_KIP = ["--sweep=kip", "--dataset=digits", "--seeds=0", "--ipc=1", "--kernel=fc2",
            "--kernel_backend=native", "--target_batch=100", "--protocols=", "--methods=kip",
            "--natural=false", "--cell_flag=--eval_every=1"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "experiments", "distill.py")),
                    reason="experiment scripts missing")
def test_tiny_sweep_runs_then_skips_finished_cells(tmp_path):
  # One real cell (the cells' commands are checked by the dry runs above): it runs, is
  # recorded, and a re-run skips it without starting the script.
  root = tmp_path / "sweep"
  rc, out, err = _run(SWEEP, *TINY_KIP, "--steps=1", f"--root={root}")
  assert rc == 0, out + err
  record = json.loads((root / "sweep.json").read_text())
  name = "kip/ipc1/seed0"
  assert [c["name"] for c in record["cells"]] == [name]
  assert all(c["status"] == "finished" and c["returncode"] == 0 for c in record["cells"])
  assert record["machine"]["cpu_cores"] >= 1 and record["settings"]["steps"] == 1
  assert (root / "logs" / (name.replace("/", "__") + ".log")).exists()
  kip_results = json.loads((root / name / "results.json").read_text())
  assert kip_results["schema"] == 2 and kip_results["run"]["steps"] == 1

  # Re-run: the cell is finished and skipped (no subprocess, the outputs are untouched).
  mtime = os.path.getmtime(root / name / "results.json")
  rc, out, err = _run(SWEEP, *TINY_KIP, "--steps=1", f"--root={root}")
  assert rc == 0, out + err
  assert out.count("finished, skipped") == 1 and "running" not in out
  assert os.path.getmtime(root / name / "results.json") == mtime

  # More KIP steps make the cell unfinished (it would resume from its checkpoint); so does
  # a missing results.json.
  cells, _ = _dry_run(*TINY_KIP, "--steps=2", f"--root={root}")
  assert cells[name][0] == "pending"
  os.remove(root / name / "results.json")
  cells, _ = _dry_run(*TINY_KIP, "--steps=1", f"--root={root}")
  assert cells[name][0] == "pending"


# ----------------------------------------------------------------------------
# report.py on fake roots


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def _distill(method, ipc, seed, acc, transfer, natural_transfer, per_step, wall):
  config = {"experiment": "distill", "dataset": "fashion_mnist", "method": method, "ipc": ipc,
            "seed": seed, "kernel": "fc3", "kernel_type": "ntk", "init": "real",
            "init_npz": None, "learn_labels": True, "transfer_model": "mlp",
            "transfer_lr": 0.01}
  return {"config": config, "kernel_backend": "native", "test_accuracy": acc,
          "natural_test_accuracy": 0.5, "transfer_test_accuracy": transfer,
          "natural_transfer_test_accuracy": natural_transfer, "eval_kernel": "ntk",
          "steps": 1000 if method == "kip" else 1, "seconds_per_step": per_step,
          "wall_time_s": wall, "devices": "1 x cpu",
          "versions": {"python": "3.11.7", "jax": "9.9.9", "neural-tangents": None}}


@pytest.fixture
def fake_roots(tmp_path):
  kip_root, prune_root = tmp_path / "sweep_kip", tmp_path / "sweep_prune"
  _write(kip_root / "sweep.json", {"sweep": "kip", "counts": {"finished": 7},
                                   "machine": {"cpu_model": "Test CPU 9000", "cpu_cores": 7}})
  for ipc, accs in ((1, (0.61, 0.65)), (10, (0.70, 0.74))):
    for seed, acc in enumerate(accs):
      _write(kip_root / f"natural/ipc{ipc}/seed{seed}/results.json", {
          "config": {"experiment": "krr_baseline", "dataset": "fashion_mnist", "kernel": "fc3",
                     "kernel_type": "ntk", "kernel_backend": "native", "ipc": [ipc],
                     "seeds": [seed]},
          "results": {str(ipc): {"seeds": [seed], "test_accuracy": [acc],
                                 "test_accuracy_mean": acc, "test_accuracy_std": 0.0}},
          "wall_time_s": 3.0, "versions": {"jax": "9.9.9"}})
  _write(kip_root / "kip/ipc1/seed0/results.json",
         _distill("kip", 1, 0, 0.71, 0.50, 0.40, 0.05, 100.0))
  _write(kip_root / "kip/ipc1/seed1/results.json",
         _distill("kip", 1, 1, 0.75, 0.52, 0.42, 0.07, 120.0))
  _write(kip_root / "ls/ipc1/seed0/results.json",
         _distill("ls", 1, 0, 0.68, None, None, 2.0, 10.0))
  # evaluate.py re-evaluations of the KIP runs' finite networks replace their transfer.
  for seed, acc in ((0, 0.60), (1, 0.62)):
    _write(kip_root / f"kip/ipc1/seed{seed}/transfer/results.json", {
        "support": f"/x/kip/ipc1/seed{seed}/distilled.npz", "support_size": 10,
        "num_classes": 10, "images_per_class": None, "network_test_accuracy": acc,
        "krr_test_accuracy": 0.7,
        "config": {"experiment": "evaluate", "dataset": "fashion_mnist", "kernel": "fc3",
                   "kernel_type": "ntk", "model": "mlp", "optimizer": "adam", "lr": 0.001,
                   "seed": seed}})
  # A KIP checkpoint directory is not a result.
  _write(kip_root / "kip/ipc1/seed0/checkpoints/results.json", {"config": {}})

  def cell(seeds, accs, wall):
    return {"seeds": seeds, "test_accuracy": accs, "wall_time_s": wall, "n_kept": 1}

  config = {"experiment": "prune", "dataset": "fashion_mnist", "budget": "steps",
            "train": {"model": "convnet", "model_kwargs": {}, "epochs": 10},
            "score_epochs": 5, "score_inits": 2, "offset": 0.0}
  _write(prune_root / "prune/full/results.json", {
      "config": config, "n_train": 60000, "n_test": 10000, "full_steps": 4680,
      "results": {"full": {"1": cell([0, 1], [0.90, 0.92], [60.0, 60.0])}}})
  _write(prune_root / "prune/el2n/results.json", {
      "config": config, "n_train": 60000, "n_test": 10000, "full_steps": 4680,
      "results": {"el2n": {"0.5": cell([0, 1], [0.89, 0.91], [30.0, 30.0])}}})
  _write(prune_root / "prune/random/results.json", {
      "config": config, "n_train": 60000, "n_test": 10000, "full_steps": 4680,
      "results": {"random": {"0.5": cell([0, 1], [0.87, 0.88], [30.0, 30.0]),
                             "0.3": cell([0], [0.80], [20.0])}}})
  return kip_root, prune_root


def _row(markdown, first_cell):
  """The cells of the markdown table row whose first cell is `first_cell`."""
  for line in markdown.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and cells[0] == first_cell:
      return cells
  raise AssertionError(f"no table row {first_cell!r} in:\n{markdown}")


def test_report_shows_exactly_the_results(fake_roots, tmp_path):
  kip_root, prune_root = fake_roots
  out = tmp_path / "docs" / "results.md"
  rc, stdout, err = _run(REPORT, f"--roots={kip_root},{prune_root}", f"--out={out}")
  assert rc == 0, err
  md = out.read_text()

  # KRR table: columns 1 and 10 images per class; mean ± std (ddof=0) in percent.
  assert _row(md, "support set")[1:] == ["1 img/class", "10 img/class"]
  assert _row(md, "natural")[1:] == ["63.00 ± 2.00 (n=2)", "72.00 ± 2.00 (n=2)"]
  assert _row(md, "KIP")[1:] == ["73.00 ± 2.00 (n=2)", "–"]
  assert _row(md, "Label Solve")[1:] == ["68.00 ± 0.00 (n=1)", "–"]
  assert _row(md, "KIP → mlp (adam lr 0.001, rescaled targets)")[1:] == [
      "61.00 ± 1.00 (n=2)", "–"]
  assert _row(md, "natural → mlp (sgd lr 0.01, raw targets)")[1:] == [
      "41.00 ± 1.00 (n=2)", "–"]
  # The paper's Fashion-MNIST rows, labelled, in the same columns.
  paper = [line for line in md.splitlines() if line.startswith("| *paper: KIP, ConvNet")]
  assert paper and "*76.7*" in paper[0] and "*88.8*" in paper[0] and "91.0" not in paper[0]
  assert "arXiv:2107.13034" in paper[0]
  # Cost: seconds per step and wall time are means over the runs.
  cost = [line for line in md.splitlines() if line.startswith("| KIP | 1 |")]
  assert cost and "60.0 ms" in cost[0] and "110.0 s" in cost[0] and "| 1000 |" in cost[0]
  # Machine from sweep.json, versions from results.json.
  assert "Test CPU 9000, 7 cores" in md
  assert _row(md, "jax")[1] == "9.9.9"

  # Pruning table: fractions in decreasing order, the full set in its own row.
  assert _row(md, "method")[1:4] == ["keep 100%", "keep 50%", "keep 30%"]
  assert _row(md, "full training set")[1] == "91.00 ± 1.00 (n=2)"
  assert _row(md, "el2n")[1:4] == ["", "90.00 ± 1.00 (n=2)", "–"]
  assert _row(md, "random")[1:4] == ["", "87.50 ± 0.50 (n=2)", "80.00 ± 0.00 (n=1)"]
  assert "EL2N reaches 90.00% against 91.00% for the full training set (-1.00 points)" in md

  # Figures: written under docs/figures and linked relative to the markdown file.
  links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
  assert len(links) == 2 and all(link.startswith("figures/") for link in links)
  for link in links:
    with open(out.parent / link, "rb") as f:
      assert f.read(8) == PNG_MAGIC


def test_report_refuses_missing_or_empty_roots(tmp_path):
  rc, _, err = _run(REPORT, f"--roots={tmp_path / 'nope'}", f"--out={tmp_path / 'r.md'}")
  assert rc == 1 and "does not exist" in err
  (tmp_path / "empty").mkdir()
  rc, _, err = _run(REPORT, f"--roots={tmp_path / 'empty'}", f"--out={tmp_path / 'r.md'}")
  assert rc == 1 and "No results.json" in err
  assert not (tmp_path / "r.md").exists()


# ----------------------------------------------------------------------------
# kernelcond.report / kernelcond.sweep in process: one reader, the shared schema.


def _shared(experiment, config, evaluations, run, dataset="fashion_mnist"):
  return {"schema": 2, "experiment": experiment, "config": config,
          "dataset": {"name": dataset, "n_train": 60000, "n_test": 10000},
          "evaluations": evaluations, "run": run,
          "environment": {"versions": {"jax": "1.2.3"}, "devices": "1 x cpu"}}


def _support_eval(krr_acc, nets=None, **extra):
  return {"krr": {"accuracy": krr_acc, "kernel": "fc3", "kernel_type": "ntk",
                  "backend": "native", "reg": 1e-6},
          "networks": {name: {"mean": sum(a) / len(a), "std": 0.0, "accuracies": a,
                              "config": {"optimizer": "adam", "lr": 0.01, "epochs": 100},
                              "loss": "xent"} for name, a in (nets or {}).items()},
          "support_size": 10, "label_kind": "hard", **extra}


def test_load_record_converts_every_legacy_schema(fake_roots, tmp_path):
  from kernelcond import report
  kip_root, prune_root = fake_roots
  r = report.load_record(str(kip_root / "kip/ipc1/seed0/results.json"))
  assert set(r) == {"schema", "experiment", "config", "dataset", "evaluations", "run",
                    "environment"}
  assert r["experiment"] == "distill" and r["dataset"]["name"] == "fashion_mnist"
  assert r["evaluations"]["distilled"]["krr"]["accuracy"] == 0.71
  assert r["evaluations"]["distilled"]["networks"]["mlp"]["accuracies"] == [0.50]
  assert r["evaluations"]["natural"]["krr"]["accuracy"] == 0.5
  assert r["run"]["seconds_per_step"] == 0.05 and r["environment"]["versions"]["jax"] == "9.9.9"
  r = report.load_record(str(kip_root / "kip/ipc1/seed1/transfer/results.json"))
  assert r["experiment"] == "evaluate"
  assert r["evaluations"]["support"]["networks"]["mlp"]["mean"] == 0.62
  r = report.load_record(str(kip_root / "natural/ipc10/seed1/results.json"))
  assert r["evaluations"] == {"ipc10/seed1": {
      "krr": {"accuracy": 0.74, "kernel": "fc3", "kernel_type": "ntk", "backend": "native",
              "reg": None}, "networks": {}, "slapknn": None, "support_size": None,
      "label_kind": "hard", "subset": {"ipc": 10, "seed": 1}}}
  r = report.load_record(str(prune_root / "prune/random/results.json"))
  ev = r["evaluations"]["random/0.5"]
  assert ev["subset"] == {"method": "random", "fraction": 0.5, "n_kept": 1}
  assert ev["networks"]["convnet"]["seeds"] == [0, 1] and r["run"]["full_steps"] == 4680
  # A shared-schema record is returned as it is; an unknown one is refused.
  shared = _shared("evaluate", {}, {"support": _support_eval(0.5)}, {})
  _write(tmp_path / "new.json", shared)
  assert report.load_record(str(tmp_path / "new.json")) == shared
  _write(tmp_path / "bad.json", {"config": {"experiment": "nope"}})
  with pytest.raises(ValueError, match="unknown results schema"):
    report.load_record(str(tmp_path / "bad.json"))


def test_report_reads_shared_schema_records(tmp_path):
  from kernelcond import report
  from kernelcond import sweep
  root = tmp_path / "new"
  for seed, (nat, kip, nets) in enumerate(((0.60, 0.70, [0.40, 0.50]), (0.62, 0.74, [0.60]))):
    config = {"experiment": "distill", "method": "kip", "ipc": 1, "seed": seed, "init": "real",
              "init_npz": None, "learn_labels": True}
    _write(root / f"kip/ipc1/seed{seed}/results.json", _shared(
        "distill", config, {"natural": _support_eval(nat),
                            "distilled": _support_eval(kip, {"mlp": nets})},
        {"steps": 10, "seconds_per_step": 0.5, "wall_time_s": 9.0, "kernel_backend": None}))
  _write(root / "natural/ipc1/seed0/results.json", _shared(
      "krr_baseline", {"experiment": "krr_baseline"},
      {"ipc1/seed0": _support_eval(0.66, subset={"ipc": 1, "seed": 0})}, {"wall_time_s": 2.0}))
  md = report.render([str(root)], str(tmp_path / "r.md"))
  # natural: the baseline replaces seed 0 of the runs' natural subsets (0.66, 0.62).
  assert _row(md, "natural")[1:] == ["64.00 ± 2.00 (n=2)"]
  assert _row(md, "KIP")[1:] == ["72.00 ± 2.00 (n=2)"]
  kip_net = [line for line in md.splitlines() if line.startswith("| KIP → mlp (adam lr 0.01")]
  assert kip_net and "52.50 ± 7.50 (n=2)" in kip_net[0]  # per-run means 0.45 and 0.60
  assert "of the `mlp` protocol" in md and "train_and_evaluate" not in md
  assert "native" in md and _row(md, "jax")[1] == "1.2.3"
  # The sweep's finished checks read the same records.
  assert sweep.distill_finished(str(root / "kip/ipc1/seed0"), "kip", 10, ["mlp"])
  assert not sweep.distill_finished(str(root / "kip/ipc1/seed0"), "kip", 11, ["mlp"])
  assert not sweep.distill_finished(str(root / "kip/ipc1/seed0"), "kip", 10, ["mlp", "dc"])
  assert sweep.baseline_finished(str(root / "natural/ipc1/seed0"), 1, 0)
  assert not sweep.baseline_finished(str(root / "natural/ipc1/seed0"), 1, 1)
  assert not sweep.baseline_finished(str(tmp_path / "missing"), 1, 0)


def test_report_names_the_cifar10_jpeg_folder_and_shows_its_papers(tmp_path):
  from kernelcond import report
  config = {"experiment": "distill", "method": "rfad", "ipc": 1, "seed": 0, "init": "real",
            "init_npz": None, "learn_labels": False, "kernel": "fc3",
            "data": {"dataset": "folder", "data_dir": ".data/cifar10"}}
  _write(tmp_path / "c/rfad/results.json", _shared(
      "distill", config, {"natural": _support_eval(0.2), "distilled": _support_eval(0.4)},
      {"steps": 10, "seconds_per_step": 0.5, "wall_time_s": 9.0}, dataset="folder"))
  # A pruning run keeps its data fields at the top of its config.
  prune_config = {"experiment": "prune", "dataset": "folder", "data_dir": ".data/cifar10/",
                  "budget": "steps", "train": {"model": "convnet", "model_kwargs": {},
                                               "epochs": 5}}
  _write(tmp_path / "c/prune/results.json", {
      "config": prune_config, "n_train": 50000, "n_test": 10000, "full_steps": 1950,
      "results": {"full": {"1": {"seeds": [0], "test_accuracy": [0.7], "wall_time_s": [1.0],
                                 "n_kept": 50000}}}})
  md = report.render([str(tmp_path / "c")], str(tmp_path / "r.md"))
  assert "### CIFAR-10 (JPEG copy): `fc3` NTK kernel" in md and "### folder" not in md
  assert "### CIFAR-10 (JPEG copy): `convnet`" in md
  assert report.paper_dataset("CIFAR-10 (JPEG copy)") == "cifar10"
  rfad_paper = [line for line in md.splitlines() if line.startswith("| *paper: RFAD")]
  assert rfad_paper and rfad_paper[0].endswith("| *53.6* |")


def test_prune_finished_reads_legacy_prune_results(fake_roots):
  from kernelcond import sweep
  _, prune_root = fake_roots
  assert sweep.prune_finished(str(prune_root / "prune/full"), "full", [1.0], [0, 1])
  assert sweep.prune_finished(str(prune_root / "prune/random"), "random", [0.5, 0.3], [0])
  assert not sweep.prune_finished(str(prune_root / "prune/random"), "random", [0.5, 0.3], [0, 1])


def test_protocol_roots_draw_validation_curves_from_metrics_logs(tmp_path):
  from kernelcond import report
  root = tmp_path / "condense"
  kip_root = tmp_path / "kip"
  _write(kip_root / "kip/ipc1/seed0/results.json", _shared(
      "distill", {"experiment": "distill", "method": "kip", "ipc": 1, "seed": 0},
      {"natural": _support_eval(0.5), "distilled": _support_eval(0.6)}, {}))
  for seed, accs in enumerate(([0.50, 0.70, 0.65], [0.55, 0.60, 0.80])):
    run = root / f"dm_ipc1_s{seed}"
    config = {"experiment": "distill", "method": "dm", "ipc": 1, "seed": seed}
    _write(run / "results.json", _shared(
        "distill", config, {"natural": _support_eval(0.5, {"dc": [0.5]}),
                            "distilled": _support_eval(0.6, {"dc": [0.7]})}, {}))
    lines = [json.dumps({"step": 10 * (i + 1), "seconds": 0.25 + seed,
                         "eval/val_accuracy": a}) for i, a in enumerate(accs)]
    lines.insert(1, json.dumps({"step": 15, "loss": 1.0, "seconds": 0.25 + seed}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 31, "los')  # torn
  md = report.render([str(kip_root)], str(tmp_path / "r.md"), protocol_roots=[str(root)])
  assert "## Condensation runs: validation accuracy against steps" in md
  assert _row(md, "dm")[1:] == ["70.00 ± 0.00 (n=2)"]  # the protocol table
  rows = [line for line in md.splitlines() if line.startswith("| dm |") and "step" in line]
  # The target is the median of the bests (70, 80): seed 0 never reaches 75, seed 1 at 30.
  assert rows[0].split(" | ")[1:] == ["0", "30", "50.0 (step 10)", "70.0 (step 20)", "65.0",
                                      "0.25", "not reached |"]
  assert rows[1].split(" | ")[1:] == ["1", "30", "55.0 (step 10)", "80.0 (step 30)", "80.0",
                                      "1.25", "30 (37.5 s) |"]
  assert "steps (time) to 75.0" in md
  assert (tmp_path / "figures" / "curves_fashion_mnist_ipc1.png").stat().st_size > 0
