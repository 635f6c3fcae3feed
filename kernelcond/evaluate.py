"""ONE evaluation for every small training set: synthetic, selected or cleaned.

`evaluate_support(config, x_support, y_support, x_test, y_test, ...)` reports

* `krr`: KRR test accuracy with the kernel of `config` (`config.reg` ridge, the
  one relative convention `reg * trace(K) / n`);
* `networks`: for each protocol of `config.protocols` (`nets.protocols`: `dc`,
  `dsa`, `kernel`, `mlp`), the test accuracies of `len(config.net_seeds)` finite
  networks trained on the set (mean, std, each network's, the protocol's full
  config and the loss it used: hard labels train with cross-entropy, learned
  labels with the protocol's soft loss);
* `slapknn` (if `config.slapknn`): the soft-label prototype kNN accuracy.

Every script (distill, evaluate, prune) and the report read this one result
format. The test set is read here and nowhere else in a run.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np

from kernelcond import kernels
from kernelcond import krr

KERNEL_TYPES = ("ntk", "nngp")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """How a support set is evaluated: THE defaults of every script.

  Attributes:
    kernel: kernel spec of the KRR evaluation (and of the `kernel` protocol).
    kernel_backend: 'auto', 'native' or 'nt'.
    kernel_type: 'ntk' or 'nngp'.
    reg: relative ridge of the KRR fit.
    protocols: finite-network protocols (`nets.protocols`), e.g. 'mlp', 'dc',
      'dsa', 'kernel', or one with fields replaced, 'kernel:width=128'
      (`protocols.get_protocol`); empty for KRR only.
    net_seeds: one finite network per seed, for every protocol.
    net_epochs: override of every protocol's epochs (0: the protocol's own).
    slapknn: also report the soft-label prototype kNN (arXiv:2009.08449).
    block_size: kernel block edge (memory).
    rf_models: 0 for the exact kernel; M > 0 evaluates KRR with the random-feature
      estimate of `kernel` from M fixed random networks (`kernels.make_random_kernel_fn`,
      key 0): pooled ConvNet kernels that cost hours exactly on a CPU.
    rf_width: hidden width (conv channels) of those networks (0: the spec's width).
  """
  kernel: str = "fc3"
  kernel_backend: str = "auto"
  kernel_type: str = "ntk"
  reg: float = 1e-6
  protocols: tuple[str, ...] = ("mlp",)
  net_seeds: tuple[int, ...] = (0, 1)
  net_epochs: int = 0
  slapknn: bool = False
  block_size: int = 512
  rf_models: int = 0
  rf_width: int = 0

  def __post_init__(self):
    object.__setattr__(self, "protocols", join_protocol_items(self.protocols))
    object.__setattr__(self, "net_seeds", tuple(int(s) for s in self.net_seeds))
    kernels.resolve_backend(self.kernel_backend, self.kernel)  # unknown or missing: named now
    if not self.rf_models:
      kernels.check_closed_form(self.kernel)
    if self.kernel_type not in KERNEL_TYPES:
      raise ValueError(f"Unknown kernel type {self.kernel_type!r}; valid: {', '.join(KERNEL_TYPES)}")
    if not self.reg >= 0:
      raise ValueError(f"reg must be >= 0, got {self.reg}")
    if self.protocols and not self.net_seeds:
      raise ValueError("net_seeds must name at least one network seed when protocols are given")
    if self.net_epochs < 0:
      raise ValueError(f"net_epochs must be >= 0, got {self.net_epochs}")
    if self.rf_models < 0 or self.rf_width < 0:
      raise ValueError(f"rf_models and rf_width must be >= 0, got {self.rf_models}, "
                       f"{self.rf_width}")
    if self.protocols:
      from kernelcond.nets import protocols as protocol_registry
      family = kernels.get_spec(self.kernel).family
      for name in self.protocols:
        wanted = protocol_registry.get_protocol(name).spec_family  # bad overrides fail here
        if wanted and wanted != family:
          raise ValueError(f"protocol {name!r} trains the finite network of a {wanted} kernel "
                           f"spec; kernel {self.kernel!r} is {family}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def kernel_fn(self) -> kernels.KernelFn:
    """The KRR kernel: exact (`kernel_backend`), or random features when `rf_models > 0`."""
    if self.rf_models:
      return kernels.make_random_kernel_fn(self.kernel, self.rf_models, self.rf_width or None)
    return kernels.make_kernel_fn(self.kernel, self.kernel_backend)


def join_protocol_items(items) -> tuple[str, ...]:
  """Protocol names from a comma-split flag: `['dc', 'kernel:width=128', 'epochs=500']`
  -> `('dc', 'kernel:width=128,epochs=500')` (an item `field=value` without ':'
  continues the overrides of the protocol before it)."""
  out = []
  for item in (str(p).strip() for p in items):
    if not item:
      continue
    if out and "=" in item and ":" not in item and ":" in out[-1]:
      out[-1] += "," + item
    else:
      out.append(item)
  return tuple(out)


def kernel_fields(method_config) -> dict:
  """The `EvalConfig` kernel fields that evaluate a method's sets with the method's own kernel.

  A method config without a kernel (no `kernel` field) keeps `EvalConfig`'s defaults;
  'sample' kernels evaluate with the NTK (`eval_kernel_type`).
  """
  return {"kernel": getattr(method_config, "kernel", EvalConfig.kernel),
          "kernel_backend": getattr(method_config, "kernel_backend", EvalConfig.kernel_backend),
          "kernel_type": getattr(method_config, "eval_kernel_type", EvalConfig.kernel_type),
          "reg": getattr(method_config, "reg", EvalConfig.reg)}


def slow_kernel_hint(config: EvalConfig, platform: str, image_shape) -> Optional[str]:
  """A one-line hint when the KRR evaluation would use an exact ConvNet kernel with a full
  spatial covariance (pooling or GAP readout) on a CPU for images of 16x16 or more, else None.

  Such kernels cost O((HW)^2) per entry: 0.04-0.25 s per entry at 28x28 on 2 CPU cores
  (a full test set against 100 support images takes hours); the random-feature estimate
  takes minutes.
  """
  spec = kernels.get_spec(config.kernel)
  pixels = int(np.prod(image_shape[:2])) if len(image_shape) >= 3 else 0
  if (config.rf_models or platform != "cpu" or spec.family != "conv" or pixels < 256
      or not (spec.pool or spec.readout == "gap")):
    return None
  return (f"the KRR evaluation uses the exact {config.kernel} kernel on a CPU, 0.04-0.25 s "
          "per kernel entry at 28x28 on 2 cores (hours for a full test set); --rf_models=8 "
          "--rf_width=32 evaluates with its random-feature estimate instead")


def krr_accuracy(kernel_fn, x_support, y_support, x, y, reg: float = 1e-6,
                 get: str = "ntk", block_size: int = 512) -> float:
  """KRR accuracy on `(x, y)` of the fit on `(x_support (n, ...), y_support (n, c))`."""
  return krr.evaluate(kernel_fn, x_support, y_support, x, y, reg=reg, get=get,
                      batch_size=block_size)["accuracy"]


MAX_MAGNITUDE = 1e6


def check_magnitude(values, what: str, limit: float = MAX_MAGNITUDE) -> None:
  """Refuses non-finite values or values beyond `limit` in magnitude.

  Preprocessed inputs and targets are O(1); values of 1e30 are finite in float32
  but their kernels overflow to inf, and a KRR fit on them is meaningless.

  Raises:
    ValueError: naming `what` and the largest magnitude.
  """
  largest = float(np.max(np.abs(np.asarray(values, np.float64)), initial=0.0))
  if not np.isfinite(largest):
    raise ValueError(f"{what} contain NaN or inf")
  if largest > limit:
    raise ValueError(f"{what} reach {largest:.3g} in magnitude (beyond {limit:g}): their kernel "
                     "overflows; give preprocessed (standardised) inputs")


def hard_labels(y_support, y_init=None) -> Optional[np.ndarray]:
  """Integer labels when `y_support` still equals the one-hot targets it started from.

  A natural or selected subset (and KIP with fixed labels) carries hard labels:
  finite networks then train with cross-entropy on the argmax. Learned labels
  (KIP, Label Solve) return None: they train with the protocol's soft loss.
  """
  y_support = np.asarray(y_support)
  if y_support.ndim == 1:
    return y_support.astype(np.int32)
  if y_init is not None and np.array_equal(y_support, np.asarray(y_init)):
    return np.argmax(y_support, axis=-1).astype(np.int32)
  return None


def evaluate_support(config: EvalConfig, x_support, y_support, x_test, y_test, *,
                     num_classes: int, labels=None, x_val=None, y_val=None) -> dict:
  """Evaluates one support set under `config` (see the module docstring).

  Args:
    config: an `EvalConfig`.
    x_support: `(n, ...)` inputs. y_support: `(n, c)` float targets (KRR fits
      them as they are).
    x_test: `(m, ...)`; y_test: `(m,)` integer test labels.
    num_classes: `c`.
    labels: `(n,)` integer labels when the set has hard labels (see
      `hard_labels`); None trains the networks on `y_support` as soft labels.
    x_val, y_val: held-out training examples for protocols that stop early.

  Returns:
    `{'krr': {...}, 'networks': {protocol: {...}}, 'slapknn': {...} or None,
    'support_size': n, 'label_kind': 'hard' | 'soft', 'seconds': ...}`.
  """
  from kernelcond.nets import protocols

  t0 = time.perf_counter()
  x_support = np.asarray(x_support, np.float32)
  y_support = np.asarray(y_support, np.float32)
  check_magnitude(x_support, "support inputs")
  check_magnitude(y_support, "support labels")
  check_magnitude(x_test, "test inputs")
  kernel_fn = config.kernel_fn()
  rf = {"rf_models": config.rf_models, "rf_width": config.rf_width} if config.rf_models else {}
  out = {"support_size": int(len(x_support)),
         "label_kind": "hard" if labels is not None else "soft",
         "krr": {"kernel": config.kernel, "kernel_type": config.kernel_type,
                 "backend": kernel_fn.backend, "reg": config.reg, **rf,
                 "accuracy": krr_accuracy(kernel_fn, x_support, y_support, x_test, y_test,
                                          config.reg, config.kernel_type, config.block_size)},
         "networks": {}, "slapknn": None}
  targets = np.asarray(labels, np.int32) if labels is not None else y_support
  for name in config.protocols:
    overrides = {"epochs": config.net_epochs} if config.net_epochs else {}
    protocol = protocols.get_protocol(name, **overrides)
    out["networks"][name] = protocols.evaluate_protocol(
        protocol, x_support, targets, x_test, y_test, num_classes=num_classes,
        seeds=config.net_seeds, x_val=x_val, y_val=y_val, spec=kernels.get_spec(config.kernel))
  if config.slapknn:
    from kernelcond import knn
    soft = y_support if labels is None else np.eye(num_classes, dtype=np.float32)[targets]
    out["slapknn"] = {"accuracy": knn.slapknn_accuracy(x_support, soft, x_test, y_test)}
  out["seconds"] = time.perf_counter() - t0
  return out


def summary_line(result: dict) -> str:
  """One line: KRR accuracy and each protocol's mean ± std (for printing by scripts)."""
  parts = [f"KRR {result['krr']['accuracy']:.4f}"]
  for name, r in result["networks"].items():
    parts.append(f"{name} {r['mean']:.4f} ± {r['std']:.4f} (n={len(r['accuracies'])})")
  if result.get("slapknn"):
    parts.append(f"SLaPkNN {result['slapknn']['accuracy']:.4f}")
  return " | ".join(parts)
