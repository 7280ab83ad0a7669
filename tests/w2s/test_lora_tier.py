"""The LoRA tier end to end on a tiny causal LM built from a config (no weights needed): prepare, run a
method, the JSON a run prints, the context file of a sandboxed run, and the teacher cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aar.w2s.experiment import prepare, run_method
from aar.w2s.idea_runner import load_context, main, save_context
from aar.w2s.methods import IdeaError
from aar.w2s.students import lora
from aar.w2s.tasks import Row, Task, stable_id

from .test_lora_student import tiny_lm, toy_rows  # noqa: F401  (tiny_lm is a fixture)


def toy_task(n: int = 80) -> Task:
    texts, y = toy_rows(n, seed=7)
    rows = [
        Row(stable_id("toy", i), t, int(label), f"g{i}")
        for i, (t, label) in enumerate(zip(texts, y, strict=True))
    ]
    return Task(name="toy", domain="films", rows=rows, description="Is this review positive? (toy)")


@pytest.fixture()
def prepared(tiny_lm, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AAR_CACHE", str(tmp_path / "cache"))
    return prepare(toy_task(), "lora", weak_model=tiny_lm, strong_model=tiny_lm, show_progress=False)


def test_lora_tier_runs_a_method_and_prints_the_default_tiers_keys(prepared, synthetic_prepared):
    assert prepared.student is not None and prepared.student.kind == "lora"
    assert prepared.student.label_words == (" Yes", " No")
    assert "Is this review positive?" in prepared.student.prompt and "(toy)" not in prepared.student.prompt
    result = run_method(prepared, "vanilla", seeds=2)
    feature_tier = run_method(synthetic_prepared, "vanilla", seeds=1)
    assert result.to_json().keys() == feature_tier.to_json().keys()
    assert result.student_probs.shape == (2, len(prepared.splits["final"].ids))
    assert not np.array_equal(result.student_probs[0], result.student_probs[1])  # seeds differ
    ceiling = run_method(prepared, "ceiling", seeds=1)  # the same fixed student, on true labels
    assert np.all((ceiling.student_probs >= 0) & (ceiling.student_probs <= 1))


def test_feature_only_ideas_fail_clearly_on_the_text_tier(prepared):
    ctx = prepared.context("final", seed=0)
    with pytest.raises(IdeaError, match="gives texts, not features"):
        _ = ctx.train_x
    with pytest.raises(IdeaError, match="gives texts"):
        run_method(prepared, "zeroshot_prior", seeds=1)
    with pytest.raises(IdeaError, match="fit_student"):
        ctx.fit_head(np.zeros((2, 1)), np.zeros(2))
    assert list(ctx.train_inputs[:2]) == prepared.splits["student_train"].texts[:2]


def test_the_context_file_rebuilds_the_same_student(prepared, tmp_path):
    ctx = prepared.context("final", seed=1)
    save_context(ctx, tmp_path / "context.npz")
    loaded = load_context(tmp_path / "context.npz")
    assert loaded.student == prepared.student and loaded.true_labels is None
    assert main([str(tmp_path / "context.npz"), "vanilla", str(tmp_path / "preds.npy")]) == 0
    direct = run_method(prepared, "vanilla", seeds=1, start_seed=1).student_probs[0]
    np.testing.assert_allclose(np.load(tmp_path / "preds.npy"), direct, atol=1e-6)
    meta = json.loads(str(np.load(tmp_path / "context.npz")["meta"]))
    assert meta["student"]["kind"] == "lora" and "labels" not in json.dumps(meta)


def test_a_second_run_reuses_the_teachers_labels(prepared, tiny_lm):  # noqa: F811
    before = lora.COUNTERS["train_examples"]
    again = prepare(toy_task(), "lora", weak_model=tiny_lm, strong_model=tiny_lm, show_progress=False)
    assert lora.COUNTERS["train_examples"] == before  # no teacher was trained: served from the cache
    for split in ("student_train", "final"):
        np.testing.assert_array_equal(again.weak_probs[split], prepared.weak_probs[split])
