"""SLaPkNN (arXiv:2009.08449) against scikit-learn's kNN and the paper's toy example."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from kernelcond import knn


def _clusters(n=60, m=25, d=6, c=4, seed=0):
  rng = np.random.default_rng(seed)
  centres = 3.0 * rng.standard_normal((c, d))
  y_support = rng.integers(0, c, m)
  x_support = centres[y_support] + rng.standard_normal((m, d))
  y_test = rng.integers(0, c, n)
  x_test = centres[y_test] + 1.5 * rng.standard_normal((n, d))
  return (x_support.astype(np.float32), y_support, x_test.astype(np.float32), y_test)


def test_hard_labels_k1_is_1nn():
  xs, ys, xt, _ = _clusters()
  ours = knn.slapknn_predict(xs, ys, xt, k=1).argmax(axis=1)
  reference = KNeighborsClassifier(n_neighbors=1).fit(xs, ys).predict(xt)
  np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("k", [3, 7, None])
def test_hard_labels_are_distance_weighted_knn(k):
  xs, ys, xt, yt = _clusters(seed=1)
  scores = knn.slapknn_predict(xs, ys, xt, k=k)
  neighbours = len(xs) if k is None else k
  sk = KNeighborsClassifier(n_neighbors=neighbours, weights="distance").fit(xs, ys)
  np.testing.assert_array_equal(scores.argmax(axis=1), sk.predict(xt))
  # The scores themselves: sum of 1/d over neighbours of each class.
  proba = scores / scores.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(proba, sk.predict_proba(xt), rtol=1e-4, atol=1e-5)
  assert knn.slapknn_accuracy(xs, ys, xt, yt, k=k) == pytest.approx(sk.score(xt, yt))


def test_two_soft_prototypes_separate_three_classes_on_a_line():
  x_support = np.array([[0.0], [3.0]])
  y_support = np.array([[0.6, 0.4, 0.0], [0.0, 0.4, 0.6]])
  x_test = np.array([[0.2], [0.9], [1.1], [1.5], [1.9], [2.1], [2.8]])
  pred = knn.slapknn_predict(x_support, y_support, x_test).argmax(axis=1)
  np.testing.assert_array_equal(pred, [0, 0, 1, 1, 1, 2, 2])
  # Boundaries at 1 and 2: score_0 = 0.6 / x equals score_1 = 0.4 / x + 0.4 / (3 - x) at x = 1.
  scores = knn.slapknn_predict(x_support, y_support, np.array([[1.0], [2.0]]))
  np.testing.assert_allclose(scores[0, 0], scores[0, 1], rtol=1e-6)
  np.testing.assert_allclose(scores[1, 2], scores[1, 1], rtol=1e-6)
  # Hard labels on the same two points can only ever produce two classes.
  hard = knn.slapknn_predict(x_support, np.array([0, 2]), x_test, num_classes=3)
  assert set(hard.argmax(axis=1)) == {0, 2}


def test_scores_follow_the_inverse_distance_formula():
  rng = np.random.default_rng(2)
  xs = rng.standard_normal((5, 3)).astype(np.float32)
  ys = rng.dirichlet(np.ones(4), 5).astype(np.float32)
  xt = rng.standard_normal((3, 3)).astype(np.float32)
  dist = np.linalg.norm(xt[:, None] - xs[None], axis=-1)
  nearest = np.argsort(dist, axis=1)[:, :2]
  expected = np.stack([(ys[j] / dist[i, j][:, None]).sum(0) for i, j in enumerate(nearest)])
  np.testing.assert_allclose(knn.slapknn_predict(xs, ys, xt, k=2), expected, rtol=1e-4)


def test_test_point_on_a_prototype_takes_its_label():
  xs = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  ys = np.array([[0.2, 0.8], [1.0, 0.0], [1.0, 0.0]])
  scores = knn.slapknn_predict(xs, ys, xs[:1])
  np.testing.assert_allclose(scores, [[0.2, 0.8]])


def test_batching_and_feature_shape_do_not_change_the_result():
  xs, ys, xt, _ = _clusters(n=37, seed=3)
  full = knn.slapknn_predict(xs, ys, xt, k=5)
  for batch_size in (1, 8, 36, 37, 1000):
    batched = knn.slapknn_predict(xs, ys, xt, k=5, batch_size=batch_size)
    assert batched.shape == full.shape
    # Equal up to float32 rounding (matmul blocking depends on the batch shape).
    np.testing.assert_allclose(batched, full, rtol=1e-5)
    np.testing.assert_array_equal(batched.argmax(axis=1), full.argmax(axis=1))
  images = knn.slapknn_predict(xs.reshape(-1, 2, 3), ys, xt.reshape(-1, 2, 3), k=5)
  np.testing.assert_allclose(images, full, rtol=1e-5)


def test_input_errors():
  xs, ys, xt, _ = _clusters()
  with pytest.raises(ValueError, match="k must be positive"):
    knn.slapknn_predict(xs, ys, xt, k=0)
  with pytest.raises(ValueError, match="labels"):
    knn.slapknn_predict(xs, ys[:-1], xt)
  with pytest.raises(ValueError, match="features"):
    knn.slapknn_predict(xs, ys, xt[:, :-1])
