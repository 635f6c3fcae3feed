"""Condensation methods behind one interface (`base.Condenser`) and one loop (`loop.run`).

The registry `METHODS` names every method; adding one is a module with a
frozen config dataclass and `make(config) -> Condenser`, plus one line here.
"""

from kernelcond.condense import kip, label_solve
from kernelcond.condense.base import METHODS, Condenser, Data, Method, initial_support, support

METHODS.register("kip", Method("kip", kip.KipConfig, kip.make,
                               "Kernel Inducing Points (arXiv:2011.00050, 2107.13034)"))
METHODS.register("ls", Method("ls", label_solve.LabelSolveConfig, label_solve.make,
                              "Label Solve: closed-form KRR labels (arXiv:2107.13034)"))

__all__ = ["METHODS", "Condenser", "Data", "Method", "initial_support", "support"]
