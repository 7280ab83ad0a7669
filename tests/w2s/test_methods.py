from __future__ import annotations

import numpy as np
import pytest

from aar.w2s.experiment import run_method
from aar.w2s.idea_runner import load_context, save_context
from aar.w2s.idea_runner import main as idea_runner_main
from aar.w2s.methods import IdeaError, builtin_methods, validate_predictions

BASELINES = ["vanilla", "soft", "confident", "logconf", "bootstrap", "zeroshot_prior", "ceiling"]


def test_all_baselines_registered():
    assert set(BASELINES) <= set(builtin_methods())


@pytest.mark.parametrize("method", BASELINES)
def test_each_method_runs_on_a_tiny_synthetic_task(synthetic_prepared, method):
    res = run_method(synthetic_prepared, method, seeds=2)
    s = res.stats
    assert res.student_probs.shape == (2, s.n_items)
    assert ((res.student_probs >= 0) & (res.student_probs <= 1)).all()
    # the synthetic task has a clear gap: the weak view is the strong one under heavy noise
    assert s.gap_ci[0] > 0
    assert s.transfer_acc > 0.6, f"{method} should learn something from the weak labels"
    if method == "ceiling":
        assert abs(s.transfer_acc - s.ceiling_acc) < 1e-9
    if method in ("vanilla", "soft"):
        assert s.transfer_acc > s.weak_acc  # weak-to-strong generalisation on an easy task


def test_context_never_carries_labels_unless_asked(synthetic_prepared):
    ctx = synthetic_prepared.context("final", seed=0)
    assert ctx.true_labels is None
    with pytest.raises(IdeaError, match="true labels"):
        from aar.w2s.methods import get_method

        get_method("ceiling")(ctx)


def test_validate_predictions_errors():
    ids = ["a", "b"]
    assert validate_predictions({"a": 0.1, "b": 1}, ids).tolist() == [0.1, 1.0]
    for bad, msg in [
        ([0.1], "expected 2"),
        ([0.1, 1.5], r"\[0, 1\]"),
        ([0.1, float("nan")], "NaN"),
        ({"a": 0.1}, "miss 1 ids"),
        ({"a": 0.1, "b": 0.2, "c": 0.3}, "unknown ids"),
        (["x", "y"], "not numbers"),
    ]:
        with pytest.raises(IdeaError, match=msg):
            validate_predictions(bad, ids)


def test_idea_file_round_trip_through_a_label_free_context(synthetic_prepared, tmp_path):
    idea = tmp_path / "my_idea.py"
    idea.write_text(
        "def run(ctx):\n    return ctx.fit_head(ctx.train_x, ctx.weak).predict_proba(ctx.test_x)\n"
    )
    ctx = synthetic_prepared.context("dev", seed=1)
    ctx_file = tmp_path / "context.npz"
    save_context(ctx, ctx_file)
    with np.load(ctx_file) as data:
        assert set(data.files) == {"train_x", "test_x", "weak", "meta"}
        assert "label" not in str(data["meta"])
    out = tmp_path / "preds.npy"
    assert idea_runner_main([str(ctx_file), str(idea), str(out)]) == 0
    preds = np.load(out)
    assert preds.shape == (len(ctx.test_ids),)
    direct = run_method(synthetic_prepared, str(idea), seeds=1, split="dev", start_seed=1)
    np.testing.assert_allclose(preds, direct.student_probs[0], rtol=1e-6)
    loaded = load_context(ctx_file)
    assert loaded.true_labels is None and loaded.test_ids == ctx.test_ids
    # the ceiling cannot be submitted, and a broken idea is an error, not a crash
    assert idea_runner_main([str(ctx_file), "ceiling", str(out)]) == 3
    bad = tmp_path / "bad.py"
    bad.write_text("def run(ctx):\n    return [2.0] * len(ctx.test_ids)\n")
    assert idea_runner_main([str(ctx_file), str(bad), str(out)]) == 3


def test_knn_smoothing_denoises_weak_labels_on_the_synthetic_task(synthetic_prepared):
    from aar.w2s.toolkit import cosine_neighbours, knn_smooth

    train = synthetic_prepared.splits["student_train"]
    weak = synthetic_prepared.weak_probs["student_train"]
    smoothed = knn_smooth(train.strong_x, weak, k=15)
    acc = lambda p: float(((p >= 0.5) == train.labels).mean())  # noqa: E731
    assert acc(smoothed) > acc(weak) + 0.03
    nb = cosine_neighbours(train.strong_x, 5)
    assert nb.shape == (len(weak), 5) and not (nb == np.arange(len(weak))[:, None]).any()


def test_every_baseline_runs_on_every_default_task():
    """Fast tier, 1000-row subsets (the home task groups ~20 snippets per film, so fewer rows can leave
    dev empty): every built-in method on the home task and each held-out task."""
    from aar.w2s import defaults
    from aar.w2s.experiment import prepare

    for task in (defaults.HOME_TASK, *defaults.HELD_OUT_TASKS):
        prep = prepare(task, "fast", max_rows=1000, show_progress=False)
        for method in BASELINES:
            res = run_method(prep, method, seeds=1)
            assert res.student_probs.shape == (1, len(prep.splits["final"].ids)), (task, method)
            assert 0 <= res.stats.transfer_acc <= 1
