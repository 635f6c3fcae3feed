"""Finite networks of an `ArchSpec`, in the parameterisation of its kernels.

The network of `spec` has the same layers as `nt.nt_stax(spec)` and as the
closed forms in `native`: [Flatten] then `depth` x (Dense | 3x3 SAME Conv,
[instance norm,] activation [, 2x2 stride-2 average pooling]), then [global
average pooling | Flatten] and a dense readout. (Instance norm, `spec.norm`,
has no closed form: its kernels are random-feature estimates only.) As its width grows, its outputs at initialisation
tend to a Gaussian process with the spec's NNGP kernel (Lee et al.,
arXiv:1711.00165; Novak et al., arXiv:1810.05148) and its parameter-Jacobian
inner products to the spec's NTK (Jacot et al., arXiv:1806.07572).

Parameterisations (Sohl-Dickstein et al., arXiv:2001.07301):

* 'ntk': weights and biases are standard normal; a layer computes
  `W_std / sqrt(fan_in) * x @ W + b_std * b`.
* 'standard': weights are `N(0, W_std^2 / fan_in)`, biases `N(0, b_std^2)`; a
  layer computes `x @ W + b`.

`fan_in` is the number of inputs of one output unit: the input features, the
width, `9 * channels` for a 3x3 convolution, or `H * W * width` for the readout
after Flatten.

Parameters are a list with one `(W, b)` pair per layer, readout last; `b` is None
when `spec.b_std == 0`. Conv weights are HWIO `(3, 3, C_in, C_out)`.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from kernelcond.kernels.spec import ArchSpec
from kernelcond.nets import conv as nets_conv

Params = list


def layer_shapes(spec: ArchSpec, input_shape: Sequence[int], width: int,
                 out_dim: int) -> list[tuple[tuple[int, ...], int]]:
  """`(weight_shape, fan_in)` of each layer of the network, readout last.

  Args:
    spec: the architecture.
    input_shape: per-example input shape, `(d,)` (or any shape, flattened) for
      'fc', `(H, W, C)` for 'conv'.
    width: hidden width (channels for 'conv').
    out_dim: number of readout units.
  """
  shapes = []
  if spec.family == "fc":
    fan_in = int(np.prod(input_shape))
    for _ in range(spec.depth):
      shapes.append(((fan_in, width), fan_in))
      fan_in = width
  else:
    if len(input_shape) != 3:
      raise ValueError(f"conv networks need per-example shape (H, W, C), got {input_shape}")
    h, w, c = input_shape
    for _ in range(spec.depth):
      shapes.append(((3, 3, c, width), 9 * c))
      c = width
      if spec.pool:
        h, w = h // 2, w // 2
    fan_in = width if spec.readout == "gap" else h * w * width
  shapes.append(((fan_in, out_dim), fan_in))
  return shapes


def init_params(spec: ArchSpec, key: jax.Array, input_shape: Sequence[int], width: int,
                out_dim: int) -> Params:
  """Draws the parameters of one network (see the module docstring for the scales)."""
  params = []
  for shape, fan_in in layer_shapes(spec, tuple(input_shape), width, out_dim):
    key, k_w, k_b = jax.random.split(key, 3)
    w = jax.random.normal(k_w, shape)
    b = jax.random.normal(k_b, (shape[-1],)) if spec.b_std > 0 else None
    if spec.parameterization == "standard":
      w = w * (spec.W_std / math.sqrt(fan_in))
      b = None if b is None else b * spec.b_std
    params.append((w, b))
  return params


def _linear(spec: ArchSpec, layer, x: jax.Array, conv: bool) -> jax.Array:
  """One Dense (or 3x3 SAME Conv, NHWC) layer in the spec's parameterisation."""
  w, b = layer
  w = w.astype(x.dtype)
  hi = jax.lax.Precision.HIGHEST
  if conv and nets_conv.resolve_impl("auto") == "im2col_grad":
    y = nets_conv.conv_same(x, w)  # CPU: derivatives fast inside loops (`nets.conv`)
  elif conv:
    y = nets_conv.conv_lax(x, w, precision=hi)
  else:
    y = jnp.matmul(x, w, precision=hi)
  if spec.parameterization == "ntk":
    y = y * (spec.W_std / math.sqrt(int(np.prod(w.shape[:-1]))))
    return y if b is None else y + spec.b_std * b.astype(x.dtype)
  return y if b is None else y + b.astype(x.dtype)


def _activation(spec: ArchSpec) -> Callable[[jax.Array], jax.Array]:
  return jax.nn.relu if spec.activation == "relu" else jax.scipy.special.erf


def _avg_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 stride-2 VALID average pooling of `(n, H, W, C)` (odd edges dropped)."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  return x.mean(axis=(2, 4))


INSTANCE_NORM_EPS = 1e-5


def _instance_norm(z: jax.Array) -> jax.Array:
  """`(n, H, W, C)` standardised per example and channel over positions (no affine part)."""
  mean = z.mean(axis=(1, 2), keepdims=True)
  var = jnp.square(z - mean).mean(axis=(1, 2), keepdims=True)
  return (z - mean) * jax.lax.rsqrt(var + INSTANCE_NORM_EPS)


