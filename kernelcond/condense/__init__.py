"""Condensation methods behind one interface (`base.Condenser`) and one loop (`loop.run`).

The registry `METHODS` names every method; adding one is a module with a
frozen config dataclass and `make(config) -> Condenser`, plus one line here.
"""

from kernelcond.condense import kip, label_solve
from kernelcond.condense import frepo, rfad
from kernelcond.condense import dd, dm, matching
from kernelcond.condense.base import METHODS, Condenser, Data, Method, initial_support, support

METHODS.register("kip", Method("kip", kip.KipConfig, kip.make,
                               "Kernel Inducing Points (arXiv:2011.00050, 2107.13034)"))
METHODS.register("ls", Method("ls", label_solve.LabelSolveConfig, label_solve.make,
                              "Label Solve: closed-form KRR labels (arXiv:2107.13034)"))
METHODS.register("rfad", Method("rfad", rfad.RfadConfig, rfad.make,
                                "KIP on random-feature NNGP kernels, Platt loss (arXiv:2210.12067)"))
METHODS.register("frepo", Method("frepo", frepo.FrepoConfig, frepo.make,
                                 "neural feature regression, online model pool (arXiv:2206.00719)"))
METHODS.register("dc", Method("dc", matching.MatchingConfig, matching.make,
                              "Dataset Condensation, gradient matching (arXiv:2006.05929)"))
METHODS.register("dsa", Method("dsa", matching.DsaConfig, matching.make,
                               "DC with siamese augmentation (arXiv:2102.08259)"))
METHODS.register("dm", Method("dm", dm.DmConfig, dm.make,
                              "Distribution Matching of mean embeddings (arXiv:2110.04181)"))
METHODS.register("dd", Method("dd", dd.DdConfig, dd.make,
                              "Dataset Distillation, unrolled, soft labels (arXiv:1811.10959)"))

__all__ = ["METHODS", "Condenser", "Data", "Method", "initial_support", "support"]
