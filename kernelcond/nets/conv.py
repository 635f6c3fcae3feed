"""A stride-1 'SAME' convolution whose derivatives stay fast inside XLA:CPU loops.

Every condensation method runs its updates inside `lax.fori_loop` / `lax.scan`
(`condense.loop`, DC's inner training, DD's unrolled steps). On XLA:CPU the
derivative convolutions of `lax.conv_general_dilated` (the kernel gradient and
the input gradient) are much slower inside a loop body than outside one, while
the forward convolution is not. Measured on 2 CPU cores (jax 0.10.2 and
0.4.23 alike), inputs (100, 16, 16, 32), a 3x3x32x32 kernel, ten evaluations:

  ===================  =========  ============  ==========================
  derivative           unrolled   fori_loop     fori_loop, this module
  ===================  =========  ============  ==========================
  kernel gradient      85 ms      7391 ms       84 ms
  input gradient       26 ms      1037 ms       101 ms
  ===================  =========  ============  ==========================

`conv_same` keeps the fast forward convolution and defines its tangent with
the im2col form instead: `dy = cols(dx) @ W + cols(x) @ dW`, where
`cols(x)[n, h, w, (a, b, c)] = pad(x)[n, h + a, w + b, c]` is made of pads and
slices. JAX transposes that tangent into dots and pads for reverse mode, so
first and second derivatives (gradient matching, unrolled distillation) run
as matrix products in any loop, and forward mode (`jax.jvp`) works too.
`Conv` is the flax layer; `ConvNet(conv_impl=...)` chooses it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from jax.custom_derivatives import SymbolicZero
import jax.numpy as jnp

IMPLS = ("auto", "lax", "im2col_grad")
_DIMS = ("NHWC", "HWIO", "NHWC")


def cols(x: jax.Array, kh: int, kw: int) -> jax.Array:
  """`(n, H, W, c) -> (n, H, W, kh * kw * c)` patches of a 'SAME' stride-1 window.

  The last axis is ordered `(a, b, c)`, matching `w.reshape(kh * kw * c, out)`
  of an HWIO kernel.
  """
  ph, pw = kh // 2, kw // 2
  xp = jnp.pad(x, ((0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)))
  h, w = x.shape[1], x.shape[2]
  return jnp.concatenate([xp[:, a:a + h, b:b + w, :] for a in range(kh) for b in range(kw)],
                         axis=-1)


def conv_im2col(x: jax.Array, w: jax.Array) -> jax.Array:
  """The 'SAME' stride-1 convolution as patches times the flattened kernel."""
  kh, kw, c, out = w.shape
  return jnp.dot(cols(x, kh, kw), jnp.reshape(w, (kh * kw * c, out)))


def conv_lax(x: jax.Array, w: jax.Array, precision=None) -> jax.Array:
  """`lax.conv_general_dilated` with 'SAME' padding and stride 1, NHWC / HWIO."""
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DIMS,
                                      precision=precision)


@jax.custom_jvp
def conv_same(x: jax.Array, w: jax.Array) -> jax.Array:
  """`conv_lax(x, w)` with the im2col tangent (module docstring)."""
  return conv_lax(x, w)


def _conv_same_jvp(primals, tangents):
  x, w = primals
  dx, dw = tangents
  y = conv_same(x, w)
  terms = []
  if not isinstance(dx, SymbolicZero):
    terms.append(conv_im2col(dx, w))
  if not isinstance(dw, SymbolicZero):
    terms.append(conv_im2col(x, dw))
  return y, sum(terms) if terms else jnp.zeros_like(y)


conv_same.defjvp(_conv_same_jvp, symbolic_zeros=True)


def resolve_impl(impl: str) -> str:
  """'auto' is 'im2col_grad' on CPU (the table above) and 'lax' elsewhere."""
  if impl not in IMPLS:
    raise ValueError(f"Unknown conv_impl {impl!r}; valid: {', '.join(IMPLS)}")
  if impl == "auto":
    return "im2col_grad" if jax.default_backend() == "cpu" else "lax"
  return impl


class Conv(nn.Module):
  """Odd-sized stride-1 'SAME' convolution with bias, parameters as `nn.Conv`'s.

  The parameters ('kernel' `(kh, kw, in, features)` LeCun-normal, 'bias'
  zeros) are named, shaped and initialised like `flax.linen.Conv`'s, so the
  same key gives the same network either way.

  Attributes:
    features: output channels.
    kernel_size: `(kh, kw)`, both odd.
    impl: 'lax' (`lax.conv_general_dilated` and its derivatives),
      'im2col_grad' (`conv_same`) or 'auto'.
  """

  features: int
  kernel_size: tuple[int, int] = (3, 3)
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: Any) -> jax.Array:
    kh, kw = self.kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
      raise ValueError(f"Conv needs an odd kernel size, got {self.kernel_size}")
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (kh, kw, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    fn = conv_same if resolve_impl(self.impl) == "im2col_grad" else conv_lax
    return fn(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)
