r"""Condense a dataset into a few examples per class with any registered method.

    python experiments/distill.py --dataset=digits --ipc=10 --workdir=runs/digits_kip
    python experiments/distill.py --dataset=fashion_mnist --method=kip --kernel=fc5 \
        --steps=16000 --ipc=10 --protocols=mlp,dc --workdir=runs/kip_fmnist_ipc10
    python experiments/distill.py --dataset=digits --method=ls --workdir=runs/digits_ls

Methods (`--method`): see `kernelcond.condense.METHODS` (`--help` lists them with
each setting's per-method default; defaults live in the methods' config classes).
The run is `kernelcond.experiment.distill`: it writes `config.json`,
`checkpoints/`, `metrics.jsonl`, `tensorboard/`, `distilled.npz`, `distilled.png`
and `results.json` to `--workdir`; re-running the same command resumes, another
configuration is refused. The natural subset it started from and the condensed
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

FLAGS = flags.FLAGS
_METHODS = [condense.METHODS.get(n) for n in condense.METHODS.names()]
_common.define_data_flags()
_common.define_distributed_flags()
flags.DEFINE_enum("method", "kip", list(condense.METHODS.names()),
                  "Condensation method: " + "; ".join(f"{m.name}: {m.summary}" for m in _METHODS))
flags.DEFINE_string("workdir", None, "Output directory; the same configuration resumes.")
_flags.define_config_flags(experiment.DistillConfig,
                           skip=("method", "method_config", "evaluation", "data"))
_flags.define_config_flags(*(m.config_cls for m in _METHODS), labels=tuple(m.name for m in _METHODS))
_flags.define_config_flags(evaluate.EvalConfig,
                           skip=("kernel", "kernel_backend", "kernel_type", "reg", "block_size"))
flags.DEFINE_alias("transfer_protocol", "protocols")
flags.mark_flag_as_required("workdir")
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
    dataset = _common.load_data_from_flags()
  with _run.progress_bar(config.steps, FLAGS.method.upper()) as on_chunk, \
      _run.run_errors():
    results = experiment.distill(config, dataset, FLAGS.workdir, on_chunk=on_chunk)
  _run.print_evaluations(results, f"{FLAGS.method.upper()} on {dataset.name}: "
                            f"{config.ipc} per class, {config.steps} step(s)")
  print(f"  outputs in {FLAGS.workdir}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main)
