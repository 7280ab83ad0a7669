from __future__ import annotations

import math

import numpy as np

from aar.w2s.pgr import MIN_GAP_Z, compare_methods, holm, holm_adjusted, pgr_stats, ratio_ci, ratio_samples


def _preds_with_accuracy(labels: np.ndarray, acc: float, rng: np.random.Generator) -> np.ndarray:
    wrong = rng.random(len(labels)) > acc
    return np.where(wrong, 1 - labels, labels).astype(float)


def test_point_estimates_on_a_hand_made_case():
    labels = np.array([1, 0] * 50)
    weak = labels.copy().astype(float)
    weak[:40] = 1 - weak[:40]  # 60% correct
    ceiling = labels.copy().astype(float)
    ceiling[:10] = 1 - ceiling[:10]  # 90% correct
    student = labels.copy().astype(float)
    student[:25] = 1 - student[:25]  # 75% correct
    r = pgr_stats(labels, weak, ceiling, student)
    assert (r.weak_acc, r.ceiling_acc, r.transfer_acc) == (0.6, 0.9, 0.75)
    assert math.isclose(r.pgr, 0.5)
    assert r.gap_ci[0] > 0 and r.pgr_ci[0] < 0.5 < r.pgr_ci[1]
    assert r.defined


def test_pgr_is_undefined_when_the_gap_is_not_significant():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    weak = _preds_with_accuracy(labels, 0.70, rng)
    ceiling = weak.copy()
    ceiling[:3] = labels[:3]  # ceiling at most a hair better than weak
    student = _preds_with_accuracy(labels, 0.8, rng)
    r = pgr_stats(labels, weak, ceiling, student)
    assert not r.defined and math.isnan(r.pgr) and all(math.isnan(v) for v in r.pgr_ci)
    assert r.gap_ci[0] <= 0


def test_perfect_recovery_and_no_recovery():
    labels = np.array([0, 1] * 200)
    rng = np.random.default_rng(1)
    weak = _preds_with_accuracy(labels, 0.6, rng)
    ceiling = labels.astype(float)
    assert math.isclose(pgr_stats(labels, weak, ceiling, ceiling).pgr, 1.0)
    assert math.isclose(pgr_stats(labels, weak, ceiling, weak).pgr, 0.0)


def test_seed_dimension_and_ci_width():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 300)
    weak = _preds_with_accuracy(labels, 0.65, rng)
    ceiling = _preds_with_accuracy(labels, 0.9, rng)
    students = np.stack([_preds_with_accuracy(labels, 0.75, rng) for _ in range(5)])
    r = pgr_stats(labels, weak, ceiling, students)
    assert r.n_seeds == 5 and r.transfer_seed_std > 0
    assert r.transfer_acc_ci[0] < r.transfer_acc < r.transfer_acc_ci[1]
    small = pgr_stats(labels[:60], weak[:60], ceiling[:60], students[:, :60])
    assert (small.transfer_acc_ci[1] - small.transfer_acc_ci[0]) > (
        r.transfer_acc_ci[1] - r.transfer_acc_ci[0]
    )


def test_paired_comparison_detects_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 1000)
    weak = _preds_with_accuracy(labels, 0.6, rng)
    ceiling = _preds_with_accuracy(labels, 0.9, rng)
    a = _preds_with_accuracy(labels, 0.8, rng)
    b = a.copy()
    flip = np.flatnonzero(a == labels)[:60]  # b = a made wrong on 60 items
    b[flip] = 1 - b[flip]
    c = compare_methods(labels, weak, ceiling, a, b)
    assert math.isclose(c.acc_diff, 0.06)
    assert c.acc_diff_ci[0] > 0 and c.p_value < 0.01
    same = compare_methods(labels, weak, ceiling, a, a)
    assert same.acc_diff == 0 and same.p_value == 1.0


def test_holm_correction():
    assert holm([0.001, 0.02, 0.04]) == [True, True, True]
    assert holm([0.001, 0.03, 0.04]) == [True, False, False]  # 0.03 > 0.05/2: stop there
    assert holm([0.01, 0.011, 0.012]) == [True, True, True]
    assert holm([0.2, 0.01]) == [False, True]