def forward(spec: ArchSpec, params: Params, x: jax.Array,
            shifts: Optional[Sequence[jax.Array]] = None) -> tuple[jax.Array, list[jax.Array]]:
  """Runs the network, recording the input of every layer.

  Args:
    spec: the architecture.
    params: from `init_params`.
    x: `(n,) + input_shape` inputs.
    shifts: optional arrays added to the linear output (pre-activation) of each
      layer, readout last; the gradient of a sum of outputs with respect to them
      is the per-example backpropagated error of each layer.

  Returns:
    `(outputs, inputs)`: outputs `(n, out_dim)`, and for each layer (readout
    last) its input: `(n, d)` for dense layers, `(n, H, W, C)` for conv layers.
  """
  x = jnp.asarray(x)
  act = _activation(spec)
  shift = (lambda l, z: z) if shifts is None else (lambda l, z: z + shifts[l])
  inputs = []
  if spec.family == "fc":
    x = x.reshape(x.shape[0], -1)
    for l, layer in enumerate(params[:-1]):
      inputs.append(x)
      x = act(shift(l, _linear(spec, layer, x, conv=False)))
  else:
    norm = _instance_norm if spec.norm == "instance" else (lambda z: z)
    for l, layer in enumerate(params[:-1]):
      inputs.append(x)
      x = act(norm(shift(l, _linear(spec, layer, x, conv=True))))
      if spec.pool:
        x = _avg_pool_2x2(x)
    x = x.mean(axis=(1, 2)) if spec.readout == "gap" else x.reshape(x.shape[0], -1)
  inputs.append(x)
  return shift(len(params) - 1, _linear(spec, params[-1], x, conv=False)), inputs


def readout_inputs(spec: ArchSpec, params: Params, x: jax.Array) -> jax.Array:
  """The inputs of the readout layer: `(n, fan_in)` for `x` of shape `(n,) + input_shape`."""
  return forward(spec, params, x)[1][-1]


def apply(spec: ArchSpec, params: Params, x: jax.Array) -> jax.Array:
  """The network's outputs `(n, out_dim)` for `x` of shape `(n,) + input_shape`."""
  return forward(spec, params, x)[0]


def per_example_grads(spec: ArchSpec, params: Params, x: jax.Array) -> Params:
  """Gradients of each example's output with respect to the parameters, per example.

  For a layer `z = s_w conv(h, W) + s_b b` (or `s_w h @ W + s_b b`), the
  gradient of example `i`'s output is `s_w sum_p patch_i(p) (x) delta_i(p)` for `W`
  and `s_b sum_p delta_i(p)` for `b`, where `patch_i(p)` is the 3x3 patch of the
  layer input `h_i` at position `p`, `delta_i` the backpropagated error of `z`
  (from one backward pass, examples being independent), and `s_w = W_std /
  sqrt(fan_in)`, `s_b = b_std` ('ntk' parameterisation) or 1 ('standard'). The
  sums over positions are batched matrix products, so no per-example
  convolution is needed (XLA on CPU runs those slowly, very slowly in loops).

  Args:
    spec: the architecture.
    params: from `init_params` with `out_dim == 1`.
    x: `(n,) + input_shape` inputs.

  Returns:
    A list like `params` with a leading example axis on every array: `(gW, gb)`
    per layer, `gW` of shape `(n,) + W.shape`, `gb` `(n, C_out)` (None without
    biases). Equals `vmap(grad(f))` (tested against `jax.jacrev`).
  """
  if params[-1][0].shape[-1] != 1:
    raise ValueError(f"per_example_grads needs out_dim == 1, got {params[-1][0].shape[-1]}")
  hi = jax.lax.Precision.HIGHEST
  _, input_shapes = jax.eval_shape(lambda p, a: forward(spec, p, a), params, x)
  shifts = [jnp.zeros(h.shape[:-1] + (w.shape[-1],), h.dtype)
            for h, (w, _) in zip(input_shapes, params)]

  def summed_outputs(shifts):
    outputs, inputs = forward(spec, params, x, shifts)
    return outputs.sum(), inputs

  deltas, inputs = jax.grad(summed_outputs, has_aux=True)(shifts)
  ntk_param = spec.parameterization == "ntk"
  grads = []
  for (w, b), h, delta in zip(params, inputs, deltas):
    w_scale = spec.W_std / math.sqrt(int(np.prod(w.shape[:-1]))) if ntk_param else 1.0
    if w.ndim == 4:  # 3x3 SAME conv: patches (n, H, W, C_in * 9), features ordered (C_in, 3, 3)
      patches = jax.lax.conv_general_dilated_patches(
          h, (3, 3), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=hi)
      patches = patches.reshape(patches.shape[:3] + (h.shape[-1], 3, 3))
      g_w = jnp.einsum("nhwcij,nhwo->nijco", patches, delta, precision=hi)
      delta = delta.sum(axis=(1, 2))
    else:
      g_w = jnp.einsum("nc,no->nco", h, delta, precision=hi)
    g_b = None if b is None else (spec.b_std if ntk_param else 1.0) * delta
    grads.append((w_scale * g_w, g_b))
  return grads


def init_and_apply(spec: ArchSpec, width: Optional[int] = None, out_dim: int = 1):
  """A finite network of `spec` whose infinite-width kernels are the spec's kernels.

  Args:
    spec: an `ArchSpec`.
    width: hidden width (channels for conv); defaults to `spec.width`.
    out_dim: readout outputs (independent draws of the same GP at init).

  Returns:
    `(init_fn, apply_fn)`: `init_fn(key, input_shape) -> params` with
    `input_shape` the per-example shape (`(d,)` or `(H, W, C)`; unlike
    neural-tangents, no batch axis and no output shape), and
    `apply_fn(params, x) -> (n, out_dim)` for `x` of shape `(n,) + input_shape`.
    Both are pure and jit-able.
  """
  width = spec.width if width is None else int(width)

  def init_fn(key: jax.Array, input_shape: Sequence[int]) -> Params:
    return init_params(spec, key, input_shape, width, out_dim)

  def apply_fn(params: Params, x: jax.Array) -> jax.Array:
    return apply(spec, params, x)

  return init_fn, apply_fn
