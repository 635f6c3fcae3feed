"""Differentiable Siamese Augmentation (DSA) of image batches `(n, H, W, C)`.

Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation",
ICML 2021, arXiv:2102.08259. Gradient-matching condensation (and distribution
matching, arXiv:2110.04181) augments the real and the synthetic batch with the
SAME random transformation before comparing them, and back-propagates through the
transformation into the synthetic images. Every transform here is therefore a
differentiable function of the images: colour changes are arithmetic, crop and
cutout are masked gathers, and scale and rotate resample the image bilinearly on
an affine grid (zero padding outside).

Strategies are DSA strings: transform names joined by '_', e.g.
'color_crop_cutout_flip_scale_rotate' (the paper's default), 'none' for the
identity, or a preset name of `STRATEGIES`. The transforms and the DSA defaults
of their ranges (`DSAConfig`, the reference implementation's `ParamDiffAug`):

  color   brightness: add b ~ U[-0.5, 0.5) to every pixel;
          saturation: scale each pixel's deviation from its channel mean by
            s ~ U[0, 2);
          contrast: scale each image's deviation from its mean by c ~ U[0.5, 1.5)
          (the three in this order; 'color' counts as ONE transform).
  crop    translate by integers (dy, dx), |d| <= round(0.125 * size), filling the
          uncovered border with zeros (the 'pad and crop' of the paper).
  cutout  zero a square of round(0.5 * size) pixels a side, centred at a uniform
          pixel (it may overhang the border).
  flip    mirror left-right with probability 0.5.
  scale   resample on the grid diag(sy, sx), sy, sx ~ U[1/1.2, 1.2).
  rotate  resample on the grid rotated by an angle ~ U[-15, 15) degrees.

How one call draws (as in DSA's default single-transform mode, `aug_mode='S'`):

* ONE transform of the strategy, chosen uniformly, is applied to the whole batch
  (`params['choice']`, selected with `lax.switch`);
* `augment` draws that transform's parameters independently for each example;
* `siamese` draws ONE set of parameters (a batch of one) and applies it to every
  example of both batches (broadcast), which is what the reference implementation
  does whenever it is given a seed: real and synthetic batches of any sizes see
  the identical transformation.

Deviation from the reference code, on purpose: it re-seeds its global generator
before every draw in siamese mode, so there sx == sy, dy == dx and the cutout
centre lies on the diagonal. Here the two coordinates are independent draws, as
the paper describes the transforms.

Geometry conventions (those of torch's `affine_grid`/`grid_sample` used by DSA):
normalised coordinates in [-1, 1] span the image with pixel centres at
(2 i + 1) / size - 1; an output pixel at normalised (row, col) = p reads the input
at A p. Scale uses A = diag(sy, sx) (factors above 1 shrink the content); rotate
by angle t uses A = [[cos t, sin t], [-sin t, cos t]], so t = +90 degrees equals
`np.rot90(image)` on a square image.

Everything is jit-able with the strategy static:
`jax.jit(augment, static_argnames="strategy")`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from kernelcond.registry import Registry

Params = dict  # {'choice': int32 (), <transform name>: {field: (n, ...) array}}


@dataclasses.dataclass(frozen=True)
class DSAConfig:
  """Ranges of the DSA transforms; the defaults are the paper's.

  Attributes:
    prob_flip: probability of a left-right flip.
    ratio_scale: scale factors ~ U[1 / ratio_scale, ratio_scale).
    ratio_rotate: rotation angle ~ U[-ratio_rotate, ratio_rotate) degrees.
    ratio_crop_pad: largest translation as a fraction of the image side.
    ratio_cutout: side of the cutout square as a fraction of the image side.
    brightness: additive shift ~ U[-brightness / 2, brightness / 2).
    saturation: saturation factor ~ U[0, saturation).
    contrast: contrast factor ~ U[contrast, contrast + 1).
  """
  prob_flip: float = 0.5
  ratio_scale: float = 1.2
  ratio_rotate: float = 15.0
  ratio_crop_pad: float = 0.125
  ratio_cutout: float = 0.5
  brightness: float = 1.0
  saturation: float = 2.0
  contrast: float = 0.5


@dataclasses.dataclass(frozen=True)
class Transform:
  """One DSA transform as three pure functions.

  Attributes:
    sample: `(key, n, image_shape, config) -> params`, a dict of arrays with a
      leading axis of size n (one entry per example).
    apply: `(params, x) -> x` for images `x` of shape `(n, H, W, C)` and params
      with leading axis n; differentiable in `x`.
    identity: `(n, image_shape) -> params` that make `apply` the identity.
  """
  sample: Callable[..., dict]
  apply: Callable[[dict, jax.Array], jax.Array]
  identity: Callable[..., dict]


TRANSFORMS: Registry[Transform] = Registry("DSA transform")
STRATEGIES: Registry[str] = Registry("DSA strategy preset")

_DIGIT_DATASETS = frozenset({"digits", "mnist", "svhn"})


# --------------------------------------------------------------------------- sampling helpers


def _side_fraction(size: int, ratio: float) -> int:
  """round(size * ratio) with halves rounded up, as DSA computes pixel counts."""
  return int(size * ratio + 0.5)


def _uniform(key, n: int, low: float, high: float) -> jax.Array:
  return jax.random.uniform(key, (n,), jnp.float32, low, high)


# --------------------------------------------------------------------------- resampling


def _gather_or_zero(x: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """`x[b, rows, cols]`, zero where (rows, cols) falls outside the image.

  Args:
    x: images `(n, H, W, C)`.
    rows, cols: integer pixel indices `(n, H', W')`.

  Returns:
    `(n, H', W', C)`.
  """
  _, h, w, _ = x.shape
  inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
  batch = jnp.arange(x.shape[0])[:, None, None]
  values = x[batch, jnp.clip(rows, 0, h - 1), jnp.clip(cols, 0, w - 1)]
  return jnp.where(inside[..., None], values, jnp.zeros((), x.dtype))


def _bilinear(x: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """Bilinear samples of `x` at real pixel coordinates, zero padded.

  Each of the four neighbours outside the image contributes zero (torch's
  `padding_mode='zeros'`).

  Args:
    x: images `(n, H, W, C)`.
    rows, cols: float pixel coordinates `(n, H', W')` (pixel centres at integers).

  Returns:
    `(n, H', W', C)`, differentiable in `x` (and in the coordinates).
  """
  r0 = jnp.floor(rows)
  c0 = jnp.floor(cols)
  fr = (rows - r0)[..., None]
  fc = (cols - c0)[..., None]
  r0 = r0.astype(jnp.int32)
  c0 = c0.astype(jnp.int32)
  top = _gather_or_zero(x, r0, c0) * (1 - fc) + _gather_or_zero(x, r0, c0 + 1) * fc
  bottom = _gather_or_zero(x, r0 + 1, c0) * (1 - fc) + _gather_or_zero(x, r0 + 1, c0 + 1) * fc
  return (top * (1 - fr) + bottom * fr).astype(x.dtype)


def _affine(x: jax.Array, matrix: jax.Array) -> jax.Array:
  """Resamples each image on the grid `matrix @ p` of normalised coordinates.

  Args:
    x: images `(n, H, W, C)`.
    matrix: `(n, 2, 2)` maps from output to input normalised (row, col)
      coordinates about the image centre.

  Returns:
    `(n, H, W, C)`.
  """
  _, h, w, _ = x.shape
  norm_rows = (2 * jnp.arange(h, dtype=jnp.float32) + 1) / h - 1
  norm_cols = (2 * jnp.arange(w, dtype=jnp.float32) + 1) / w - 1
  grid = jnp.stack(jnp.meshgrid(norm_rows, norm_cols, indexing="ij"), axis=-1)  # (H, W, 2)
  source = jnp.einsum("nij,hwj->nhwi", matrix.astype(jnp.float32), grid)
  rows = ((source[..., 0] + 1) * h - 1) / 2
  cols = ((source[..., 1] + 1) * w - 1) / 2
  return _bilinear(x, rows, cols)


# --------------------------------------------------------------------------- transforms


def _sample_color(key, n, image_shape, config):
  del image_shape
  kb, ks, kc = jax.random.split(key, 3)
  half = config.brightness / 2
  return {
      "brightness": _uniform(kb, n, -half, half),
      "saturation": _uniform(ks, n, 0.0, config.saturation),
      "contrast": _uniform(kc, n, config.contrast, config.contrast + 1.0),
  }


def _per_image(values: jax.Array, x: jax.Array) -> jax.Array:
  """`(n,)` values -> `(n, 1, 1, 1)` in the dtype of `x`."""
  return values.astype(x.dtype)[:, None, None, None]


def _apply_color(params, x):
  x = x + _per_image(params["brightness"], x)
  pixel_mean = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - pixel_mean) * _per_image(params["saturation"], x) + pixel_mean
  image_mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - image_mean) * _per_image(params["contrast"], x) + image_mean


def _identity_color(n, image_shape):
  del image_shape
  return {"brightness": jnp.zeros((n,)), "saturation": jnp.ones((n,)),
          "contrast": jnp.ones((n,))}


def _sample_crop(key, n, image_shape, config):
  h, w = image_shape[:2]
  limit_h = _side_fraction(h, config.ratio_crop_pad)
  limit_w = _side_fraction(w, config.ratio_crop_pad)
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (n,), -limit_h, limit_h + 1)
  dx = jax.random.randint(kx, (n,), -limit_w, limit_w + 1)
  return {"shift": jnp.stack([dy, dx], axis=-1).astype(jnp.int32)}


def _apply_crop(params, x):
  """`out[i, j] = x[i + dy, j + dx]`, zero outside the image."""
  _, h, w, _ = x.shape
  shift = params["shift"]
  rows = jnp.arange(h)[None, :, None] + shift[:, 0, None, None]
  cols = jnp.arange(w)[None, None, :] + shift[:, 1, None, None]
  return _gather_or_zero(x, jnp.broadcast_to(rows, (x.shape[0], h, w)),
                         jnp.broadcast_to(cols, (x.shape[0], h, w)))


def _identity_crop(n, image_shape):
  del image_shape
  return {"shift": jnp.zeros((n, 2), jnp.int32)}


def _sample_cutout(key, n, image_shape, config):
  h, w = image_shape[:2]
  size = (_side_fraction(h, config.ratio_cutout), _side_fraction(w, config.ratio_cutout))
  ky, kx = jax.random.split(key)
  # Centres range over the image plus one extra position for even sizes (DSA).
  cy = jax.random.randint(ky, (n,), 0, h + 1 - size[0] % 2)
  cx = jax.random.randint(kx, (n,), 0, w + 1 - size[1] % 2)
  return {"center": jnp.stack([cy, cx], axis=-1).astype(jnp.int32),
          "size": jnp.broadcast_to(jnp.asarray(size, jnp.int32), (n, 2))}


def _apply_cutout(params, x):
  """Zeroes rows [c - s // 2, c - s // 2 + s) x the same for columns."""
  _, h, w, _ = x.shape
  start = params["center"] - params["size"] // 2  # (n, 2)
  stop = start + params["size"]
  rows = jnp.arange(h)[None, :]
  cols = jnp.arange(w)[None, :]
  in_rows = (rows >= start[:, :1]) & (rows < stop[:, :1])  # (n, H)
  in_cols = (cols >= start[:, 1:]) & (cols < stop[:, 1:])  # (n, W)
  cut = in_rows[:, :, None] & in_cols[:, None, :]
  return jnp.where(cut[..., None], jnp.zeros((), x.dtype), x)


def _identity_cutout(n, image_shape):
  del image_shape
  return {"center": jnp.zeros((n, 2), jnp.int32), "size": jnp.zeros((n, 2), jnp.int32)}


def _sample_flip(key, n, image_shape, config):
  del image_shape
  return {"flip": jax.random.uniform(key, (n,)) < config.prob_flip}


def _apply_flip(params, x):
  return jnp.where(params["flip"][:, None, None, None], x[:, :, ::-1, :], x)


def _identity_flip(n, image_shape):
  del image_shape
  return {"flip": jnp.zeros((n,), bool)}


def _sample_scale(key, n, image_shape, config):
  del image_shape
  low = 1.0 / config.ratio_scale
  return {"scale": jax.random.uniform(key, (n, 2), jnp.float32, low, config.ratio_scale)}


def _apply_scale(params, x):
  """Scale factors `(n, 2)` as (sy, sx)."""
  scale = params["scale"]
  return _affine(x, jax.vmap(jnp.diag)(scale))


def _identity_scale(n, image_shape):
  del image_shape
  return {"scale": jnp.ones((n, 2))}


def _sample_rotate(key, n, image_shape, config):
  del image_shape
  limit = math.radians(config.ratio_rotate)
  return {"angle": _uniform(key, n, -limit, limit)}


def _apply_rotate(params, x):
  """Angles `(n,)` in radians."""
  cos, sin = jnp.cos(params["angle"]), jnp.sin(params["angle"])
  matrix = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], axis=-2)
  return _affine(x, matrix)


