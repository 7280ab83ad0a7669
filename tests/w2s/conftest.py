from __future__ import annotations

import numpy as np
import pytest

from aar.w2s.experiment import prepare
from aar.w2s.tasks import synthetic_task


def synthetic_feature_fn(vectors: dict[str, list[float]], text_to_id: dict[str, str]):
    """Strong model = the clean features; weak model = the same features under heavy independent
    noise, so the weak teacher's errors are unlearnable noise and a student can generalise past it."""

    def feature_fn(model, texts, show_progress=False, stats=None):
        x = np.array([vectors[text_to_id[t]] for t in texts], dtype=np.float32)
        if model == "weak":
            rng = np.random.default_rng(1)
            return x + rng.normal(scale=1.5, size=x.shape).astype(np.float32)
        return x

    return feature_fn


@pytest.fixture(scope="session")
def synthetic_prepared():
    task, vectors = synthetic_task(n=1200, dim=16, seed=0)
    text_to_id = {r.text: r.id for r in task.rows}
    return prepare(
        task,
        weak_model="weak",
        strong_model="strong",
        weak_train_limit=None,  # the synthetic teacher uses every weak_train label
        show_progress=False,
        feature_fn=synthetic_feature_fn(vectors, text_to_id),
    )
