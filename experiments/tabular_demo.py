r"""Distil two moons into a handful of points and plot the decision regions they teach.

    python experiments/tabular_demo.py --workdir=runs/two_moons --ipc=2

Condenses the built-in two-moons data (`--dataset=two_moons`: 1,000 standardised
2-D training points, 500 test points) with each of `--methods` (KIP with an FC
NTK, DM and DD with MLPs; settings below), each one a resumable
`kernelcond.experiment.distill` run in `workdir/<method>/` with its own
results.json, then draws `workdir/decision_regions.png`: one panel for the
natural subset and one per method, each with the test points, the support
points (their size the weight of their label) and the decision regions of KRR
under the fc3 NTK fitted on the support alone (the one KRR evaluation every
method gets), titled with that KRR test accuracy from results.json.
Re-running the same command resumes or, for finished runs, only redraws.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _run  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Output directory (one sub-directory per method).")
flags.DEFINE_integer("ipc", 2, "Distilled points per class.")
flags.DEFINE_list("methods", ["kip", "dm", "dd"], "Methods to run (vector methods: kip, ls, "
                  "dm, dd).")
flags.DEFINE_integer("seed", 0, "Seed of the initial subset and the runs.")
flags.mark_flag_as_required("workdir")

# Demo settings per method: FC kernels and MLPs (the vector variants), sized to
# run in about a minute each on 2 CPU cores.
_SETTINGS = {
    "kip": dict(kernel="fc3", kernel_backend="native", steps=300, target_batch=500),
    "ls": dict(kernel="fc3", kernel_backend="native"),
    "dm": dict(net="mlp", width=64, depth=2, batch_real=256, dsa_strategy="none", lr=0.1,
               steps=500),
    "dd": dict(net="mlp", width=64, depth=2, inner_steps=20, n_inits=4, target_batch=500,
               steps=500, lr=0.02),
}
_GRID = 200


def build_configs(methods, ipc: int, seed: int) -> dict:
  """`{method: DistillConfig}` of the demo (KRR evaluation only, fc3 NTK)."""
  from kernelcond import condense
  from kernelcond import evaluate
  from kernelcond import experiment

  unknown = sorted(set(methods) - set(_SETTINGS))
  if unknown:
    raise ValueError(f"--methods: {unknown} have no vector demo settings; valid: "
                     f"{', '.join(_SETTINGS)}")
  if ipc < 1:
    raise ValueError(f"--ipc must be >= 1, got {ipc}")
  evaluation = evaluate.EvalConfig(kernel="fc3", kernel_backend="native", protocols=())
  return {m: experiment.DistillConfig(method=m, ipc=ipc, seed=seed, evaluation=evaluation,
                                      method_config=condense.METHODS.get(m).config(
                                          **_SETTINGS[m]),
                                      data={"dataset": "two_moons"})
          for m in methods}


def draw(path: str, dataset, panels: list) -> None:
  """Decision regions of KRR (fc3 NTK) fitted on each panel's `(title, x_s, y_s)`."""
  import numpy as np

  from kernelcond import kernels
  from kernelcond import krr
  from kernelcond import plots

  plt = plots.pyplot()
  kernel_fn = kernels.make_kernel_fn("fc3", "native")
  pts = dataset.x_test.reshape(-1, 2)
  shown = np.concatenate([pts] + [x_s.reshape(-1, 2) for _, x_s, _ in panels])
  lo, hi = shown.min(0) - 0.5, shown.max(0) + 0.5
  g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], _GRID), np.linspace(lo[1], hi[1], _GRID))
  grid = np.stack([g0.ravel(), g1.ravel()], -1).astype(np.float32).reshape(-1, 1, 2, 1)
  fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.3), squeeze=False)
  for ax, (title, x_s, y_s) in zip(axes[0], panels):
    k_ss = kernel_fn(x_s, x_s, "ntk")
    pred = np.asarray(krr.predict(kernel_fn(grid, x_s, "ntk"), k_ss, y_s))
    ax.contourf(g0, g1, pred.argmax(-1).reshape(g0.shape), levels=[-0.5, 0.5, 1.5],
                colors=["#cfe0f3", "#f6d5c8"])
    ax.scatter(pts[:, 0], pts[:, 1], c=dataset.y_test, cmap="coolwarm", s=4, alpha=0.35)
    s = x_s.reshape(-1, 2)
    ax.scatter(s[:, 0], s[:, 1], c=y_s.argmax(-1), cmap="coolwarm", edgecolors="k",
               s=40 + 120 * np.clip(y_s.max(-1), 0, 1), marker="*", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"two moons: {len(panels[0][1]) // 2} point(s) per class, KRR (fc3 NTK) "
               "decision regions", fontsize=10)
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=100)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from kernelcond import data
  from kernelcond import experiment
  from kernelcond import preprocess
  from kernelcond import support

  with _common.user_errors():
    configs = build_configs(FLAGS.methods, FLAGS.ipc, FLAGS.seed)
    dataset = preprocess.prepare(data.load_dataset("two_moons"))
  panels = []
  for method, config in configs.items():
    workdir = os.path.join(FLAGS.workdir, method)
    with _run.progress_bar(config.steps, method.upper()) as on_chunk, _run.run_errors():
      results = experiment.distill(config, dataset, workdir, on_chunk=on_chunk)
    evals = results["evaluations"]
    if not panels:
      x_nat = experiment.split(config, dataset)
      panels.append((f"natural: KRR {evals['natural']['krr']['accuracy']:.3f}",
                     x_nat.x_natural, x_nat.y_natural))
    x_s, y_s = support.load_support(os.path.join(workdir, "distilled.npz"), dataset,
                                    config.center_labels)[:2]
    panels.append((f"{method}: KRR {evals['distilled']['krr']['accuracy']:.3f}", x_s, y_s))
    _run.print_evaluations(results, f"{method.upper()} on two moons, {config.ipc} per class")
  path = os.path.join(FLAGS.workdir, "decision_regions.png")
  draw(path, dataset, panels)
  print(f"  decision regions in {path}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main, flags_parser=_common.parse_flags)