def _identity_rotate(n, image_shape):
  del image_shape
  return {"angle": jnp.zeros((n,))}


TRANSFORMS.register("color", Transform(_sample_color, _apply_color, _identity_color))
TRANSFORMS.register("crop", Transform(_sample_crop, _apply_crop, _identity_crop))
TRANSFORMS.register("cutout", Transform(_sample_cutout, _apply_cutout, _identity_cutout))
TRANSFORMS.register("flip", Transform(_sample_flip, _apply_flip, _identity_flip))
TRANSFORMS.register("scale", Transform(_sample_scale, _apply_scale, _identity_scale))
TRANSFORMS.register("rotate", Transform(_sample_rotate, _apply_rotate, _identity_rotate))

STRATEGIES.register("none", "none")
STRATEGIES.register("dsa", "color_crop_cutout_flip_scale_rotate")
STRATEGIES.register("dsa_noflip", "color_crop_cutout_scale_rotate")


# --------------------------------------------------------------------------- public API


def parse_strategy(strategy: str) -> tuple[str, ...]:
  """The transform names of a strategy string, in order; `()` for 'none'.

  Args:
    strategy: transform names joined by '_' (e.g. 'color_crop_flip'), 'none', or
      a preset of `STRATEGIES` (e.g. 'dsa').

  Raises:
    ValueError: for an empty, unknown or repeated transform name; the message
      lists the valid transforms and presets.
  """
  if not isinstance(strategy, str):
    raise ValueError(f"DSA strategy must be a string, got {strategy!r}")
  if strategy in STRATEGIES:
    strategy = STRATEGIES.get(strategy)
  if strategy.lower() == "none":
    return ()
  names = tuple(strategy.split("_"))
  for name in names:
    if name not in TRANSFORMS:
      raise ValueError(
          f"Unknown DSA transform {name!r} in strategy {strategy!r}; valid transforms: "
          f"{', '.join(TRANSFORMS.names())} (joined by '_'), or 'none', or a preset: "
          f"{', '.join(STRATEGIES.names())}")
  if len(set(names)) != len(names):
    raise ValueError(f"DSA strategy {strategy!r} names a transform twice")
  return names


