"""Selection: fractions, offsets, class balance, CCS, herding and k-center known answers, errors."""

import numpy as np
import pytest

from kernelcond.prune import select


def test_num_kept_rounds_half_up_and_keeps_at_least_one():
  assert select.num_kept(10, 0.25) == 3  # 2.5 -> 3
  assert select.num_kept(10, 1.0) == 10
  assert select.num_kept(7, 0.01) == 1
  for bad in (0.0, -0.1, 1.5, float("nan")):
    with pytest.raises(ValueError, match="fraction"):
      select.num_kept(10, bad)


def test_keep_by_score_keeps_highest_and_offset_skips_hardest():
  scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
  np.testing.assert_array_equal(select.keep_by_score(scores, 0.5), [1, 3, 5])
  # offset 1/6 drops the single hardest example (index 1).
  np.testing.assert_array_equal(select.keep_by_score(scores, 0.5, offset=1 / 6), [2, 3, 5])
  np.testing.assert_array_equal(select.keep_by_score(scores, 1.0), np.arange(6))
  # Ties: the lower index wins.
  np.testing.assert_array_equal(select.keep_by_score(np.ones(5), 0.4), [0, 1])
  with pytest.raises(ValueError, match="past the end"):
    select.keep_by_score(scores, 0.9, offset=0.5)
  with pytest.raises(ValueError, match="fraction"):
    select.keep_by_score(scores, 0.0)
  with pytest.raises(ValueError, match="offset"):
    select.keep_by_score(scores, 0.5, offset=-0.1)
  with pytest.raises(ValueError, match="NaN"):
    select.keep_by_score(np.array([0.1, np.nan]), 0.5)


def test_random_subset_is_stratified_sorted_and_seeded():
  labels = np.repeat(np.arange(3), [50, 30, 20])
  idx = select.random_subset(labels, 0.3, seed=0)
  assert len(idx) == 30 and np.all(np.diff(idx) > 0)
  np.testing.assert_array_equal(np.bincount(labels[idx]), [15, 9, 6])
  np.testing.assert_array_equal(idx, select.random_subset(labels, 0.3, seed=0))
  assert not np.array_equal(idx, select.random_subset(labels, 0.3, seed=1))
  flat = select.random_subset(labels, 0.3, seed=0, class_balanced=False)
  assert len(flat) == 30 and len(np.unique(flat)) == 30


def test_stratified_counts_sum_exactly():
  labels = np.repeat(np.arange(3), [5, 5, 5])
  counts = select.stratified_counts(labels, 4)  # quotas 4/3 each: one class gets 2
  assert sum(counts.values()) == 4 and sorted(counts.values()) == [1, 1, 2]
  assert counts[0] == 2  # ties go to the lowest class id


def test_herding_known_answer_in_one_dimension():
  # Class 0: values 0, 1, 2, 10 (mean 3.25). Step 1 picks 2 (closest to the mean);
  # step 2 minimises |3.25 - (2 + x) / 2| over {0, 1, 10}: x = 1 (1.5) beats 10 (6).
  # Class 1: values 5, 6, 7, 100 (mean 29.5). Step 1 picks 7; step 2 compares
  # (7+5)/2 = 6, (7+6)/2 = 6.5, (7+100)/2 = 53.5: 6.5 is closest, so 6 joins.
  feats = np.array([[0.0], [1.0], [2.0], [10.0], [5.0], [6.0], [7.0], [100.0]])
  labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
  np.testing.assert_array_equal(select.herding(feats, labels, 0.5), [1, 2, 5, 6])


def test_herding_mean_matches_better_than_random():
  rng = np.random.default_rng(0)
  feats = rng.standard_normal((200, 5))
  labels = np.zeros(200, int)
  idx = select.herding(feats, labels, 0.1)
  err_herd = np.linalg.norm(feats[idx].mean(0) - feats.mean(0))
  errs = [np.linalg.norm(feats[select.random_subset(labels, 0.1, s)].mean(0) - feats.mean(0))
          for s in range(20)]
  assert err_herd < min(errs)


def _farthest_point_loop(x, k, first):
  chosen = [first]
  while len(chosen) < k:
    d = np.array([min(np.sum((x[i] - x[j]) ** 2) for j in chosen) for i in range(len(x))])
    d[chosen] = -1
    chosen.append(int(np.argmax(d)))
  return sorted(chosen)


