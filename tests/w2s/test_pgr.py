from __future__ import annotations

import math

import numpy as np

from aar.w2s.pgr import compare_methods, holm, pgr_stats


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