def _check_image_shape(image_shape) -> tuple[int, int, int]:
  image_shape = tuple(int(d) for d in image_shape)
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
  return image_shape


def sample_params(key: jax.Array, batch_size: int, image_shape: tuple, strategy: str,
                  config: DSAConfig = DSAConfig()) -> Params:
  """Draws the parameters of one DSA call.

  Args:
    key: a PRNG key.
    batch_size: n, the number of per-example parameter sets (1 for a draw shared
      by a whole batch, as `siamese` does).
    image_shape: `(H, W, C)`.
    strategy: see `parse_strategy`.
    config: the ranges (DSA's by default).

  Returns:
    `{}` for 'none'; otherwise `{'choice': int32 (), name: {field: (n, ...)}}`
    with an entry for every transform of the strategy (only the one at index
    `choice` is applied).
  """
  names = parse_strategy(strategy)
  if not names:
    return {}
  image_shape = _check_image_shape(image_shape)
  keys = jax.random.split(key, len(names) + 1)
  params = {"choice": jax.random.randint(keys[0], (), 0, len(names)).astype(jnp.int32)}
  for name, sub in zip(names, keys[1:]):
    params[name] = TRANSFORMS.get(name).sample(sub, batch_size, image_shape, config)
  return params


def identity_params(batch_size: int, image_shape: tuple, strategy: str) -> Params:
  """Parameters under which `apply` returns its input, whichever transform is chosen.

  Args:
    batch_size: n.
    image_shape: `(H, W, C)`.
    strategy: see `parse_strategy`.

  Returns:
    A pytree shaped like `sample_params(...)`, with `choice` 0.
  """
  names = parse_strategy(strategy)
  if not names:
    return {}
  image_shape = _check_image_shape(image_shape)
  params = {"choice": jnp.zeros((), jnp.int32)}
  for name in names:
    params[name] = TRANSFORMS.get(name).identity(batch_size, image_shape)
  return params


