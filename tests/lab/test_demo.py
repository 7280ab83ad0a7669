"""The demo campaign's acceptance (slow: about 5 minutes on a warm feature cache, 10 on a cold one):
`aar demo` ends with a leaderboard, a report whose headline is a private-split number with its CI,
the public -> private drop and the held-out PGRs, a run confirmed against vanilla on private (Holm over
the top k) whose private CI lies above vanilla's private CI, and summary.json in the documented shape."""

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
    top = summary["top_k"][0]  # the best by the one rule: highest public lower bound
    assert set(top["held_out"]) == {"navigate"} and not top["visible"]
    assert summary["confirmed"] and summary["headline"] is not None, summary["top_k"]
    head = summary["headline"]
    assert head["private_ci"][0] is not None and head["private_half_width"] is not None
    assert head["drop"] is not None and set(head["held_out"]) == {"navigate"}
    assert head["private_ci_above_vanilla"], (head, summary["vanilla"])
    report = (out / "report.md").read_text()
    assert "## Headline" in report and ("best confirmed run:" in report or "no run was confirmed" in report)
    assert "navigate PGR [CI]" in report  # held-out beside home


def test_demo_tier_flag_replaces_the_campaigns_tier_and_names_the_field_when_wrong(tmp_path: Path) -> None:
    """`aar demo --tier X` is the campaign's testbed.tier (how bench/cold_start.py measures the fp32
    tier on a CPU where `auto` picks bf16); a wrong value is a clear error, not a traceback."""
    r = subprocess.run(
        [*AAR, "demo", "--tier", "nope", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "testbed.tier" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "demo" / "data").exists()  # nothing prepared