def _gap_case(n: int, k_up: int, k_down: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, weak and ceiling predictions: the ceiling alone is right on ``k_up`` items, the weak
    teacher alone on ``k_down``, and both are right on half of the rest."""
    labels = np.array([0, 1] * (n // 2))
    weak = labels.astype(float).copy()
    ceiling = weak.copy()
    weak[:k_up] = 1 - weak[:k_up]
    ceiling[k_up : k_up + k_down] = 1 - ceiling[k_up : k_up + k_down]
    both_wrong = np.arange(k_up + k_down, n, 2)
    weak[both_wrong] = ceiling[both_wrong] = 1 - labels[both_wrong]
    return labels, weak, ceiling


def test_gap_se_is_analytic_from_paired_differences():
    labels, weak, ceiling = _gap_case(400, 30, 10)
    r = pgr_stats(labels, weak, ceiling, ceiling)
    d = np.r_[np.ones(30), -np.ones(10), np.zeros(360)]
    assert math.isclose(r.gap, d.mean()) and math.isclose(r.gap_se, d.std(ddof=1) / math.sqrt(400))
    assert math.isclose(r.gap_z, r.gap / r.gap_se)
    assert set(r.to_dict()) >= {"gap_se", "gap_z", "pgr", "pgr_ci", "gap_ci"}


def test_a_gap_of_two_standard_errors_is_undefined_and_four_is_defined():
    rng = np.random.default_rng(5)
    labels, weak, ceiling = _gap_case(400, 4)  # z ~ 2: a bootstrap CI could well exclude 0
    student = _preds_with_accuracy(labels, 0.9, rng)
    r = pgr_stats(labels, weak, ceiling, student)
    assert 1.5 < r.gap_z < 2.5 and r.gap > 0
    assert not r.defined and all(math.isnan(v) for v in r.pgr_ci)
    assert math.isnan(compare_methods(labels, weak, ceiling, student, weak).pgr_diff)
    labels, weak, ceiling = _gap_case(400, 16)  # z ~ 4
    r = pgr_stats(labels, weak, ceiling, ceiling)
    assert 3.5 < r.gap_z < 4.5 and r.defined and math.isclose(r.pgr, 1.0)
    c = compare_methods(labels, weak, ceiling, ceiling, weak)
    assert math.isclose(c.pgr_diff, 1.0)


def test_defined_is_deterministic_whatever_the_bootstrap():
    for k in (4, 9, 10, 11, 16):  # around the 3-SE threshold (k = 9 or 10 at n = 400)
        labels, weak, ceiling = _gap_case(400, k)
        flags = {
            pgr_stats(labels, weak, ceiling, ceiling, n_boot=n_boot, seed=seed).defined
            for n_boot in (20, 200, 2000)
            for seed in (0, 1)
        }
        assert len(flags) == 1, k
        z = pgr_stats(labels, weak, ceiling, ceiling, n_boot=20).gap_z
        assert flags == {z > MIN_GAP_Z}


def test_ratio_ci_keeps_every_replicate():
    finite = np.linspace(0.0, 1.0, 900)
    # 10% of replicates with a gap <= 0 and a positive numerator: +inf, so the upper side is unbounded
    samples = ratio_samples(np.r_[finite, np.ones(100)], np.r_[np.ones(900), np.zeros(100)])
    assert np.isinf(samples[900:]).all() and (samples[900:] > 0).all()
    lo, hi = ratio_ci(samples)
    assert math.isnan(hi)
    # the lower bound is the 2.5% quantile of all 1000 replicates, not of the 900 finite ones
    assert math.isclose(lo, float(np.quantile(np.r_[finite, np.full(100, 2.0)], 0.025)))
    assert lo > float(np.quantile(finite, 0.025))  # the old rule (drop them) gives a different bound
    # negative numerators give -inf: the lower side is unbounded
    neg = ratio_samples(np.r_[finite, -np.ones(100)], np.r_[np.ones(900), -np.ones(100)])
    assert math.isnan(ratio_ci(neg)[0]) and math.isfinite(ratio_ci(neg)[1])
    # 0/0 counts as unbounded on both sides
    zero = ratio_samples(np.r_[finite, np.zeros(100)], np.r_[np.ones(900), np.zeros(100)])
    assert np.isnan(zero[900:]).all() and all(math.isnan(v) for v in ratio_ci(zero))
    # a few unbounded replicates (under 2.5%) leave both bounds finite
    few = ratio_samples(np.r_[finite, np.ones(10)], np.r_[np.ones(900), np.zeros(10)])
    assert all(math.isfinite(v) for v in ratio_ci(few))


def test_pgr_ci_is_the_percentile_over_all_bootstrap_replicates():
    rng = np.random.default_rng(6)
    labels, weak, ceiling = _gap_case(300, 12)  # z ~ 3.5: some replicates have a gap <= 0
    student = _preds_with_accuracy(labels, 0.55, rng)
    r = pgr_stats(labels, weak, ceiling, student, n_boot=500, seed=3)
    assert r.defined
    from aar.w2s.pgr import _bootstrap_means, _correctness_matrices

    _, mats = _correctness_matrices(labels, weak, ceiling, student)
    bw, bc, bt = _bootstrap_means(mats, 500, np.random.default_rng(3))
    expected = ratio_ci(ratio_samples(bt - bw, bc - bw))
    assert np.allclose(r.pgr_ci, expected, equal_nan=True)
    finite_only = np.quantile(((bt - bw) / (bc - bw))[bc - bw > 0], [0.025, 0.975])
    if (bc - bw <= 0).any():  # dropping them (the old rule) would give a narrower interval
        lo, hi = r.pgr_ci
        assert math.isnan(lo) or math.isnan(hi) or hi - lo >= finite_only[1] - finite_only[0]


def test_holm_adjusted_matches_holm_and_is_monotone():
    ps = [0.001, 0.03, 0.04, 0.2, 0.011, 0.5]
    adj = holm_adjusted(ps)
    assert all(0 <= a <= 1 for a in adj) and all(a >= p for a, p in zip(adj, ps, strict=True))
    order = np.argsort(ps)
    assert all(np.diff(np.array(adj)[order]) >= 0)
    for alpha in (0.01, 0.05, 0.1, 0.3):
        assert [a <= alpha for a in adj] == holm(ps, alpha)
    assert holm_adjusted([0.3, 0.4]) == [0.6, 0.6] and holm_adjusted([0.9, 0.8]) == [1.0, 1.0]
    assert holm_adjusted([]) == []