def _apply_one(name: str, params: Params, x: jax.Array) -> jax.Array:
  n = x.shape[0]
  per_example = jax.tree_util.tree_map(
      lambda p: jnp.broadcast_to(p, (n,) + jnp.shape(p)[1:]), params[name])
  return TRANSFORMS.get(name).apply(per_example, x).astype(x.dtype)


def apply(params: Params, x: jax.Array, strategy: str) -> jax.Array:
  """Applies drawn DSA parameters to a batch of images.

  Args:
    params: from `sample_params` (or `identity_params`) with the same strategy;
      per-example fields with a leading axis of n or of 1 (broadcast to the batch).
    x: images `(n, H, W, C)`, channels last.
    strategy: see `parse_strategy`.

  Returns:
    The augmented images `(n, H, W, C)`, same dtype; differentiable in `x`.
  """
  names = parse_strategy(strategy)
  if not names:
    return x
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(f"DSA expects images (n, H, W, C), got shape {x.shape}")
  branches = [functools.partial(_apply_one, name) for name in names]
  if len(branches) == 1:
    return branches[0](params, x)
  return jax.lax.switch(params["choice"], branches, params, x)


def augment(key: jax.Array, x: jax.Array, strategy: str,
            config: DSAConfig = DSAConfig()) -> jax.Array:
  """One DSA call with per-example parameters (the non-siamese mode).

  Args:
    key: a PRNG key.
    x: images `(n, H, W, C)`.
    strategy: see `parse_strategy`.
    config: the ranges (DSA's by default; pass it static under jit).

  Returns:
    `apply(sample_params(key, n, x.shape[1:], strategy), x, strategy)`.
  """
  params = sample_params(key, x.shape[0], x.shape[1:], strategy, config)
  return apply(params, x, strategy)


