"""DSA (arXiv:2102.08259): siamese sharing, differentiability, known-image geometry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond.nets import augment

GEOMETRIC = ("crop", "cutout", "flip", "scale", "rotate")


def _images(n=4, h=8, w=8, c=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal((n, h, w, c)), jnp.float32)


def _params_with(strategy, name, field, value, n=1, shape=(8, 8, 1)):
  params = augment.identity_params(n, shape, strategy)
  params[name][field] = jnp.asarray(value)
  return params


def test_strategy_parsing_and_errors():
  assert augment.parse_strategy("color_crop_cutout_flip_scale_rotate") == (
      "color", "crop", "cutout", "flip", "scale", "rotate")
  assert augment.parse_strategy("dsa") == augment.parse_strategy(
      "color_crop_cutout_flip_scale_rotate")
  assert augment.parse_strategy("none") == ()
  valid = "valid transforms: color, crop, cutout, flip, scale, rotate"
  with pytest.raises(ValueError, match=valid):
    augment.parse_strategy("color_blur")
  with pytest.raises(ValueError):
    augment.augment(jax.random.PRNGKey(0), _images(), "")
  with pytest.raises(ValueError, match="twice"):
    augment.parse_strategy("flip_flip")
  assert set(augment.TRANSFORMS.names()) == {"color", "crop", "cutout", "flip", "scale", "rotate"}


def test_default_strategy_drops_flip_for_digits_only():
  for name in ("digits", "mnist", "SVHN"):
    assert "flip" not in augment.parse_strategy(augment.default_strategy(name))
  full = augment.parse_strategy(augment.default_strategy("cifar10"))
  assert full == ("color", "crop", "cutout", "flip", "scale", "rotate")
  assert "flip" in augment.parse_strategy(augment.default_strategy("fashion_mnist"))


def test_none_and_identity_params_are_the_identity():
  x = _images()
  assert augment.augment(jax.random.PRNGKey(0), x, "none") is x
  for strategy in augment.TRANSFORMS.names():
    params = augment.identity_params(len(x), x.shape[1:], strategy)
    np.testing.assert_allclose(augment.apply(params, x, strategy), x, atol=1e-5)
  # Every branch of a multi-transform strategy, picked through `choice`.
  names = augment.parse_strategy("dsa")
  for i in range(len(names)):
    params = augment.identity_params(1, x.shape[1:], "dsa")
    params["choice"] = jnp.asarray(i, jnp.int32)
    np.testing.assert_allclose(augment.apply(params, x, "dsa"), x, atol=1e-5)


def test_sampled_ranges_are_dsa_defaults():
  params = augment.sample_params(jax.random.PRNGKey(1), 2000, (32, 32, 3), "dsa")
  assert params["choice"].shape == () and 0 <= int(params["choice"]) < 6
  b, s, c = (np.asarray(params["color"][k]) for k in ("brightness", "saturation", "contrast"))
  assert -0.5 <= b.min() < -0.45 and 0.45 < b.max() < 0.5
  assert 0.0 <= s.min() < 0.05 and 1.95 < s.max() < 2.0
  assert 0.5 <= c.min() < 0.55 and 1.45 < c.max() < 1.5
  shift = np.asarray(params["crop"]["shift"])
  assert shift.min() == -4 and shift.max() == 4  # 0.125 * 32
  assert np.all(np.asarray(params["cutout"]["size"]) == 16)
  assert 0.4 < np.asarray(params["flip"]["flip"]).mean() < 0.6
  scale = np.asarray(params["scale"]["scale"])
  assert 1 / 1.2 <= scale.min() < 0.85 and 1.18 < scale.max() < 1.2
  angle = np.degrees(np.asarray(params["rotate"]["angle"]))
  assert -15 <= angle.min() < -14.5 and 14.5 < angle.max() <= 15


def test_deterministic_under_a_key_and_varies_with_it():
  x = _images()
  a = augment.augment(jax.random.PRNGKey(3), x, "dsa")
  b = augment.augment(jax.random.PRNGKey(3), x, "dsa")
  np.testing.assert_array_equal(a, b)
  outs = [augment.augment(jax.random.PRNGKey(k), x, "crop_rotate") for k in range(4)]
  assert any(not np.allclose(outs[0], o) for o in outs[1:])


def test_jit_with_static_strategy_matches_eager():
  x = _images()
  key = jax.random.PRNGKey(5)
  jitted = jax.jit(augment.augment, static_argnames="strategy")
  np.testing.assert_allclose(jitted(key, x, strategy="dsa"), augment.augment(key, x, "dsa"),
                             atol=1e-6)
  siamese = jax.jit(augment.siamese, static_argnames="strategy")
  real, syn = siamese(key, x, x[:2], strategy="dsa")
  eager_real, eager_syn = augment.siamese(key, x, x[:2], "dsa")
  np.testing.assert_allclose(real, eager_real, atol=1e-6)
  np.testing.assert_allclose(syn, eager_syn, atol=1e-6)


def test_flip_flips_left_right():
  x = _images(n=2, c=1)
  params = _params_with("flip", "flip", "flip", [True, False], n=2)
  out = augment.apply(params, x, "flip")
  np.testing.assert_array_equal(out[0], x[0, :, ::-1])
  np.testing.assert_array_equal(out[1], x[1])


def test_crop_translates_with_zero_fill():
  img = jnp.arange(1.0, 65.0).reshape(1, 8, 8, 1)
  out = np.asarray(augment.apply(_params_with("crop", "crop", "shift", [[1, -2]]), img, "crop"))
  expected = np.zeros((8, 8))
  expected[:7, 2:] = np.asarray(img)[0, 1:, :6, 0]  # out[i, j] = img[i + 1, j - 2]
  np.testing.assert_array_equal(out[0, ..., 0], expected)


def test_cutout_zeroes_a_square_clipped_at_the_border():
  img = jnp.ones((2, 8, 8, 1))
  params = augment.identity_params(2, (8, 8, 1), "cutout")
  params["cutout"] = {"center": jnp.asarray([[4, 4], [0, 7]]), "size": jnp.asarray([[4, 4]] * 2)}
  out = np.asarray(augment.apply(params, img, "cutout"))[..., 0]
  assert (out[0] == 0).sum() == 16 and np.all(out[0, 2:6, 2:6] == 0)
  assert (out[1] == 0).sum() == 2 * 3 and np.all(out[1, 0:2, 5:8] == 0)  # rows -2..1, cols 5..8


def test_rotate_quarter_turn_is_rot90_and_scale_one_is_identity():
  img = jnp.arange(64.0).reshape(1, 8, 8, 1)
  out = augment.apply(_params_with("rotate", "rotate", "angle", [np.pi / 2]), img, "rotate")
  np.testing.assert_allclose(out[0, ..., 0], np.rot90(np.asarray(img)[0, ..., 0]), atol=1e-4)
  # Scale 2 samples twice as far from the centre: the central 4x4 block of the
  # output reads the whole image at every other pixel (bilinear on pixel centres
  # gives averages of neighbours), and the border reads outside, i.e. zeros.
  out = np.asarray(augment.apply(_params_with("scale", "scale", "scale", [[2.0, 2.0]]),
                                 img, "scale"))[0, ..., 0]
  assert np.all(out[0] == 0) and np.all(out[:, 0] == 0)
  src = np.asarray(img)[0, ..., 0]
  np.testing.assert_allclose(out[4, 4], src[4:6, 4:6].mean(), atol=1e-4)


def test_color_matches_closed_form():
  x = _images(n=1)
  params = augment.identity_params(1, x.shape[1:], "color")
  params["color"] = {"brightness": jnp.asarray([0.3]), "saturation": jnp.asarray([1.5]),
                     "contrast": jnp.asarray([0.7])}
  xn = np.asarray(x) + 0.3
  xn = (xn - xn.mean(-1, keepdims=True)) * 1.5 + xn.mean(-1, keepdims=True)
  xn = (xn - xn.mean()) * 0.7 + xn.mean()
  np.testing.assert_allclose(augment.apply(params, x, "color"), xn, atol=1e-5)


def test_augment_draws_per_example_parameters():
  x = jnp.repeat(_images(n=1), 8, axis=0)
  out = np.asarray(augment.augment(jax.random.PRNGKey(0), x, "rotate"))
  assert all(not np.allclose(out[0], o) for o in out[1:])


@pytest.mark.parametrize("strategy", GEOMETRIC + ("dsa",))
def test_siamese_on_identical_inputs_gives_identical_outputs(strategy):
  x = _images(n=3)
  for seed in range(2):
    real, syn = augment.siamese(jax.random.PRNGKey(seed), x, x, strategy)
    np.testing.assert_array_equal(real, syn)
    # One draw for the whole batch: identical images stay identical.
    same = jnp.repeat(x[:1], 3, axis=0)
    real, _ = augment.siamese(jax.random.PRNGKey(seed), same, x[:2], strategy)
    np.testing.assert_allclose(real, jnp.repeat(real[:1], 3, axis=0), atol=1e-6)


@pytest.mark.parametrize("strategy", GEOMETRIC)
def test_siamese_applies_one_geometric_map_to_different_batches(strategy):
  # A known image (one bright pixel off-centre) marks where the map sends a pixel;
  # scaled copies in batches of different sizes must all be mapped the same way.
  delta = np.zeros((1, 8, 8, 1), np.float32)
  delta[0, 2, 5, 0] = 1.0
  delta = jnp.asarray(delta)
  real = delta * jnp.asarray([1.0, 2.0, 3.0])[:, None, None, None]
  syn = delta * jnp.asarray([-1.0, 0.5])[:, None, None, None]
  moved = 0
  for seed in range(8):
    out_real, out_syn = augment.siamese(jax.random.PRNGKey(seed), real, syn, strategy)
    reference = out_real[0]
    np.testing.assert_allclose(out_real[1:] / jnp.asarray([2.0, 3.0])[:, None, None, None],
                               jnp.broadcast_to(reference, (2, 8, 8, 1)), atol=1e-6)
    np.testing.assert_allclose(out_syn / jnp.asarray([-1.0, 0.5])[:, None, None, None],
                               jnp.broadcast_to(reference, (2, 8, 8, 1)), atol=1e-6)
    moved += not np.allclose(reference, delta[0])
  assert moved > 0  # the map is not always the identity
  # Linearity check on unrelated images: the same map M gives M(a + b) = M a + M b.
  a, b = _images(n=1, seed=1), _images(n=1, seed=2)
  for seed in range(4):
    out_real, out_syn = augment.siamese(
        jax.random.PRNGKey(seed), jnp.concatenate([a, b]), a + b, strategy)
    np.testing.assert_allclose(out_syn[0], out_real[0] + out_real[1], atol=1e-5)


@pytest.mark.parametrize("strategy", ["dsa", "scale", "rotate", "color"])
def test_gradients_flow_to_synthetic_images(strategy):
  x_real, x_syn = _images(n=4, seed=1), _images(n=2, seed=2)

  def loss(syn, key):
    real_aug, syn_aug = augment.siamese(key, x_real, syn, strategy)
    return jnp.sum((real_aug.mean(0) - syn_aug.mean(0)) ** 2)

  grad = jax.grad(loss)(x_syn, jax.random.PRNGKey(0))
  assert grad.shape == x_syn.shape
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_rotate_gradient_matches_finite_differences():
  x = _images(n=2, c=2, seed=3)
  params = augment.sample_params(jax.random.PRNGKey(0), 2, x.shape[1:], "rotate")
  weights = _images(n=2, c=2, seed=4)

  def loss(images):
    return jnp.sum(jnp.sin(augment.apply(params, images, "rotate")) * weights)

  direction = _images(n=2, c=2, seed=5)
  eps = 1e-2
  numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
  analytic = jnp.vdot(jax.grad(loss)(x), direction)
  np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=2e-3)


def test_siamese_rejects_mismatched_image_shapes():
  with pytest.raises(ValueError, match="differ in shape"):
    augment.siamese(jax.random.PRNGKey(0), _images(h=8), _images(h=6), "crop")
