"""Kernel specs, backends, blocked multi-device kernel matrices, and Monte-Carlo checks.

The Monte-Carlo tests compare the analytic infinite-width kernels with averages
over random initialisations of wide finite networks (`kernels.stax`: the finite
network of the same spec, layers and parameterisation), an independent
computation.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import kernels
from kernelcond.kernels import nt

BACKENDS = ["native"] + (["nt"] if kernels.neural_tangents_available() else [])


# ---------------------------------------------------------------------------
# Specs.


def test_get_spec_names_overrides_and_passthrough():
  spec = kernels.get_spec("fc3")
  assert spec == kernels.NAMED_SPECS.get("fc3")
  assert kernels.get_spec(spec) == spec
  spec = kernels.get_spec("fc3:W_std=sqrt(0.5),b_std=0.05,activation=erf,depth=2")
  assert (spec.W_std, spec.b_std, spec.activation, spec.depth) == (
      pytest.approx(math.sqrt(2) / 2), 0.05, "erf", 2)
  assert kernels.get_spec("conv2:pool=false,readout=gap").pool is False
  # Keyword overrides win over the string's; None keywords are ignored (unset flags).
  spec = kernels.get_spec("fc2:depth=4,b_std=0.3", depth=1, W_std=None)
  assert (spec.depth, spec.W_std, spec.b_std) == (1, kernels.NAMED_SPECS.get("fc2").W_std, 0.3)


def test_get_spec_unknown_name_lists_valid_names():
  with pytest.raises(ValueError) as err:
    kernels.get_spec("resnet18")
  for name in kernels.NAMED_SPECS:
    assert name in str(err.value)


@pytest.mark.parametrize("text,match", [
    ("fc3:W_std", "Bad kernel spec override"),
    ("fc3:colour=red", "Bad kernel spec override"),
    ("fc3:depth=three", "Bad value for depth"),
    ("fc3:depth=2.0", "Bad value for depth"),
    ("fc3:depth=2,depth=3", "given twice"),
    ("fc3:width=99999999999999999999", "Bad value for width.*out of range"),
    ("fc3:pool=maybe", "Bad value for pool"),
    ("fc3:activation=tanh", "valid: relu, erf"),
    ("fc3:parameterization=mup", "valid: ntk, standard"),
    ("conv1:depth=0", "depth >= 1"),
    ("fc1:W_std=0", "W_std > 0"),
])
def test_get_spec_bad_overrides(text, match):
  with pytest.raises(ValueError, match=match):
    kernels.get_spec(text)


def test_get_spec_unknown_keyword_field():
  with pytest.raises(ValueError, match="Unknown ArchSpec fields"):
    kernels.get_spec("fc1", colour="red")


@pytest.mark.parametrize("text,field,value", [
    ("W_std=1.4142", "W_std", 1.4142),
    ("W_std=sqrt( 2 )", "W_std", math.sqrt(2)),
    ("W_std=sqrt(2.25)", "W_std", 1.5),
    ("b_std=+.5e-1", "b_std", 0.05),
    ("b_std=0", "b_std", 0.0),
    ("W_std=3", "W_std", 3.0),
    ("depth=+4", "depth", 4),
    ("width= 16 ", "width", 16),
    ("pool=TRUE", "pool", True),
    ("pool=0", "pool", False),
    ("activation=erf", "activation", "erf"),
])
def test_get_spec_parses_literals_by_hand(text, field, value):
  spec = kernels.get_spec(f"conv1:{text}")
  assert getattr(spec, field) == pytest.approx(value)
  assert type(getattr(spec, field)) is type(value)


@pytest.mark.parametrize("value", [
    "10**400", "1e400", "-1e400", "inf", "-inf", "nan", "sqrt(1e400)", "sqrt(-2)",
    "sqrt(2)/2", "2*1", "1_000", "0x10", "__import__('os').getpid()", "", "sqrt()",
])
def test_get_spec_rejects_expressions_and_non_finite_values(value):
  text = f"fc3:W_std={value}"
  with pytest.raises(ValueError) as err:
    kernels.get_spec(text)
  message = str(err.value)
  assert "W_std" in message and repr(text) in message, message


@pytest.mark.parametrize("overrides", [dict(W_std=math.inf), dict(b_std=math.nan),
                                       dict(W_std=True), dict(width=0), dict(depth=1.5)])
def test_arch_spec_checks_keyword_values(overrides):
  with pytest.raises(ValueError):
    kernels.get_spec("fc3", **overrides)


# ---------------------------------------------------------------------------
# Backends.


def test_resolve_backend(monkeypatch):
  assert kernels.resolve_backend("native") == "native"
  with pytest.raises(ValueError, match="valid: auto, nt, native"):
    kernels.resolve_backend("torch")
  monkeypatch.setattr(nt, "neural_tangents_available", lambda: False)
  assert kernels.resolve_backend("auto") == "native"
  with pytest.raises(ImportError, match="neural-tangents"):
    kernels.resolve_backend("nt")
  with pytest.raises(ImportError, match="native"):
    kernels.make_kernel_fn("fc1", "nt")
  monkeypatch.setattr(nt, "neural_tangents_available", lambda: True)
  assert kernels.resolve_backend("auto") == "nt"
  # With a spec, 'auto' takes the faster backend: native for FC, nt for conv.
  assert kernels.resolve_backend("auto", "fc3") == "native"
  assert kernels.resolve_backend("auto", "conv2") == "nt"
  assert kernels.resolve_backend("nt", "fc3") == "nt"
  assert kernels.make_kernel_fn("fc1", "auto").backend == "native"


def test_make_kernel_fn_checks_get_and_shapes():
  kfn = kernels.make_kernel_fn("fc1", "native")
  assert (kfn.spec, kfn.backend) == (kernels.get_spec("fc1"), "native")
  with pytest.raises(ValueError, match="Unknown kernel 'cov'"):
    kfn(np.ones((2, 3)), None, "cov")
  with pytest.raises(ValueError, match=r"\(n, H, W, C\)"):
    kernels.make_kernel_fn("conv1", "native")(np.ones((2, 16)))
  # FC specs flatten images; x2=None means x2=x1.
  x = np.random.default_rng(0).standard_normal((3, 4, 4, 1)).astype(np.float32)
  np.testing.assert_allclose(kfn(x), kfn(x.reshape(3, 16), x.reshape(3, 16)), rtol=1e-6)


# ---------------------------------------------------------------------------
# Blocked, multi-device kernel matrices.


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,shape", [("fc2", (3, 3, 2)), ("conv1", (4, 4, 1))])
def test_kernel_matrix_blocks_and_devices(backend, name, shape):
  kfn = kernels.make_kernel_fn(name, backend)
  rng = np.random.default_rng(1)
  block = 4
  n1, n2 = 2 * block + 1, 2 * block - 1  # N +- 1: neither divides the blocks
  x1 = rng.standard_normal((n1,) + shape).astype(np.float32)
  x2 = rng.standard_normal((n2,) + shape).astype(np.float32)
  direct = [np.asarray(k) for k in kfn(x1, x2, ("nngp", "ntk"))]
  for n_devices in (1, 4):
    blocked = kernels.kernel_matrix(kfn, x1, x2, ("nngp", "ntk"), block, n_devices)
    assert isinstance(blocked, tuple) and len(blocked) == 2
    for b, d in zip(blocked, direct):
      assert b.shape == (n1, n2)
      np.testing.assert_allclose(b, d, rtol=1e-5, atol=1e-6 * np.abs(d).max())
  one = kernels.kernel_matrix(kfn, x1, None, "nngp", block, 4)
  np.testing.assert_allclose(one, np.asarray(kfn(x1, x1, "nngp")), rtol=1e-5,
                             atol=1e-6 * np.abs(one).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["fc3", "conv2:readout=gap"])
def test_symmetric_and_psd(backend, name):
  kfn = kernels.make_kernel_fn(name, backend)
  x = np.random.default_rng(2).standard_normal((7, 4, 4, 2)).astype(np.float32)
  for k in kernels.kernel_matrix(kfn, x, None, ("nngp", "ntk"), batch_size=4):
    k = np.asarray(k, np.float64)
    np.testing.assert_allclose(k, k.T, rtol=1e-5, atol=1e-6 * np.abs(k).max())
    evals = np.linalg.eigvalsh((k + k.T) / 2)
    assert evals.min() >= -1e-5 * evals.max()


# ---------------------------------------------------------------------------
# Analytic kernels against wide finite networks (Monte Carlo).
#
# Tolerance: the empirical NNGP / NTK of one random network of width n fluctuates
# around its limit by O(1/sqrt(n)) (e.g. Hanin & Nica, arXiv:1909.05989); averaging
# S independent inits shrinks this to O(1/sqrt(n S)), plus a finite-width bias
# O(1/n). With n = 1024 (FC) or 256 (conv channels) and the seeds below, the
# observed relative Frobenius errors are 0.01-0.045 (fixed seeds, deterministic),
# so 0.1 leaves margin while a wrong layer rule (ReLU's 1/2, the NTK's W_std^2
# or fan-in scaling, pooling or readout normalisation) moves the kernel by far
# more than 10%.

_MC_TOL = 0.1


def _mc_nngp(init_fn, apply_fn, x, n_inits, out_dim):
  """Mean over `n_inits` random inits and `out_dim` readout units of f(x1) f(x2)."""

  @jax.jit
  def nngp(keys):
    def one(key):
      f = apply_fn(init_fn(key, x.shape[1:]), x)
      return f @ f.T / out_dim
    return jax.lax.map(one, keys).mean(0)

  return np.asarray(nngp(jax.random.split(jax.random.PRNGKey(0), n_inits)))


def _mc_ntk(init_fn, apply_fn, x, n_inits):
  """Mean over `n_inits` random inits of the parameter-Jacobian Gram matrix J J^T."""

  @jax.jit
  def ntk(keys):
    def one(key):
      params = init_fn(key, x.shape[1:])
      jac = jax.jacrev(lambda p: apply_fn(p, x)[:, 0])(params)
      flat = [j.reshape(x.shape[0], -1) for j in jax.tree_util.tree_leaves(jac)]
      return sum(j @ j.T for j in flat)
    return jax.lax.map(one, keys).mean(0)

  return np.asarray(ntk(jax.random.split(jax.random.PRNGKey(1), n_inits)))


def _rel_frobenius(estimate, exact):
  exact = np.asarray(exact, np.float64)
  return float(np.linalg.norm(np.asarray(estimate, np.float64) - exact) / np.linalg.norm(exact))


@pytest.mark.parametrize("name,shape", [
    ("fc2", (8,)),
    ("fc2:activation=erf,parameterization=standard", (8,)),
    ("conv2:readout=gap,parameterization=standard,width=256", (6, 6, 1)),
])
def test_stax_kernels_match_its_wide_networks(name, shape):
  """`stax`'s finite network (width spec.width) and kernel_fn describe one model."""
  x = jnp.asarray(np.random.default_rng(0).standard_normal((5,) + shape), jnp.float32)
  init_many, apply_many, kernel_fn = kernels.stax(name, "native", out_dim=2048)
  init_one, apply_one, _ = kernels.stax(name, "native")
  nngp, ntk = kernel_fn(x, None, ("nngp", "ntk"))
  rel_nngp = _rel_frobenius(_mc_nngp(init_many, apply_many, x, 8, 2048), nngp)
  rel_ntk = _rel_frobenius(_mc_ntk(init_one, apply_one, x, 6), ntk)
  assert rel_nngp < _MC_TOL and rel_ntk < _MC_TOL, (name, rel_nngp, rel_ntk)


