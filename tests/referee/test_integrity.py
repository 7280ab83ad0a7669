"""Detectors on official-run results, and the review CLI."""

from __future__ import annotations

import numpy as np

from aar.referee.integrity import degenerate, run_findings


def test_degenerate_predictions():
    weak = np.linspace(0.05, 0.95, 100)
    assert degenerate(np.full(100, 0.7), weak)["reason"].startswith("constant")
    assert "single class" in degenerate(np.linspace(0.6, 0.9, 100), weak)["reason"]
    assert "weak teacher" in degenerate(weak.copy(), weak)["reason"]
    rng = np.random.default_rng(0)
    assert degenerate(rng.random((3, 100)), weak) is None


def test_run_findings():
    weak = {"home": np.linspace(0.05, 0.95, 50), "other": np.linspace(0.05, 0.95, 50)}
    rng = np.random.default_rng(0)
    preds = {t: rng.random((3, 50)) for t in weak}
    home = {"pgr": 1.4, "pgr_ci": [1.1, 1.7], "transfer_acc": 0.95, "ceiling_acc_ci": [0.8, 0.9]}
    results = {
        "home": {"role": "home", "public": home, "private": home},
        "other": {
            "role": "held_out",
            "private": {"pgr": 0.1, "pgr_ci": [0.0, 0.2], "transfer_acc": 0.6, "ceiling_acc_ci": [0.7, 0.8]},
        },
    }
    kinds = {k for k, _ in run_findings(results, preds, weak, "home", 0.5, determinism_diff=0.3)}
    assert kinds == {"pgr_above_one", "above_ceiling_ci", "home_heldout_gap", "nondeterministic"}
    fine = {"pgr": 0.2, "pgr_ci": [0.1, 0.3], "transfer_acc": 0.75, "ceiling_acc_ci": [0.8, 0.9]}
    results["home"] = {"role": "home", "public": fine, "private": fine}
    assert run_findings(results, preds, weak, "home", 0.5, determinism_diff=0.0) == []
