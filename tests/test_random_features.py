"""Random-feature kernels (RFAD, arXiv:2210.12067) against the exact native kernels.

The random-feature kernel is an average over random finite networks
(`kernels.finite`); the native kernel is a closed-form layer recursion. They
share no code, so agreement that improves as width * n_models grows checks both.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import kernels
from kernelcond.kernels import finite


def _images(n, shape, seed):
  return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def _rel_frobenius(estimate, exact):
  exact = np.asarray(exact, np.float64)
  return float(np.linalg.norm(np.asarray(estimate, np.float64) - exact) / np.linalg.norm(exact))


@pytest.mark.parametrize("name,shape", [("fc2", (3, 3, 1)), ("conv2", (6, 6, 2)),
                                        ("conv1:readout=gap,parameterization=standard", (4, 4, 1))])
def test_feature_products_equal_kernel_fn(name, shape):
  """Concatenated features (one matmul) == per-network contraction in kernel_fn."""
  key = jax.random.PRNGKey(3)
  x = _images(7, shape, 0)  # x1 = x[:3], x2 = x[3:]
  kernel_fn = kernels.make_random_kernel_fn(name, n_models=3, width=8, key=key)
  both = kernel_fn(x[:3], x[3:], ("nngp", "ntk"))
  for kind, k in zip(("nngp", "ntk"), both):
    f = kernels.random_feature_fn(name, n_models=3, width=8, get=kind)(key, x)
    np.testing.assert_allclose(f[:3] @ f[3:].T, k, rtol=2e-5, atol=1e-6 * np.abs(k).max())


def test_feature_dimensions():
  x = _images(2, (8, 8, 1), 0)
  key = jax.random.PRNGKey(0)
  shape = lambda name, kind: jax.eval_shape(
      kernels.random_feature_fn(name, 2, 4, get=kind), key, x).shape
  # conv3 pools 8x8 to 1x1: readout fan-in = width = 4, plus one bias entry, per network.
  assert shape("conv3", "nngp") == (2, 2 * (4 + 1))
  assert shape("conv3:b_std=0", "nngp") == (2, 2 * 4)
  # NTK features: every parameter of each network (3x3 convs 1->4->4->4, readout 4->1).
  params = 9 * 4 + 4 + 2 * (9 * 16 + 4) + 4 + 1
  assert shape("conv3", "ntk") == (2, 2 * params)


@pytest.mark.parametrize("name,shape", [("conv3", (8, 8, 1)), ("fc3", (16,))])
def test_error_to_exact_kernel_shrinks_as_width_times_models_grows(name, shape):
  """Relative Frobenius error of the NNGP and NTK estimates at M x width = 16, 256, 4096.

  Each step multiplies M * width by 16, so the O(1/sqrt(M width)) error should fall ~4x.
  Observed (fixed keys): conv3 NNGP 1.5 / 0.06 / 0.035, NTK 1.6 / 0.05 / 0.028;
  fc3 NNGP 0.58 / 0.15 / 0.050, NTK 0.78 / 0.32 / 0.057.
  """
  x = _images(6, shape, 0)
  # 'ntk' parameterisation: the exact kernels do not depend on the width.
  exact = kernels.make_kernel_fn(name, "native")(x, None, ("nngp", "ntk"))
  errors = []
  for n_models, width in ((1, 16), (4, 64), (16, 256)):
    kernel_fn = kernels.make_random_kernel_fn(name, n_models, width, jax.random.PRNGKey(1))
    estimate = kernel_fn(x, None, ("nngp", "ntk"))
    errors.append([_rel_frobenius(e, k) for e, k in zip(estimate, exact)])
  errors = np.array(errors)  # (sizes, kinds)
  assert np.all(errors[:-1] > errors[1:]), errors
  assert np.all(errors[-1] < 0.1), errors


@pytest.mark.parametrize("name,shape,n_models,width,tol", [
    ("fc1:b_std=1", (10,), 128, 1024, 0.02),
    ("conv1:readout=gap", (8, 8, 1), 64, 256, 0.01),
])
def test_one_hidden_layer_nngp_has_no_width_bias(name, shape, n_models, width, tol):
  """With one hidden layer the NNGP estimator is unbiased: many features, a tight match.

  Observed 0.008 (fc1, 131k features) and 0.002 (conv1, pooled over positions).
  """
  x = _images(5, shape, 2)
  kernel_fn = kernels.make_random_kernel_fn(name, n_models, width, jax.random.PRNGKey(0))
  exact = kernels.make_kernel_fn(name, "native")(x, None, "nngp")
  assert _rel_frobenius(kernel_fn(x, None, "nngp"), exact) < tol


def test_key_fixes_the_networks_and_x2_none_means_x1():
  x1, x2 = _images(3, (6, 6, 1), 0), _images(2, (6, 6, 1), 1)
  make = lambda seed: kernels.make_random_kernel_fn("conv2", 2, 8, jax.random.PRNGKey(seed))
  a, b, other = make(0), make(0), make(1)
  np.testing.assert_array_equal(a(x1, x2, "nngp"), b(x1, x2, "nngp"))
  assert not np.allclose(a(x1, x2, "nngp"), other(x1, x2, "nngp"))
  # x2=None (features computed once) == an equal but distinct x2 array.
  both = ("nngp", "ntk")
  for once, twice in zip(a(x1, None, both), a(x1, x1.copy(), both)):
    np.testing.assert_allclose(once, twice, rtol=1e-6)
  assert (a.backend, a.n_models, a.spec.width) == ("random_features", 2, 8)


def test_usable_as_a_kernel_blocks_and_gradients():
  kernel_fn = kernels.make_random_kernel_fn("conv1", 2, 8, jax.random.PRNGKey(0))
  x1, x2 = _images(5, (6, 6, 1), 0), _images(3, (6, 6, 1), 1)
  direct = kernel_fn(x1, x2, ("nngp", "ntk"))
  # Blocks under pmap (i.e. traced inside another compiled function).
  blocked = kernels.kernel_matrix(kernel_fn, x1, x2, ("nngp", "ntk"), batch_size=2, n_devices=2)
  for d, b in zip(direct, blocked):
    np.testing.assert_allclose(b, d, rtol=1e-5, atol=1e-6 * np.abs(d).max())
  # KIP differentiates the kernel w.r.t. the support images (x1 on both sides).
  for kind in ("nngp", "ntk"):
    grad = jax.grad(lambda a: jnp.sum(kernel_fn(a, None, kind) ** 2))(jnp.asarray(x1))
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_bad_arguments():
  with pytest.raises(ValueError, match="n_models"):
    kernels.make_random_kernel_fn("fc1", 0, 8)
  with pytest.raises(ValueError, match="valid: nngp, ntk"):
    kernels.random_feature_fn("fc1", 2, 8, get="cov")
  kernel_fn = kernels.make_random_kernel_fn("fc1", 1, 8)
  with pytest.raises(ValueError, match="Unknown kernel 'cov'"):
    kernel_fn(np.ones((2, 3)), None, "cov")
  with pytest.raises(ValueError, match=r"\(n, H, W, C\)"):
    kernels.make_random_kernel_fn("conv1", 1, 8)(np.ones((2, 16)))


@pytest.mark.parametrize("name,shape", [("conv2:pool=false,b_std=0", (5, 4, 2)),
                                        ("conv2:readout=gap,parameterization=standard", (6, 6, 1)),
                                        ("conv2:norm=instance", (4, 4, 1)),
                                        ("fc2:activation=erf", (7,))])
def test_per_example_grads_match_autodiff(name, shape):
  """Patch-based per-example gradients == jax.jacrev of the finite network."""
  spec = kernels.get_spec(name)
  x = jnp.asarray(_images(3, shape, 0))
  params = finite.init_params(spec, jax.random.PRNGKey(0), shape, 6, 1)
  ours = finite.per_example_grads(spec, params, x)
  theirs = jax.jacrev(lambda p: finite.apply(spec, p, x)[:, 0])(params)
  assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_instance_norm_networks_are_scale_invariant_and_have_no_exact_kernel():
  """conv3_in: every conv output is standardised per example and channel, so without
  biases the network (and its random-feature kernel) ignores the scale of each input."""
  spec = kernels.get_spec("conv3_in", b_std=0.0)
  x = jnp.asarray(_images(4, (8, 8, 1), 0))
  scale = jnp.asarray([0.5, 2.0, 7.0, 1.0]).reshape(4, 1, 1, 1)
  params = finite.init_params(spec, jax.random.PRNGKey(0), (8, 8, 1), 6, 2)
  np.testing.assert_allclose(finite.apply(spec, params, x * scale), finite.apply(spec, params, x),
                             rtol=1e-4, atol=1e-5)
  plain = kernels.get_spec("conv3", b_std=0.0)  # without the norm the outputs scale
  assert not np.allclose(finite.apply(plain, params, x * scale), finite.apply(plain, params, x),
                         rtol=1e-2)
  _, inputs = finite.forward(spec, params, x)  # layer 2's input: relu of standardised maps
  assert np.all(np.asarray(inputs[1]) >= 0)
  kernel_fn = kernels.make_random_kernel_fn(spec, 2, 6)
  np.testing.assert_allclose(kernel_fn(x * scale, None, "nngp"), kernel_fn(x, None, "nngp"),
                             rtol=1e-4, atol=1e-6)
  for make in (lambda: kernels.make_kernel_fn(spec, "native"),
               lambda: kernels.make_kernel_fn("conv3_in")):
    with pytest.raises(ValueError, match="no closed-form .*--rf_models"):
      make()
  with pytest.raises(ValueError, match="needs a 'conv' spec"):
    kernels.get_spec("fc2:norm=instance")
