"""The demo campaign's acceptance (slow: about 5 minutes on a warm feature cache, 10 on a cold one):
`aar demo` ends with a leaderboard, a report whose best official run's public home-task PGR CI lies
above vanilla's with its private and held-out PGRs beside it, and summary.json in the documented shape."""

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
    keys = {"k", "alpha", "leaderboard", "baselines", "vanilla", "top_k", "confirmed", "headline"}
    assert set(summary) == keys
    row_keys = {"rank", "run_id", "author", "commit", "idea_path", "task", "public", "private", "drop"}
    row_keys |= {"visible", "held_out", "review"}
    assert summary["leaderboard"] and all(set(row) == row_keys for row in summary["leaderboard"])
    vanilla = summary["vanilla"]
    top = summary["top_k"][0]  # the best by the one rule: highest public lower bound
    assert top["public"]["ci"][0] > vanilla["public"]["ci"][1]  # the whole CI above vanilla's whole CI
    assert set(top["held_out"]) == {"parentheses", "epistemic"}
    assert summary["confirmed"] == (summary["headline"] is not None)
    report = (out / "report.md").read_text()
    assert "## Headline" in report and ("best confirmed run:" in report or "no run was confirmed" in report)
    assert "parentheses PGR [CI]" in report and "epistemic PGR [CI]" in report  # held-out beside home