def test_k_center_matches_a_direct_loop_and_covers_clusters():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((40, 3))
  first = int(np.random.default_rng(7).integers(40))  # the selector's first center
  np.testing.assert_array_equal(select.k_center_greedy(x, 0.25, seed=7),
                                _farthest_point_loop(x, 10, first))
  centers = np.array([[0, 0], [100, 0], [0, 100]], float)
  clusters = np.concatenate([c + 0.1 * rng.standard_normal((10, 2)) for c in centers])
  idx = select.k_center_greedy(clusters, 0.1, seed=3)
  assert sorted(set(i // 10 for i in idx)) == [0, 1, 2]


def test_k_center_per_class_keeps_class_shares():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((30, 2))
  labels = np.repeat([0, 1], [20, 10])
  idx = select.k_center_greedy(x, 0.3, seed=0, labels=labels)
  np.testing.assert_array_equal(np.bincount(labels[idx]), [6, 3])


def test_select_registry_and_errors():
  labels = np.repeat(np.arange(2), 10)
  scores = np.arange(20.0)
  feats = np.arange(40.0).reshape(20, 2)
  np.testing.assert_array_equal(select.select("hardest", 0.25, scores=scores), np.arange(15, 20))
  np.testing.assert_array_equal(select.select("easiest", 0.25, scores=scores), np.arange(5))
  assert len(select.select("ccs", 0.25, scores=scores, labels=labels, beta=0.1)) == 5
  np.testing.assert_array_equal(select.select("random", 0.5, labels=labels, seed=4),
                                select.random_subset(labels, 0.5, 4))
  assert len(select.select("herding", 0.5, labels=labels, features=feats)) == 10
  assert len(select.select("kcenter", 0.5, labels=labels, features=feats)) == 10
  with pytest.raises(ValueError, match="hardest, easiest, ccs, random, herding, kcenter"):
    select.select("el2n_typo", 0.5, scores=scores)
  with pytest.raises(ValueError, match="needs features"):
    select.select("kcenter", 0.5, labels=labels)
  with pytest.raises(ValueError, match="fraction"):
    select.select("random", 1.01, labels=labels)


def test_keep_easiest_keeps_lowest_scores():
  scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
  np.testing.assert_array_equal(select.keep_easiest(scores, 0.5), [0, 2, 4])
  np.testing.assert_array_equal(select.keep_easiest(np.ones(5), 0.4), [0, 1])


def test_allocate_budget_hand_worked():
  # Visit order by size: #3 (0), #0 (1), #2 (3), #4 (6), #1 (10); budget 12:
  # 0 -> min(0, 12//5)=0; #0 -> min(1, 12//4)=1 (11 left); #2 -> min(3, 11//3)=3
  # (8 left); #4 -> min(6, 8//2)=4 (4 left); #1 -> min(10, 4//1)=4.
  np.testing.assert_array_equal(select.allocate_budget([1, 10, 3, 0, 6], 12), [1, 4, 3, 0, 4])
  np.testing.assert_array_equal(select.allocate_budget([2, 2], 4), [2, 2])
  with pytest.raises(ValueError, match="budget"):
    select.allocate_budget([1, 1], 3)


def test_strata_are_equal_width_score_ranges():
  np.testing.assert_array_equal(select.strata(np.array([0.0, 0.24, 0.25, 0.5, 0.99, 1.0]), 4),
                                [0, 0, 1, 2, 3, 3])
  np.testing.assert_array_equal(select.strata(np.ones(3), 4), [0, 0, 0])


def _ccs_reference(scores, k, beta, num_strata):
  """One class, by hand: drop the hardest, bin by equal width, count per bin."""
  order = sorted(range(len(scores)), key=lambda i: -scores[i])
  pool = sorted(order[int(np.floor(beta * len(scores) + 0.5)):])
  lo, hi = min(scores[i] for i in pool), max(scores[i] for i in pool)
  bins = {i: min(int((scores[i] - lo) / (hi - lo) * num_strata), num_strata - 1) for i in pool}
  sizes = [sum(1 for i in pool if bins[i] == b) for b in range(num_strata)]
  return pool, bins, select.allocate_budget(sizes, k)


def test_ccs_drops_the_hardest_and_samples_each_stratum_per_allocation():
  rng = np.random.default_rng(0)
  scores = rng.exponential(size=200)  # skewed: most mass in the easy strata
  labels = np.zeros(200, np.int64)
  for seed in (0, 1):
    idx = select.coverage_centric(scores, labels, 0.1, seed, beta=0.1, num_strata=5)
    pool, bins, picks = _ccs_reference(scores, 20, 0.1, 5)
    assert set(idx) <= set(pool)  # the 20 hardest are gone
    np.testing.assert_array_equal(np.bincount([bins[i] for i in idx], minlength=5), picks)
  # Hardest-first keeps only the top of the range; CCS reaches the easy strata.
  assert scores[idx].min() < np.quantile(scores, 0.2) < scores[select.keep_by_score(scores, 0.1)].min()
  assert not np.array_equal(idx, select.coverage_centric(scores, labels, 0.1, 0, 0.1, 5))


def test_ccs_keeps_class_shares_and_uses_the_beta_rule():
  rng = np.random.default_rng(3)
  labels = np.repeat([0, 1], [60, 40])
  scores = rng.random(100)
  idx = select.coverage_centric(scores, labels, 0.2, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[idx]), [12, 8])
  assert select.ccs_beta(0.8) == 0.0 and select.ccs_beta(0.5) == 0.0
  assert select.ccs_beta(0.1) == pytest.approx(0.3) and select.ccs_beta(0.2) == pytest.approx(0.225)
  # beta too large for the budget: the cut shrinks so each class keeps its share.
  idx = select.coverage_centric(scores, labels, 0.9, seed=0, beta=0.5)
  np.testing.assert_array_equal(np.bincount(labels[idx]), [54, 36])
  with pytest.raises(ValueError, match="beta"):
    select.coverage_centric(scores, labels, 0.2, 0, beta=1.0)
