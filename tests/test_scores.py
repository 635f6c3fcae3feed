"""Scores: EL2N vs numpy, GraNd vs a per-example loop, forgetting counts, T=0, score files."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import io
from kernelcond.prune import scores
from kernelcond.nets import train

N, CLASSES = 12, 3


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((N, 8, 8, 1)).astype(np.float32)
  y = rng.integers(0, CLASSES, N).astype(np.int32)
  return x, y


@pytest.fixture(scope="module")
def bn_config():
  return train.TrainConfig(model="convnet", model_kwargs={"width": 4, "depth": 2, "norm": "batch"},
                           epochs=2, batch_size=4, lr=0.1, seed=3)


@pytest.fixture(scope="module")
def trained_bn_state(data, bn_config):
  state, _ = train.train_and_evaluate(bn_config, *data, num_classes=CLASSES)
  return state


def _loop_grad_norms(state, x, y, head_only=False):
  """Reference: one jax.grad per example, inference-mode BatchNorm, Python loop."""
  def loss(params, xi, yi):
    logits = state.apply_fn(state.variables(params), xi[None], train=False)
    return -jax.nn.log_softmax(logits)[0, yi]
  grad_fn = jax.jit(jax.grad(loss))  # one example at a time: no vmap
  norms = []
  for i in range(x.shape[0]):
    g = grad_fn(state.params, x[i], y[i])
    g = g["head"] if head_only else g
    norms.append(np.sqrt(sum(float(jnp.sum(leaf ** 2)) for leaf in jax.tree_util.tree_leaves(g))))
  return np.array(norms)


def test_el2n_matches_numpy_formula(data, trained_bn_state):
  x, y = data
  logits = np.asarray(trained_bn_state.apply_fn(trained_bn_state.variables(), x, train=False),
                      np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  expected = np.linalg.norm(p - np.eye(CLASSES)[y], axis=1)
  np.testing.assert_allclose(scores.el2n(trained_bn_state, x, y, batch_size=5), expected,
                             rtol=1e-5, atol=1e-6)


def test_grand_matches_per_example_loop_with_batchnorm_in_inference_mode(data, trained_bn_state):
  x, y = data
  # The running averages moved away from their init, so inference mode matters.
  stats = jax.tree_util.tree_leaves(trained_bn_state.batch_stats)
  assert any(float(jnp.max(jnp.abs(s))) > 1e-3 for s in stats)
  expected = _loop_grad_norms(trained_bn_state, x, y)
  got = scores.grand(trained_bn_state, x, y, batch_size=5)  # 12 = 5 + 5 + 2 (padded)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  head = scores.grand(trained_bn_state, x, y, last_layer_only=True)
  np.testing.assert_allclose(head, _loop_grad_norms(trained_bn_state, x, y, head_only=True),
                             rtol=1e-4, atol=1e-6)
  assert np.all(head <= got + 1e-6)


def test_forgetting_counts_on_hand_built_matrix():
  correct = np.array([  # rows: epochs 1..5; columns: examples
      [1, 0, 1, 0, 1],
      [0, 1, 1, 0, 1],
      [1, 0, 1, 0, 0],
      [0, 1, 1, 0, 0],
      [1, 1, 0, 0, 1],
  ], bool)
  # ex0: 1->0 at 1-2 and 3-4: 2; ex1: 1->0 at 2-3: 1; ex2: 1->0 at 4-5: 1;
  # ex3: never learned: T + 1 = 6; ex4: 1->0 at 2-3 only: 1.
  np.testing.assert_array_equal(scores.forgetting_from_correctness(correct), [2, 1, 1, 6, 1])
  with pytest.raises(ValueError, match="matrix"):
    scores.forgetting_from_correctness(np.zeros(3, bool))


def test_t0_scores_use_the_initial_parameters(data):
  x, y = data
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (16,)}, epochs=7,
                             batch_size=4, lr=0.1)
  at_init = scores.compute_scores("el2n", x, y, config, num_inits=1, epochs=0, seed=5,
                                  num_classes=CLASSES)
  fresh = train.create_train_state(dataclasses.replace(config, seed=5), x.shape[1:], CLASSES, 1)
  np.testing.assert_allclose(at_init, scores.el2n(fresh, x, y), rtol=1e-6)
  trained = scores.compute_scores("el2n", x, y, config, num_inits=1, epochs=2, seed=5,
                                  num_classes=CLASSES)
  assert np.max(np.abs(trained - at_init)) > 1e-3
  g0 = scores.compute_scores("grand", x, y, config, num_inits=1, epochs=0, seed=5,
                             num_classes=CLASSES)
  np.testing.assert_allclose(g0, _loop_grad_norms(fresh, x, y), rtol=1e-4)


def test_scores_average_over_independent_inits(data):
  x, y = data
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (8,)}, batch_size=4, lr=0.1)
  one = [scores.compute_scores("el2n", x, y, config, 1, 1, s, num_classes=CLASSES)
         for s in (2, 3)]
  two = scores.compute_scores("el2n", x, y, config, 2, 1, 2, num_classes=CLASSES)
  np.testing.assert_allclose(two, (one[0] + one[1]) / 2, rtol=1e-5)
  assert not np.allclose(one[0], one[1])
  forget = scores.compute_scores("forgetting", x, y, config, 1, 3, 0, num_classes=CLASSES)
  assert forget.shape == (N,) and np.all((forget >= 0) & (forget <= 4))


def test_bad_inputs(data):
  x, y = data
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (4,)})
  with pytest.raises(ValueError, match="el2n, grand, forgetting"):
    scores.compute_scores("loss", x, y, config)
  with pytest.raises(ValueError, match="epochs >= 1"):
    scores.compute_scores("forgetting", x, y, config, epochs=0)
  with pytest.raises(ValueError, match="num_inits"):
    scores.compute_scores("el2n", x, y, config, num_inits=0)


def test_scores_file_round_trip_and_refuses_another_dataset(tmp_path, data):
  x, y = data
  values = np.linspace(0, 1, N).astype(np.float32)
  fp = io.fingerprint(x, y)
  path = str(tmp_path / "scores_el2n.npz")
  scores.save_scores(path, values, method="el2n", fingerprint=fp, config={"epochs": 3})
  got, meta = scores.load_scores(path, fp, "el2n")
  np.testing.assert_array_equal(got, values)
  assert meta == {"method": "el2n", "fingerprint": fp, "n": N, "config": {"epochs": 3}}
  other = io.fingerprint(x[:-1], y[:-1])
  with pytest.raises(ValueError, match="another dataset|not for the given one"):
    scores.load_scores(path, other)
  with pytest.raises(ValueError, match="holds 'el2n' scores"):
    scores.load_scores(path, fp, "grand")
  with pytest.raises(FileNotFoundError):
    scores.load_scores(str(tmp_path / "missing.npz"), fp)
