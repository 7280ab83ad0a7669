from __future__ import annotations

import numpy as np
import pytest

from aar.w2s.experiment import prepare, run_method, teacher_beats_majority
from aar.w2s.tasks import PROFILES, synthetic_task
from tests.w2s.conftest import synthetic_feature_fn


def _prepare(fractions: dict[str, float], private_fraction: float, n: int = 1200):
    task, vectors = synthetic_task(n=n, dim=16, seed=0)
    task.fractions, task.private_fraction = dict(fractions), private_fraction
    fn = synthetic_feature_fn(vectors, {r.text: r.id for r in task.rows})
    return prepare(
        task,
        weak_model="weak",
        strong_model="strong",
        weak_train_limit=None,
        show_progress=False,
        feature_fn=fn,
    )


def test_held_out_profile_has_an_empty_dev_and_an_all_private_final():
    profile = PROFILES["held_out"]
    prep = _prepare(profile.fractions, profile.private_fraction)
    dev = prep.splits["dev"]
    assert dev.ids == [] and dev.strong_x.shape == (0, 16) and dev.weak_x.shape == (0, 16)
    assert dev.labels.shape == (0,) and prep.weak_probs["dev"].shape == (0,)
    assert prep.ceiling("dev").shape == (0,)
    assert prep.final_private_mask().dtype == bool and prep.final_private_mask().all()
    assert len(prep.final_private_mask()) == len(prep.splits["final"].ids)
    res = run_method(prep, "vanilla", seeds=2, part="private")
    whole = run_method(prep, "vanilla", seeds=2)
    assert res.stats.n_items == whole.stats.n_items and res.to_json()["part"] == "private"
    with pytest.raises(ValueError, match="no test items"):
        run_method(prep, "vanilla", seeds=1, part="public")


def test_scoring_one_part_of_final():
    profile = PROFILES["home"]
    prep = _prepare(profile.fractions, profile.private_fraction)
    mask = prep.final_private_mask()
    final = prep.splits["final"]
    assert len(mask) == len(final.ids) and 0 < mask.sum() < len(mask)
    private = run_method(prep, "vanilla", seeds=2, part="private")
    public = run_method(prep, "vanilla", seeds=2, part="public")
    assert private.stats.n_items == mask.sum() and public.stats.n_items == (~mask).sum()
    assert private.student_probs.shape == (2, len(final.ids))  # the idea predicts all of final
    acc = (((private.student_probs >= 0.5) == final.labels).astype(float))[:, mask].mean()
    assert np.isclose(private.stats.transfer_acc, acc)
    with pytest.raises(ValueError, match="parts"):
        run_method(prep, "vanilla", seeds=1, split="dev", part="private")


def test_an_empty_split_with_a_positive_fraction_is_still_an_error():
    with pytest.raises(ValueError, match="empty dev split"):
        _prepare({"weak_train": 0.5, "student_train": 0.49, "dev": 0.001, "final": 0.009}, 1.0, n=60)


def test_teacher_beats_majority():
    labels = np.array([1] * 70 + [0] * 30)
    ok, acc, majority = teacher_beats_majority(labels, np.full(100, 0.9))  # always the majority class
    assert (ok, acc, majority) == (False, 0.7, 0.7)
    better = np.where(np.arange(100) < 80, labels, 1 - labels).astype(float)
    assert teacher_beats_majority(labels, better) == (True, 0.8, 0.7)
    with pytest.raises(ValueError):
        teacher_beats_majority(np.array([], dtype=int), np.array([]))
