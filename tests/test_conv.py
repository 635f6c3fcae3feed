"""The im2col-tangent convolution equals lax's in value and in every derivative used."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond.nets import conv
from kernelcond.nets import models


def _inputs(shape=(3, 7, 6, 2), kernel=(3, 3, 2, 4), seed=0):
  kx, kw = jax.random.split(jax.random.PRNGKey(seed))
  return jax.random.normal(kx, shape), jax.random.normal(kw, kernel)


@pytest.mark.parametrize("kernel", [(3, 3, 2, 4), (1, 1, 2, 4), (5, 3, 2, 1)])
def test_im2col_equals_lax_convolution(kernel):
  x, w = _inputs(kernel=kernel)
  np.testing.assert_allclose(conv.conv_im2col(x, w), conv.conv_lax(x, w), atol=1e-5)
  np.testing.assert_allclose(conv.conv_same(x, w), conv.conv_lax(x, w), atol=1e-5)


def test_first_second_and_forward_derivatives_match_lax():
  x, w = _inputs()

  def loss(fn):
    return lambda x, w: jnp.sum(jnp.tanh(fn(x, w)) ** 2)

  for argnum in (0, 1):
    np.testing.assert_allclose(jax.grad(loss(conv.conv_same), argnum)(x, w),
                               jax.grad(loss(conv.conv_lax), argnum)(x, w), atol=1e-4)

  # DC's quantity: the input gradient of a function of the kernel gradient.
  def matched(fn):
    g = lambda x: jax.grad(loss(fn), 1)(x, w)
    return jax.grad(lambda x: jnp.sum(g(x) * jnp.arange(g(x).size).reshape(g(x).shape)))(x)

  np.testing.assert_allclose(matched(conv.conv_same), matched(conv.conv_lax), atol=1e-3)
  dx, dw = _inputs(seed=1)
  np.testing.assert_allclose(jax.jvp(conv.conv_same, (x, w), (dx, dw))[1],
                             jax.jvp(conv.conv_lax, (x, w), (dx, dw))[1], atol=1e-4)


def test_convnet_impls_share_parameters_and_gradients():
  x = jax.random.normal(jax.random.PRNGKey(2), (4, 12, 12, 1))
  nets = [models.ConvNet(num_classes=3, width=4, depth=2, conv_impl=impl)
          for impl in ("lax", "im2col_grad")]
  params = [net.init(jax.random.PRNGKey(3), x)["params"] for net in nets]
  for a, b in zip(jax.tree_util.tree_leaves(params[0]), jax.tree_util.tree_leaves(params[1])):
    np.testing.assert_array_equal(a, b)

  def grads(net):
    return jax.grad(lambda p: jnp.sum(net.apply({"params": p}, x) ** 2))(params[0])

  for a, b in zip(jax.tree_util.tree_leaves(grads(nets[0])),
                  jax.tree_util.tree_leaves(grads(nets[1]))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_impl_and_even_kernel_are_named():
  with pytest.raises(ValueError, match="conv_impl"):
    conv.resolve_impl("cudnn")
  with pytest.raises(ValueError, match="odd kernel"):
    conv.Conv(2, (2, 2)).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1)))
  assert conv.resolve_impl("auto") in ("lax", "im2col_grad")
