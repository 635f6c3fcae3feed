"""Dynamic pruning: forgetting counts at checks, the redraw rule, and the training loop."""

import numpy as np
import pytest

from kernelcond.nets import train
from kernelcond.prune import dynamic
from kernelcond.prune import scores
from kernelcond.prune import select


def test_tracker_counts_like_the_static_forgetting_score():
  rng = np.random.default_rng(0)
  correct = rng.random((6, 40)) < 0.6
  correct[:, 3] = False  # never learned
  tracker = dynamic.new_tracker(40)
  for row in correct:
    tracker = dynamic.forgetting_update(tracker, row)
  np.testing.assert_array_equal(dynamic.forgetting_score(tracker),
                                scores.forgetting_from_correctness(correct))
  assert dynamic.forgetting_score(tracker)[3] == 7


def test_next_active_keeps_most_forgotten_per_class_and_restores_a_share():
  labels = np.repeat([0, 1], 10)
  score = np.concatenate([np.arange(10.0), 10 + np.arange(10.0)])
  # k=10: 5 places per class; restore 0.4 -> 2 random places, 3 most forgotten.
  for seed in range(5):
    idx = dynamic.next_active(score, labels, 10, 0.4, np.random.default_rng(seed))
    assert len(idx) == 10 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [5, 5])
    assert {7, 8, 9, 17, 18, 19} <= set(idx)
  greedy = dynamic.next_active(score, labels, 10, 0.0, np.random.default_rng(0))
  np.testing.assert_array_equal(greedy, [5, 6, 7, 8, 9, 15, 16, 17, 18, 19])
  draws = {tuple(dynamic.next_active(score, labels, 10, 1.0, np.random.default_rng(s)))
           for s in range(5)}
  assert len(draws) > 1
  with pytest.raises(ValueError, match="restore"):
    dynamic.DynamicConfig(restore=1.5)


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((60, 4, 4, 1)).astype(np.float32)
  y = np.repeat(np.arange(3), 20).astype(np.int32)
  x += y[:, None, None, None] * 0.5
  return x, y


CONFIG = train.TrainConfig(model="mlp", model_kwargs={"widths": (8,)}, batch_size=10, lr=0.1,
                           seed=2)


def test_without_refresh_it_is_static_random_pruning(data):
  x, y = data
  # every=10 full epochs (60 steps) >= the 12-step budget: the first random set only.
  state, metrics = dynamic.train_dynamic(CONFIG, dynamic.DynamicConfig(every=10), 0.5, x, y,
                                         x, y, num_classes=3, total_steps=12)
  kept = select.random_subset(y, 0.5, CONFIG.seed)
  ref_state, ref = train.train_and_evaluate(CONFIG.__class__(**{**CONFIG.to_dict(), "steps": 12}),
                                            x[kept], y[kept], x, y, num_classes=3)
  np.testing.assert_allclose(train.predict(state, x), train.predict(ref_state, x), rtol=1e-5,
                             atol=1e-6)
  assert metrics["test_accuracy"] == ref["test_accuracy"]
  assert metrics["refreshes"] == 0 and metrics["ever_active"] == 0.5


def test_refreshes_change_the_active_set_and_resume(data, tmp_path):
  x, y = data
  config = dynamic.DynamicConfig(every=1, restore=0.5)  # 6 steps per refresh
  _, metrics = dynamic.train_dynamic(CONFIG, config, 0.3, x, y, x, y, num_classes=3,
                                     total_steps=24, checkpoint_dir=str(tmp_path / "d"))
  assert metrics["refreshes"] == 3 and metrics["steps"] == 24 and metrics["n_kept"] == 18
  assert metrics["ever_active"] > 0.3
  # A finished run resumes to the same result without training.
  _, again = dynamic.train_dynamic(CONFIG, config, 0.3, x, y, x, y, num_classes=3,
                                   total_steps=24, checkpoint_dir=str(tmp_path / "d"))
  assert again["test_accuracy"] == metrics["test_accuracy"]
