r"""Condense a dataset into a few examples per class with any registered method.

    python experiments/distill.py --dataset=digits --ipc=10 --workdir=runs/digits_kip
    python experiments/distill.py --dataset=fashion_mnist --method=kip --kernel=fc5 \
        --steps=16000 --ipc=10 --protocols=mlp,dc --workdir=runs/kip_fmnist_ipc10
    python experiments/distill.py --dataset=digits --method=ls --workdir=runs/digits_ls

Methods (`--method`): see `kernelcond.condense.METHODS` (`--help` lists them with
each setting's per-method default; defaults live in the methods' config classes).
The run is `kernelcond.experiment.distill`: it writes `config.json`,
`checkpoints/`, `metrics.jsonl`, `tensorboard/`, `distilled.npz`, `distilled.png`
and `results.json` to `--workdir`; re-running the same command resumes (or, once
finished, prints the stored results without recomputing or writing anything),
another configuration is refused. The natural subset it started from and the condensed
set are evaluated the same way: KRR with the method's kernel and finite networks
under `--protocols` (`kernelcond.nets.protocols`), `--net_seeds` networks each.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _flags  # noqa: E402
import _run  # noqa: E402

from kernelcond import condense  # noqa: E402
from kernelcond import evaluate  # noqa: E402
from kernelcond import experiment  # noqa: E402
from kernelcond import io  # noqa: E402

FLAGS = flags.FLAGS
_METHODS = [condense.METHODS.get(n) for n in condense.METHODS.names()]
_common.define_data_flags()
_common.define_distributed_flags()
flags.DEFINE_enum("method", "kip", list(condense.METHODS.names()),
                  "Condensation method: " + "; ".join(f"{m.name}: {m.summary}" for m in _METHODS))
flags.DEFINE_string("workdir", "runs/distill", "Output directory; the same configuration "
                    "resumes, another one is refused.")
_flags.define_config_flags(experiment.DistillConfig,
                           skip=("method", "method_config", "evaluation", "data"))
_flags.define_config_flags(*(m.config_cls for m in _METHODS), labels=tuple(m.name for m in _METHODS))
_flags.define_config_flags(evaluate.EvalConfig,
                           skip=("kernel", "kernel_backend", "kernel_type", "reg", "block_size"))
flags.DEFINE_alias("transfer_protocol", "protocols")
flags.adopt_module_key_flags(_common)
flags.adopt_module_key_flags(_flags)


def build_config() -> experiment.DistillConfig:
  """The run's config from the flags (defaults from the library's dataclasses)."""
  method = condense.METHODS.get(FLAGS.method)
  _flags.check_applicable(method.config_cls, [m.config_cls for m in _METHODS], FLAGS.method)
  method_config = _flags.config_from_flags(method.config_cls)
  evaluation = _flags.config_from_flags(evaluate.EvalConfig,
                                        **evaluate.kernel_fields(method_config))
  return _flags.config_from_flags(experiment.DistillConfig, method=FLAGS.method,
                                  method_config=method_config, evaluation=evaluation,
                                  data=_common.data_config())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _common.maybe_initialize_distributed()
  with _common.user_errors():
    config = build_config()
    stored = experiment.finished(config, FLAGS.workdir)  # reads only: a read-only workdir is fine
    if stored is None:
      io.check_workdir(FLAGS.workdir, "--workdir")
      dataset = _common.load_data_from_flags()
      _run.warn_slow_kernel(config.evaluation, dataset)
  title = "{} on {}: {} per class, {} step(s)"
  if stored is not None:
    _run.print_finished(stored, os.path.join(FLAGS.workdir, "results.json"),
                        title.format(FLAGS.method.upper(), stored["dataset"]["name"], config.ipc,
                                     stored["run"]["steps"]))
    return
  with _run.progress_bar(config.steps, FLAGS.method.upper()) as on_chunk, \
      _run.run_errors():
    results = experiment.distill(config, dataset, FLAGS.workdir, on_chunk=on_chunk)
  _run.print_evaluations(results, title.format(FLAGS.method.upper(), dataset.name, config.ipc,
                                               config.steps))
  print(f"  outputs in {FLAGS.workdir}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main, flags_parser=_common.parse_flags)
