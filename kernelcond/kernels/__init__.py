"""Architecture specs -> finite networks and their infinite-width NNGP / NTK kernels.

An architecture is an `ArchSpec` (a frozen dataclass; `get_spec("fc3")` or
`get_spec("fc3:W_std=1.5,activation=erf")`, parsed without `eval`). From one spec,
`stax(spec)` gives `(init_fn, apply_fn, kernel_fn)` as neural-tangents does: a
finite network and the kernels of its infinite-width limit.

Modules, by job:

* `spec`: `ArchSpec`, the `NAMED_SPECS` registry, the spec-string parser;
* `native`: closed-form kernels in pure `jax.numpy` (any JAX version);
* `nt`: the neural-tangents backend (pinned jax 0.4.23 stack only);
* `backends`: `make_kernel_fn(spec, backend)`, `resolve_backend`, `stax`;
* `finite`: the finite network of a spec, in the same parameterisation;
* `random_features`: empirical NNGP / NTK of M random finite networks (RFAD,
  arXiv:2210.12067), with the same `kernel_fn(x1, x2, get)` interface;
* `matrix`: `kernel_matrix`, blocked and spread over local devices.

`kernel_fn(x1, x2, get)` takes `(n, H, W, C)` images (or `(n, d)` for FC specs)
and returns `(n1, n2)` arrays for `get='nngp'` / `'ntk'` (a tuple for a tuple
`get`).
"""

from kernelcond.kernels import native
from kernelcond.kernels.backends import (BACKENDS, KERNEL_KINDS, Get, KernelFn,
                                         check_closed_form, make_kernel_fn, resolve_backend,
                                         stax)
from kernelcond.kernels.finite import init_and_apply
from kernelcond.kernels.matrix import kernel_matrix
from kernelcond.kernels.nt import neural_tangents_available, nt_stax
from kernelcond.kernels.random_features import make_random_kernel_fn, random_feature_fn
from kernelcond.kernels.spec import (ACTIVATIONS, FAMILIES, NAMED_SPECS, NORMS,
                                     PARAMETERIZATIONS, READOUTS, ArchSpec, get_spec)

__all__ = [
    "ACTIVATIONS", "BACKENDS", "FAMILIES", "KERNEL_KINDS", "NAMED_SPECS", "NORMS",
    "PARAMETERIZATIONS", "READOUTS", "ArchSpec", "Get", "KernelFn", "check_closed_form",
    "get_spec", "init_and_apply", "kernel_matrix",
    "make_kernel_fn", "make_random_kernel_fn", "native", "neural_tangents_available",
    "nt_stax", "random_feature_fn", "resolve_backend", "stax",
]
