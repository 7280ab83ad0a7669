"""Acceptance (slow, ~20 min on 2 cores): the scripted researcher alone for 10 minutes on the default
home task gets an official PGR whose CI lies above vanilla's PGR (bench/scripted_researcher.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_scripted_researcher_beats_vanilla(tmp_path):
    path = Path(__file__).resolve().parents[2] / "bench" / "scripted_researcher.py"
    spec = importlib.util.spec_from_file_location("scripted_researcher_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.main(["--minutes", "10", "--out", str(tmp_path / "summary.json")])
    assert summary["done_runs"] >= 1 and summary["posts"] >= 1
    # "CI above vanilla's": the lower bound above vanilla's PGR (the strict reading, above vanilla's whole CI,
    # is out of reach while the home task's ceiling-weak gap is ~4 points: PGR CIs span ~2 units)
    assert summary["ci_low_above_vanilla_pgr"], summary