def test_stax_empirical_nngp_approaches_kernel_with_width():
  """Monte-Carlo NNGP of stax's fc3 network: the error to kernel_fn shrinks as width grows.

  Observed errors 0.53, 0.084, 0.047 (widths 8, 128, 2048; 8 inits, 256 readouts).
  """
  x = jnp.asarray(np.random.default_rng(1).standard_normal((5, 8)), jnp.float32)
  errors = []
  for width in (8, 128, 2048):
    init_fn, apply_fn, kernel_fn = kernels.stax(f"fc3:width={width}", "native", out_dim=256)
    errors.append(_rel_frobenius(_mc_nngp(init_fn, apply_fn, x, 8, 256), kernel_fn(x, None, "nngp")))
  assert errors[0] > errors[1] > errors[2], errors
  assert errors[2] < _MC_TOL, errors


def test_stax_uses_spec_width_and_backend():
  init_fn, apply_fn, kernel_fn = kernels.stax("conv1:width=5,pool=false", "native", out_dim=3)
  params = init_fn(jax.random.PRNGKey(0), (4, 4, 2))
  assert params[0][0].shape == (3, 3, 2, 5) and params[-1][0].shape == (4 * 4 * 5, 3)
  assert apply_fn(params, jnp.ones((2, 4, 4, 2))).shape == (2, 3)
  assert (kernel_fn.spec.width, kernel_fn.backend) == (5, "native")


def test_finite_network_shapes_and_parameterisation():
  x = jnp.ones((2, 6, 6, 3))
  for spec in (kernels.get_spec("conv2"), kernels.get_spec("conv1:readout=gap,pool=false")):
    init_fn, apply_fn = kernels.init_and_apply(spec, width=8, out_dim=3)
    params = init_fn(jax.random.PRNGKey(0), x.shape[1:])
    assert apply_fn(params, x).shape == (2, 3)
  # Standard parameterisation scales weights at init; NTK parameterisation in apply.
  std_init, _ = kernels.init_and_apply(kernels.get_spec("fc1:parameterization=standard"), 4096)
  ntk_init, _ = kernels.init_and_apply(kernels.get_spec("fc1"), 4096)
  w_std = std_init(jax.random.PRNGKey(0), (100,))[0][0]
  w_ntk = ntk_init(jax.random.PRNGKey(0), (100,))[0][0]
  assert float(jnp.std(w_ntk)) == pytest.approx(1.0, rel=0.02)
  assert float(jnp.std(w_std)) == pytest.approx(math.sqrt(2) / 10, rel=0.02)