def siamese(key: jax.Array, x_real: jax.Array, x_syn: jax.Array, strategy: str,
            config: DSAConfig = DSAConfig()) -> tuple[jax.Array, jax.Array]:
  """Siamese augmentation: ONE draw applied to every image of both batches.

  As in DSA's seeded (batch-wise) mode, a single transform with a single set of
  parameters is drawn and shared by all real and synthetic images, so the two
  batches may have different sizes.

  Args:
    key: a PRNG key.
    x_real: real images `(n_real, H, W, C)`.
    x_syn: synthetic images `(n_syn, H, W, C)`; gradients flow back to them.
    strategy: see `parse_strategy`.
    config: the ranges (DSA's by default).

  Returns:
    `(x_real_aug, x_syn_aug)`, shapes unchanged.

  Raises:
    ValueError: if the two batches have different image shapes.
  """
  if tuple(x_real.shape[1:]) != tuple(x_syn.shape[1:]):
    raise ValueError(f"real and synthetic images differ in shape: {x_real.shape} vs {x_syn.shape}")
  params = sample_params(key, 1, x_real.shape[1:], strategy, config)
  return apply(params, x_real, strategy), apply(params, x_syn, strategy)


def default_strategy(dataset_name: str) -> str:
  """DSA's full strategy, without 'flip' for digit datasets (digits, mnist, svhn).

  Mirroring a digit changes or destroys its class, so those datasets skip it.
  """
  key = dataset_name.strip().lower().replace("-", "_")
  return STRATEGIES.get("dsa_noflip" if key in _DIGIT_DATASETS else "dsa")
