r"""Evaluate any support set (synthetic or selected) with the one evaluation.

    python experiments/evaluate.py --support=runs/digits_kip/distilled.npz \
        --dataset=digits --protocols=mlp,dc --workdir=runs/digits_kip/transfer

The support file (`kernelcond.support`) holds `images` and `labels` (integer or
learned), or `indices` into the training set. Images of a `distilled.npz` live
in the preprocessed space of the run that made them: its recorded data settings
(`--standardize`, `--zca`) are adopted unless given on the command line, and a
file recorded for another dataset is refused. Reports KRR test accuracy and the
test accuracy of `--net_seeds` finite networks per protocol
(`kernelcond.evaluate.evaluate_support`); writes `--workdir/results.json` in the
shared schema. A workdir belongs to one evaluation: other settings, or another
experiment's workdir, are refused; re-running a finished evaluation prints its
stored results without recomputing or writing anything.
"""

from __future__ import annotations

import contextlib
import os
import sys

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _flags  # noqa: E402
import _run  # noqa: E402

from kernelcond import evaluate  # noqa: E402
from kernelcond import experiment  # noqa: E402
from kernelcond import io  # noqa: E402
from kernelcond import support  # noqa: E402

FLAGS = flags.FLAGS
_common.define_data_flags()
_common.define_distributed_flags()
flags.DEFINE_string("support", None, "Support file (.npz): images+labels, or indices.")
flags.DEFINE_bool("center_labels", True, "Centred one-hot targets for integer labels.")
flags.DEFINE_string("workdir", "runs/evaluate", "Where config.json and results.json are "
                    "written (one evaluation per workdir).")
_flags.define_config_flags(evaluate.EvalConfig)
flags.DEFINE_alias("protocol", "protocols")
flags.mark_flag_as_required("support")
flags.adopt_module_key_flags(_common)
flags.adopt_module_key_flags(_flags)


def _adopt_recorded(arrays: dict) -> None:
  """Takes the dataset and preprocessing recorded in the file unless given as flags."""
  recorded = (support.recorded_config(arrays) or {}).get("data") or {}
  name = recorded.get("dataset")
  if name and FLAGS["dataset"].present and FLAGS.dataset != name:
    raise ValueError(f"{FLAGS.support} was made from dataset {name!r}, not --dataset="
                     f"{FLAGS.dataset}; evaluate it on {name!r}")
  for key, value in recorded.items():
    if key in FLAGS and not FLAGS[key].present and FLAGS[key].value != value:
      logging.info("Using --%s=%s recorded in the support file", key, value)
      FLAGS[key].value = value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _common.maybe_initialize_distributed()
  with contextlib.ExitStack() as held:  # the workdir's lock, once it is made
    with _common.user_errors():
      arrays = io.load_npz(FLAGS.support)
      _adopt_recorded(arrays)
      config = _flags.config_from_flags(evaluate.EvalConfig)
      dataset = _common.load_data_from_flags()
      x, y, labels = support.load_support(FLAGS.support, dataset, FLAGS.center_labels)
      record = {"experiment": "evaluate", "support": os.path.abspath(FLAGS.support),
                "support_fingerprint": io.fingerprint(x, y), "center_labels": FLAGS.center_labels,
                "data": _common.data_config(), "evaluation": config.to_dict()}
      stored = io.finished_results(FLAGS.workdir, record)  # reads only
      if stored is None:
        io.check_workdir(FLAGS.workdir, "--workdir")
        os.makedirs(FLAGS.workdir, exist_ok=True)
        held.enter_context(io.exclusive_workdir(FLAGS.workdir))
        io.check_run_config(FLAGS.workdir, record)
        _run.warn_slow_kernel(config, dataset)
    path = os.path.join(FLAGS.workdir, "results.json")
    title = f"{FLAGS.support}: {len(x)} examples, {dataset.name} test set of {dataset.num_test}"
    if stored is not None:
      _run.print_finished(stored, path, title)
      return
    with _run.run_errors():
      result = evaluate.evaluate_support(config, x, y, dataset.x_test, dataset.y_test,
                                         num_classes=dataset.num_classes, labels=labels)
    results = experiment.results_record("evaluate", record, dataset, {"support": result},
                                        {"support_size": int(len(x))})
    io.save_json(path, results)
    _run.print_evaluations(results, title)
    print(f"  results: {path}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  app.run(main, flags_parser=_common.parse_flags)
