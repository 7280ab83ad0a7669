"""The Ladder as a pure function: what it releases and what it refuses to release."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from aar.referee.ladder import LadderRule, jitter_u, ladder_step, zero_one_loss

RULE = LadderRule()
MID = 0.5  # jitter uniform at the median: no extra jitter


def _labels(n=400, seed=0):
    return (np.random.default_rng(seed).random(n) < 0.6).astype(int)


def _base(y):
    base = y.astype(float)
    base[:100] = 1 - base[:100]  # 75% correct
    return base


def step(new, best, y, released=0.75, j=1, u=MID, rule=RULE):
    return ladder_step(zero_one_loss(new, y), zero_one_loss(best, y), released, query_index=j, u=u, rule=rule)


def test_single_flip_is_never_released_whatever_its_direction():
    y = _labels()
    base = _base(y)
    for i in range(200):  # fixing a wrong item or breaking a right one
        p = base.copy()
        p[i] = 1 - p[i]
        d = step(p, base, y)
        assert not d.improved and d.released_accuracy == 0.75 and d.changed_rows == 1


def test_real_improvement_is_released_and_rounded_to_the_binomial_resolution():
    y = _labels()
    base = _base(y)
    better = base.copy()
    better[:40] = 1 - better[:40]  # fixes 40 items: 75% -> 85%
    d = step(better, base, y)
    assert d.improved and d.z > d.threshold and d.resolution == 0.5 / np.sqrt(len(y))
    assert abs(d.released_accuracy - 0.85) <= d.resolution / 2 + 1e-6


def test_small_or_mixed_changes_are_not_released():
    y = _labels()
    base = _base(y)
    mixed = base.copy()
    mixed[:6] = 1 - mixed[:6]  # 6 fixes
    mixed[200:204] = 1 - mixed[200:204]  # 4 breaks: net +2 of 10 changed
    assert not step(mixed, base, y).improved
    same = step(base, base, y)
    assert not same.improved and same.released_accuracy == 0.75


def test_fewer_rows_than_the_minimum_are_never_released_even_when_all_are_fixes():
    y = _labels()
    base = _base(y)
    few = base.copy()
    few[: RULE.min_changed(len(y)) - 1] = 1 - few[: RULE.min_changed(len(y)) - 1]  # all fixes, z ~ 4.4
    d = step(few, base, y)
    assert d.z > RULE.threshold(1) and not d.improved


def test_the_bar_rises_with_every_query_against_the_same_best_and_sums_to_alpha():
    levels = [RULE.alpha / (j * (j + 1)) for j in range(1, 100_000)]
    assert sum(levels) <= RULE.alpha
    assert RULE.threshold(1) < RULE.threshold(10) < RULE.threshold(1000)
    assert abs(RULE.threshold(1) - norm.isf(RULE.alpha / 2)) < 1e-12
    y = _labels()
    base = _base(y)
    better = base.copy()
    better[:24] = 1 - better[:24]  # z ~ 4.9: released early, refused after many queries on one best
    assert step(better, base, y, j=1).improved
    assert not step(better, base, y, j=10_000).improved


def test_the_keyed_jitter_only_raises_the_bar_and_is_a_function_of_the_submission():
    y = _labels()
    base = _base(y)
    better = base.copy()
    better[:24] = 1 - better[:24]
    low = step(better, base, y, u=MID)
    high = step(better, base, y, u=1 - 1e-12)
    assert high.threshold > low.threshold == RULE.threshold(1) and not high.improved
    key = b"k" * 32
    assert jitter_u(key, "t", 1, b"abc") == jitter_u(key, "t", 1, b"abc")
    assert jitter_u(key, "t", 1, b"abc") != jitter_u(key, "t", 1, b"abd")
    assert jitter_u(key, "t", 1, b"abc") != jitter_u(b"j" * 32, "t", 1, b"abc")
    draws = [jitter_u(key, i) for i in range(2000)]
    assert 0 < min(draws) and max(draws) < 1 and abs(np.mean(draws) - 0.5) < 0.03


def test_no_improvement_submissions_are_released_at_most_alpha_of_the_time():
    """Label-blind variants of the best, as a boosting attacker sends them: however many are sent
    against one best, the chance that any is released stays below alpha (here 200 queries each)."""
    rng = np.random.default_rng(3)
    y = _labels(220)
    base = y.astype(float)
    base[:70] = 1 - base[:70]
    unsure = np.arange(40, 100)  # rows where the base is right half the time
    released = 0
    trials = 100
    for _ in range(trials):
        for j in range(1, 201):
            p = base.copy()
            flip = unsure[rng.random(len(unsure)) < 0.5]
            p[flip] = 1 - p[flip]
            if step(p, base, y, released=0.68, j=j, u=rng.random()).improved:
                released += 1
                break
    assert released / trials <= RULE.alpha + 0.03


def test_probability_changes_that_keep_the_label_carry_no_signal():
    y = _labels()
    p = np.where(y == 1, 0.9, 0.1)
    q = p.copy()
    q[:50] = np.where(y[:50] == 1, 0.51, 0.49)
    assert np.array_equal(zero_one_loss(p, y), zero_one_loss(q, y))
