"""Scores: EL2N vs numpy, GraNd vs a per-example loop, forgetting counts, T=0, score files."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelcond import io
from kernelcond import loo as loo_lib
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
  with pytest.raises(ValueError, match="el2n, grand, forgetting, curvature, krr_loo, krr_el2n"):
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


@pytest.fixture(scope="module")
def smooth_state(data):
  """A trained erf network: its input gradient is smooth, so finite differences converge."""
  config = train.TrainConfig(model="spec_net", model_kwargs={"spec": "fc2:activation=erf",
                                                             "width": 16},
                             epochs=3, batch_size=4, lr=0.1, seed=1)
  state, _ = train.train_and_evaluate(config, *data, num_classes=CLASSES)
  return state


def test_curvature_matches_exact_hessian_vector_products(data, smooth_state):
  x, y = data
  got = scores.curvature(smooth_state, x, y, seed=4, batch_size=5)  # 12 = 5 + 5 + 2 (padded)
  grad_fn = scores.input_gradient_fn(smooth_state)
  # Exact H_x v by forward-over-reverse differentiation, same directions.
  exact = jax.jit(jax.vmap(lambda xi, yi, v: jnp.linalg.norm(
      jax.jvp(lambda z: grad_fn(z, yi), (xi,), (v,))[1]), in_axes=(None, None, 0)))
  expected = []
  for i in range(N):
    directions = scores.curvature_directions(4, i, x.shape[1:], scores.CURVATURE_DRAWS)
    assert set(np.unique(np.asarray(directions))) == {-1.0, 1.0}
    expected.append(float(jnp.mean(exact(jnp.asarray(x[i]), y[i], directions))))
  np.testing.assert_allclose(got, expected, rtol=2e-2)
  assert np.std(got) > 0.05 * np.mean(got)  # examples differ: the check can fail
  # Chunking does not change an example's directions: other chunks give the same scores up
  # to float32 rounding, which the finite difference amplifies by 1/h (2e-5 relative seen on
  # an AMD EPYC), while other directions (another seed) move them by far more.
  np.testing.assert_allclose(scores.curvature(smooth_state, x, y, seed=4, batch_size=12), got,
                             rtol=1e-3)
  other = scores.curvature(smooth_state, x, y, seed=5, batch_size=5)
  assert np.max(np.abs(other - got) / got) > 1e-2


def _fc3_kernel(x):
  from kernelcond import kernels
  return np.asarray(kernels.kernel_matrix(kernels.make_kernel_fn("fc3", "native"), x), np.float64)


def test_krr_loo_matches_refitting_without_each_example(data):
  x, y = data
  k = _fc3_kernel(x)
  t = np.eye(CLASSES)[y] - 1.0 / CLASSES
  reg = 1e-2
  lam = reg * np.trace(k) / N  # the ridge is computed once, from the full kernel
  expected = []
  for i in range(N):
    rest = np.arange(N) != i
    alpha = np.linalg.solve(k[np.ix_(rest, rest)] + lam * np.eye(N - 1), t[rest])
    expected.append(np.linalg.norm(t[i] - k[i, rest] @ alpha))
  np.testing.assert_allclose(scores.krr_loo(x, y, CLASSES, "fc3", reg), expected, rtol=2e-3)


def test_krr_loo_above_the_exact_limit_is_nystrom(data, monkeypatch):
  # Above loo.EXACT_AUTO_MAX_N the score uses the Nystrom kernel; with every
  # example a landmark that kernel is the exact one, so the scores agree.
  x, y = data
  exact = scores.krr_loo(x, y, CLASSES, "fc3", 1e-2)
  monkeypatch.setattr(scores.loo, "EXACT_AUTO_MAX_N", N - 1)
  monkeypatch.setattr(scores, "NYSTROM_LANDMARKS", N)
  np.testing.assert_allclose(scores.krr_loo(x, y, CLASSES, "fc3", 1e-2), exact, rtol=2e-2,
                             atol=2e-3)


def test_krr_el2n_predicts_each_half_from_the_other(data):
  from kernelcond.prune import select
  x, y = data
  k = _fc3_kernel(x)
  t = np.eye(CLASSES)[y] - 1.0 / CLASSES
  reg = 1e-2
  first = np.zeros(N, bool)
  first[select.random_subset(y, 0.5, 7)] = True
  expected = np.zeros(N)
  for a in (first, ~first):
    k_aa = k[np.ix_(a, a)]
    alpha = np.linalg.solve(k_aa + reg * np.trace(k_aa) / a.sum() * np.eye(a.sum()), t[a])
    expected[~a] = np.linalg.norm(k[np.ix_(~a, a)] @ alpha - t[~a], axis=1)
  got = scores.krr_el2n(x, y, CLASSES, "fc3", reg, seed=7)
  np.testing.assert_allclose(got, expected, rtol=2e-3)
  assert not np.allclose(got, scores.krr_el2n(x, y, CLASSES, "fc3", reg, seed=8))


def test_krr_el2n_above_the_exact_limit_is_nystrom(data, monkeypatch):
  # Above max_n each half is solved in the feature space of the Nystrom kernel; with every
  # example a landmark that kernel is the exact one, so the scores agree.
  x, y = data
  exact = scores.krr_el2n(x, y, CLASSES, "fc3", 1e-2, seed=7)
  monkeypatch.setattr(scores, "NYSTROM_LANDMARKS", N)
  np.testing.assert_allclose(scores.krr_el2n(x, y, CLASSES, "fc3", 1e-2, seed=7, max_n=N - 1),
                             exact, rtol=2e-2, atol=2e-3)
  # with few landmarks it is an approximation, not the same numbers
  monkeypatch.setattr(scores, "NYSTROM_LANDMARKS", 8)
  few = scores.krr_el2n(x, y, CLASSES, "fc3", 1e-2, seed=7, max_n=N - 1)
  assert few.shape == exact.shape and not np.allclose(few, exact, rtol=2e-2)


def test_kernel_scores_through_the_registry(data):
  x, y = data
  config = train.TrainConfig(model="mlp", model_kwargs={"widths": (4,)})
  loo = scores.compute_scores("krr_loo", x, y, config, num_inits=3, num_classes=CLASSES,
                              kernel_reg=1e-2)
  np.testing.assert_allclose(loo, scores.krr_loo(x, y, CLASSES, "fc3", 1e-2), rtol=1e-6)
  el2n = scores.compute_scores("krr_el2n", x, y, config, num_inits=2, seed=7,
                               num_classes=CLASSES, kernel_reg=1e-2)
  halves = [scores.krr_el2n(x, y, CLASSES, "fc3", 1e-2, seed=s) for s in (7, 8)]
  np.testing.assert_allclose(el2n, (halves[0] + halves[1]) / 2, rtol=1e-5)
  k = _fc3_kernel(x).astype(np.float32)
  t = np.eye(CLASSES, dtype=np.float32)[y] - 1 / CLASSES
  chosen = scores.krr_reg_by_loo(lambda reg: loo_lib.loo_predictions(k, t, reg), t)
  assert chosen in scores.KRR_REGS


def test_spearman_matrix_against_rank_pearson():
  rng = np.random.default_rng(0)
  a = rng.random(30)
  named = {"a": a, "b": a ** 3 + 0.01 * rng.random(30), "c": -a, "d": rng.random(30)}
  names, rho = scores.spearman_matrix(named)
  assert names == ["a", "b", "c", "d"]
  ranks = {k: np.argsort(np.argsort(v)) for k, v in named.items()}
  for i, p in enumerate(names):
    for j, q in enumerate(names):
      np.testing.assert_allclose(rho[i, j], np.corrcoef(ranks[p], ranks[q])[0, 1], atol=1e-12)
  assert rho[0, 2] == pytest.approx(-1.0)
  with pytest.raises(ValueError, match="at least two"):
    scores.spearman_matrix({"a": a})
