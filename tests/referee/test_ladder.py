"""The Ladder as a pure function: what it releases and what it refuses to release."""

from __future__ import annotations

import numpy as np

from aar.referee.ladder import ladder_step, zero_one_loss


def _labels(n=400, seed=0):
    return (np.random.default_rng(seed).random(n) < 0.6).astype(int)


def test_first_release_is_rounded_to_binomial_resolution():
    y = _labels()
    p = y.astype(float)
    p[:37] = 1 - p[:37]
    d = ladder_step(zero_one_loss(p, y), None, None)
    assert d.improved and d.resolution == 0.5 / np.sqrt(len(y))
    assert abs(d.released_accuracy - (1 - 37 / len(y))) <= d.resolution / 2 + 1e-9


def test_single_flip_is_never_released_whatever_its_direction():
    y = _labels()
    base = y.astype(float)
    base[:100] = 1 - base[:100]  # 75% correct
    best = zero_one_loss(base, y)
    for i in range(200):  # fixing a wrong item or breaking a right one: z is exactly 1 either way
        p = base.copy()
        p[i] = 1 - p[i]
        d = ladder_step(zero_one_loss(p, y), best, 0.75)
        assert not d.improved and d.released_accuracy == 0.75
        assert abs(abs(d.z) - 1.0) < 1e-9


def test_real_improvement_is_released_and_rounded():
    y = _labels()
    base = y.astype(float)
    base[:100] = 1 - base[:100]
    better = base.copy()
    better[:40] = 1 - better[:40]  # fixes 40 items: 75% -> 85%
    d = ladder_step(zero_one_loss(better, y), zero_one_loss(base, y), 0.75)
    assert d.improved and d.z > 2
    assert abs(d.released_accuracy - 0.85) <= d.resolution / 2 + 1e-6


def test_small_or_mixed_changes_are_not_released():
    y = _labels()
    base = y.astype(float)
    base[:100] = 1 - base[:100]
    mixed = base.copy()
    mixed[:6] = 1 - mixed[:6]  # 6 fixes
    mixed[200:204] = 1 - mixed[200:204]  # 4 breaks: net +2 of 10 changed
    d = ladder_step(zero_one_loss(mixed, y), zero_one_loss(base, y), 0.75)
    assert not d.improved
    same = ladder_step(zero_one_loss(base, y), zero_one_loss(base, y), 0.75)
    assert not same.improved and same.released_accuracy == 0.75


def test_probability_changes_that_keep_the_label_carry_no_signal():
    y = _labels()
    p = np.where(y == 1, 0.9, 0.1)
    q = p.copy()
    q[:50] = np.where(y[:50] == 1, 0.51, 0.49)
    assert np.array_equal(zero_one_loss(p, y), zero_one_loss(q, y))
