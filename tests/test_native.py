"""Native kernel backend: equality with neural-tangents, gradients, numerics.

Tests that compare with neural-tangents skip where it does not import (current
JAX); the rest run in both environments.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import kernels
from kernelcond import krr
from kernelcond.kernels import native


@pytest.fixture
def x64():
  """Enables float64 for one test and restores the previous setting."""
  previous = bool(jax.config.jax_enable_x64)
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", previous)


def _inputs(spec, n, seed, conv_shape=(8, 8, 2), fc_dim=10):
  shape = conv_shape if spec.family == "conv" else (fc_dim,)
  return np.random.default_rng(seed).standard_normal((n,) + shape)


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


# Every named spec with a closed-form kernel (instance-norm specs have none), plus
# variants of activation, parameterisation, biases, pooling and readout, at depths 1 to 3.
_VARIANTS = [n for n in kernels.NAMED_SPECS if kernels.NAMED_SPECS.get(n).norm == "none"] + [
    "fc1:activation=erf,b_std=0",
    "fc2:parameterization=standard",
    "fc3:activation=erf,parameterization=standard,b_std=0",
    "conv1:activation=erf,parameterization=standard",
    "conv1:pool=false",
    "conv2:pool=false,readout=gap,parameterization=standard",
    "conv2:b_std=0,activation=erf,readout=gap",
    "conv3:pool=false,parameterization=standard,b_std=0",
]


@pytest.mark.nt
@pytest.mark.parametrize("name", _VARIANTS)
def test_matches_neural_tangents(name, x64):
  pytest.importorskip("neural_tangents")
  spec = kernels.get_spec(name)
  x1, x2 = _inputs(spec, 3, 0), _inputs(spec, 4, 1)
  nt = kernels.make_kernel_fn(spec, "nt")(x1, x2, ("nngp", "ntk"))
  ours = kernels.make_kernel_fn(spec, "native")(x1, x2, ("nngp", "ntk"))
  for kind, a, b in zip(("nngp", "ntk"), ours, nt):
    assert a.dtype == jnp.float64
    assert _rel(a, b) < 1e-5, (name, kind, _rel(a, b))


def _krr_loss_grad(kernel_fn, x_support, y_support, x_target, y_target):
  def loss(xs):
    preds = krr.predict(kernel_fn(x_target, xs), kernel_fn(xs, xs), y_support, 1e-2)
    return jnp.mean((preds - y_target) ** 2)
  return np.asarray(jax.jit(jax.grad(loss))(x_support))


def _support_problem(spec, seed=0):
  rng = np.random.default_rng(seed)
  x_support = _inputs(spec, 4, seed, conv_shape=(6, 6, 2))
  x_support[1] = 0.0  # a zero-norm support input
  if spec.family == "conv":
    x_support[2, :3] = 0.0  # an all-zero image region
  x_target = _inputs(spec, 5, seed + 1, conv_shape=(6, 6, 2))
  return x_support, rng.standard_normal((4, 2)), x_target, rng.standard_normal((5, 2))


@pytest.mark.nt
@pytest.mark.parametrize("name", ["fc3:b_std=0", "fc2:activation=erf",
                                  "conv1:b_std=0", "conv1:readout=gap,parameterization=standard"])
def test_krr_gradients_match_neural_tangents(name, x64):
  pytest.importorskip("neural_tangents")
  spec = kernels.get_spec(name)
  problem = _support_problem(spec)
  ours = _krr_loss_grad(kernels.make_kernel_fn(spec, "native"), *problem)
  theirs = _krr_loss_grad(kernels.make_kernel_fn(spec, "nt"), *problem)
  assert np.all(np.isfinite(ours))
  assert _rel(ours, theirs) < 1e-5


@pytest.mark.parametrize("name", ["fc3:b_std=0", "fc2:activation=erf", "conv1:b_std=0",
                                  "conv1:pool=false,b_std=0"])
def test_gradients_finite_at_zero_and_repeated_inputs(name):
  spec = kernels.get_spec(name)
  x_support, y_support, x_target, y_target = _support_problem(spec)
  x_target[0] = x_support[0]  # identical rows: the arc-cosine kernel's cone
  grad = _krr_loss_grad(kernels.make_kernel_fn(spec, "native"), x_support, y_support,
                        x_target.astype(np.float32), y_target)
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  # Direct derivative of one kernel entry at a zero input as well.
  kfn = native.kernel_fn(spec)
  x = jnp.asarray(x_support, jnp.float32)
  if spec.family == "fc":
    x = x.reshape(len(x), -1)
  g = jax.grad(lambda a: kfn(a, a, "ntk").sum())(x)
  assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("name", ["fc3", "fc1:activation=erf,parameterization=standard",
                                  "conv2", "conv1:pool=false", "conv2:readout=gap,activation=erf"])
def test_symmetric_psd_and_jit(name):
  spec = kernels.get_spec(name)
  kfn = kernels.make_kernel_fn(spec, "native")
  x = _inputs(spec, 6, 3).astype(np.float32)
  eager = kfn(x, x, ("nngp", "ntk"))
  jitted = jax.jit(lambda a: kfn(a, a, ("nngp", "ntk")))(x)
  for k, kj in zip(eager, jitted):
    k = np.asarray(k, np.float64)
    np.testing.assert_allclose(k, k.T, rtol=1e-5, atol=1e-6 * np.abs(k).max())
    evals = np.linalg.eigvalsh((k + k.T) / 2)
    assert evals.min() >= -1e-5 * evals.max()
    np.testing.assert_allclose(np.asarray(kj), k, rtol=1e-5, atol=1e-6 * np.abs(k).max())


def test_tuple_get_order_and_single_kinds():
  spec = kernels.get_spec("conv1")
  kfn = native.kernel_fn(spec)
  x1, x2 = (jnp.asarray(_inputs(spec, n, s), jnp.float32) for n, s in ((2, 0), (3, 1)))
  ntk, nngp = kfn(x1, x2, ("ntk", "nngp"))
  assert ntk.shape == nngp.shape == (2, 3)
  np.testing.assert_allclose(kfn(x1, x2, "nngp"), nngp, rtol=1e-6)
  np.testing.assert_allclose(kfn(x1, x2, "ntk"), ntk, rtol=1e-6)
  assert not np.allclose(ntk, nngp)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="FC kernels need"):
    native.kernel_fn(kernels.get_spec("fc1"))(jnp.ones((2, 3, 3)), jnp.ones((2, 9)), "ntk")
  with pytest.raises(ValueError, match="conv kernels need"):
    native.kernel_fn(kernels.get_spec("conv1"))(jnp.ones((2, 4, 4, 1)), jnp.ones((2, 5, 4, 1)))
  with pytest.raises(ValueError, match="valid: nngp, ntk"):
    native.kernel_fn(kernels.get_spec("fc1"))(jnp.ones((2, 3)), jnp.ones((2, 3)), "cov")


@pytest.mark.parametrize("name,check_grad", [("conv2", False),
                                             ("conv1:readout=gap,activation=erf", True)])
def test_chunked_conv_matches_one_chunk(name, check_grad):
  """Bounding memory (row and column blocks under nested lax.maps) changes nothing,
  gradients with respect to both arguments included."""
  spec = kernels.get_spec(name)
  x1 = jnp.asarray(_inputs(spec, 5, 0, conv_shape=(6, 6, 1)), jnp.float32)
  x2 = jnp.asarray(_inputs(spec, 3, 1, conv_shape=(6, 6, 1)), jnp.float32)
  whole = native.kernel_fn(spec)
  # (rows, cols) blocks: (2, 3) rows only; (1, 2) both axes, padded.
  for max_elements, plan in ((6 * 6 ** 4, (2, 3)), (2 * 6 ** 4, (1, 2))):
    assert native.block_plan(5, 3, 6, 6, max_elements)[:2] == plan
    chunked = native.kernel_fn(spec, max_elements=max_elements)
    for a, b in zip(whole(x1, x2, ("nngp", "ntk")), chunked(x1, x2, ("nngp", "ntk"))):
      np.testing.assert_allclose(b, a, rtol=1e-5)
    if not check_grad:
      continue
    loss = lambda f: (lambda a, b: jnp.sum(f(a, b, "ntk") ** 2))
    for got, want in zip(jax.grad(loss(chunked), (0, 1))(x1, x2),
                         jax.grad(loss(whole), (0, 1))(x1, x2)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_block_plan_bounds_every_block():
  """Columns are blocked first, then rows; a block exceeds the bound only if one pair does."""
  hw2 = (8 * 8) ** 2
  for n1, n2, max_elements in ((100, 10, 2 ** 25), (100, 10, 25 * hw2), (100, 10, 7 * hw2),
                               (5000, 100, 2 ** 20), (3, 4, hw2 // 2)):
    plan = native.block_plan(n1, n2, 8, 8, max_elements)
    assert 1 <= plan.rows <= n1 and 1 <= plan.cols <= n2
    assert plan.elements == plan.rows * plan.cols * hw2
    assert plan.elements <= max(max_elements, hw2)
    assert plan.variance_rows * hw2 <= max(max_elements, hw2)
    if plan.cols < n2:  # columns are only split when one row of blocks would not fit
      assert plan.rows == 1 and (plan.cols + 1) * hw2 > max_elements
  assert native.block_plan(100, 10, 8, 8, 25 * hw2)[:2] == (2, 10)
  assert native.block_plan(100, 10, 8, 8, 7 * hw2)[:2] == (1, 7)
  assert native.max_elements_for(4096) == 2 ** 25  # the default block is a 4 GiB budget


def test_kip_gradient_memory_stays_under_the_budget():
  """XLA's compiled memory of a KIP step's value_and_grad on a pooled ConvNet kernel stays
  under `kernel_memory_mib`; without blocking the same step needs far more."""
  from kernelcond.condense import kip
  spec = kernels.get_spec("conv3")
  rng = np.random.default_rng(0)
  x_t = jnp.asarray(rng.standard_normal((24, 8, 8, 1)), jnp.float32)
  y_t = jax.nn.one_hot(jnp.arange(24) % 10, 10)
  params = {"x_support": jnp.asarray(rng.standard_normal((10, 8, 8, 1)), jnp.float32),
            "y_support": jax.nn.one_hot(jnp.arange(10), 10)}

  def temp_mib(memory_mib):
    kernel_fn = kernels.make_kernel_fn(spec, "native", memory_mib)
    step = jax.jit(jax.value_and_grad(lambda p: kip.loss_fn(p, x_t, y_t, kernel_fn)))
    stats = step.lower(params).compile().memory_analysis()
    return stats.temp_size_in_bytes / 2 ** 20

  unblocked = temp_mib(4096.0)  # one block of 24 x 10 pairs
  if unblocked == 0:  # jaxlib 0.4.23's CPU compiler reports no temp memory; block shapes
    pytest.skip("this jaxlib reports no compiled temp memory on CPU")  # are tested above
  assert unblocked > 8.0  # the bound below is what blocking buys
  assert temp_mib(2.0) <= 2.0


def test_float32_close_to_float64(x64):
  """The float32 path (polynomial atan2) agrees with the float64 path (jnp.arctan2)."""
  for name in ("fc3", "conv1:activation=erf,readout=gap"):
    spec = kernels.get_spec(name)
    kfn = native.kernel_fn(spec)
    x1, x2 = _inputs(spec, 4, 0), _inputs(spec, 5, 1)
    if spec.family == "fc":
      x1, x2 = x1.reshape(4, -1), x2.reshape(5, -1)
    ref = kfn(jnp.asarray(x1), jnp.asarray(x2), ("nngp", "ntk"))
    low = kfn(jnp.asarray(x1, jnp.float32), jnp.asarray(x2, jnp.float32), ("nngp", "ntk"))
    for a, b in zip(low, ref):
      assert a.dtype == jnp.float32 and b.dtype == jnp.float64
      assert _rel(a, b) < 1e-5


def test_fast_arctan2_matches_numpy():
  rng = np.random.default_rng(0)
  scale = lambda n: 10.0 ** rng.uniform(-6, 6, n)
  y = (rng.standard_normal(20000) * scale(20000)).astype(np.float32)
  x = (rng.standard_normal(20000) * scale(20000)).astype(np.float32)
  y[:6] = [0, 0, 1, -1, 1, -1]
  x[:6] = [1, -1, 0, 0, 1, -1]
  ours = np.asarray(native._arctan2_fast(jnp.asarray(y), jnp.asarray(x)))
  np.testing.assert_allclose(ours, np.arctan2(y.astype(np.float64), x), rtol=0, atol=5e-7)


def test_safe_primitives_values_and_derivatives():
  zero = jnp.zeros(())
  assert float(native._safe_arctan2(zero, zero)) == pytest.approx(np.pi / 2)
  assert float(jax.grad(native._safe_sqrt)(zero)) == 0.0
  gy, gx = jax.grad(native._safe_arctan2, argnums=(0, 1))(zero, zero)
  assert np.isfinite(float(gy)) and np.isfinite(float(gx))
  # Away from the singular points the derivatives are the usual ones.
  assert float(jax.grad(native._safe_sqrt)(jnp.float32(4.0))) == pytest.approx(0.25)
  gy, gx = jax.grad(native._safe_arctan2, argnums=(0, 1))(jnp.float32(1.0), jnp.float32(2.0))
  assert (float(gy), float(gx)) == pytest.approx((2 / 5, -1 / 5), rel=1e-6)
  # The ReLU cone: rounding-level gaps count as the exact 0 of identical inputs.
  one = jnp.float32(1.0)
  assert float(native._cone_sqrt(jnp.float32(1e-7), one)) == 0.0
  assert float(jax.grad(native._cone_sqrt)(jnp.float32(1e-7), one)) == 0.0
  assert float(native._cone_sqrt(jnp.float32(0.25), one)) == pytest.approx(0.5)
  assert float(jax.grad(native._cone_sqrt)(jnp.float32(0.25), one)) == pytest.approx(1.0)
