"""The demo campaign's acceptance (slow: about 5 minutes on a warm feature cache, 10 on a cold one):
`aar demo` ends with a leaderboard, a report whose best official home-task PGR CI lies above vanilla's
with the held-out PGRs beside it, and summary.json in the documented shape."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.lab.minilab import AAR


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_beats_vanilla_with_held_out_pgr_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = subprocess.run([*AAR, "demo", "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "official leaderboard" in r.stdout and "report:" in r.stderr and "dashboard" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"leaderboard", "baselines"}
    row_keys = {"author", "commit", "task", "pgr", "pgr_ci", "held_out", "review"}
    assert summary["leaderboard"] and all(set(row) == row_keys for row in summary["leaderboard"])
    vanilla = summary["baselines"]["vanilla"]
    defined = [row for row in summary["leaderboard"] if row["pgr_ci"][0] is not None]
    best = max(defined, key=lambda row: row["pgr_ci"][0])
    assert best["pgr_ci"][0] > vanilla["pgr_ci"][1]  # the whole CI above vanilla's whole CI
    assert set(best["held_out"]) == {"parentheses", "epistemic"}
    report = (out / "report.md").read_text()
    assert "CI above vanilla's CI: yes" in report
    assert "parentheses PGR" in report and "epistemic PGR" in report  # held-out beside home in the table
