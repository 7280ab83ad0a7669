"""The campaign report, plots, summary and terminal table, driven by a synthetic referee snapshot."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from aar.lab import plots
from aar.lab.report import (
    best_run,
    ci_above_vanilla,
    headline,
    leaderboard,
    summary,
    terminal_table,
    vanilla,
    write_report,
    write_summary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOME, HELD = "sentiment_hotels", ["parentheses", "epistemic"]
PLOT_NAMES = [name for name, _, _ in plots.FIGURES]


def _res(pgr, ci, role, transfer=0.8):
    return {
        "role": role,
        "pgr": pgr,
        "pgr_ci": list(ci),
        "transfer_acc": transfer,
        "transfer_acc_ci": [transfer - 0.02, transfer + 0.02],
        "weak_acc": 0.70,
        "ceiling_acc": 0.88,
        "gap": 0.18,
        "gap_ci": [0.12, 0.24],
        "n_items": 588,
        "n_seeds": 3,
    }


def _results(home, paren=(0.2, (0.0, 0.4)), epi=(None, (None, None)), transfer=0.8):
    return {
        HOME: _res(*home, "home", transfer),
        "parentheses": _res(*paren, "held_out"),
        "epistemic": _res(*epi, "held_out"),
    }


def _run(rid, author, idea, home, *, minute, status="done", review="unreviewed", baseline=False, **kw):
    return {
        "id": rid,
        "author": author,
        "commit": f"c{rid:039d}",
        "idea_path": idea,
        "task": HOME,
        "seeds": 3,
        "status": status,
        "error": kw.get("error"),
        "baseline": baseline,
        "review_state": review,
        "review_reason": None,
        "results": _results(home, **kw.get("extra", {})) if status == "done" else None,
        "created_at": f"2026-11-28T19:{max(minute - 5, 0):02d}:00",
        "finished_at": f"2026-11-28T19:{minute:02d}:00" if status in ("done", "failed") else None,
    }


def _baseline(rid, method, pgr, ci):
    return _run(rid, "baselines", method, (pgr, ci), minute=0, review="verified", baseline=True)


def make_snapshot() -> dict:
    """3 researchers, 9 official runs (a failed one, a queued one, an undefined PGR, a rejected
    high scorer, a high point value with a wide CI), 7 baselines and 2 flags."""
    base = [
        _baseline(1, "vanilla", 0.05, (-0.14, 0.21)),
        _baseline(2, "soft", 0.12, (-0.05, 0.30)),
        _baseline(3, "confident", 0.20, (0.02, 0.38)),
        _baseline(4, "logconf", 0.25, (0.08, 0.41)),
        _baseline(5, "bootstrap", None, (None, None)),
        _baseline(6, "zeroshot_prior", -0.30, (-0.60, 0.0)),
        _baseline(7, "ceiling", 1.0, (1.0, 1.0)),
    ]
    official = [
        _run(8, "r1-prior", "ideas/prior.py", (0.31, (0.12, 0.50)), minute=10, review="verified"),
        _run(9, "r1-prior", "ideas/prior2.py", (0.45, (0.30, 0.60)), minute=25),
        _run(10, "r2-ensemble", "ideas/ens.py", (0.66, (0.51, 0.84)), minute=40, review="verified"),
        _run(11, "r2-ensemble", "ideas/ens_big.py", (0.72, (0.20, 1.30)), minute=45),
        _run(12, "r3-hack", "ideas/peek.py", (0.95, (0.85, 1.02)), minute=20, review="rejected"),
        _run(13, "r3-hack", "ideas/noise.py", (None, (None, None)), minute=30),
        _run(
            14, "r3-hack", "ideas/crash.py", None, minute=35, status="failed", error="ValueError | bad shape"
        ),
        _run(15, "r1-prior", "ideas/late.py", None, minute=50, status="queued"),
        _run(16, "r2-ensemble", "ideas/zero.py", (0.0, (-0.2, 0.2)), minute=15),
    ]
    researchers = [
        _researcher("r1-prior", "priors over labels", "anthropic", "claude-x", 1.25, 120_000, 3),
        _researcher("r2-ensemble", "ensembles", "openai", "gpt-y", 0.40, 45_000, 3),
        _researcher("r3-hack", "unsupervised elicitation", "scripted", None, 0.0, 0, 3),
    ]
    flags = [
        _flag(1, "home_heldout_gap", 12, "r3-hack", "open", None),
        _flag(2, "pgr_above_ceiling", 12, "r3-hack", "closed", "reviewed: run rejected"),
    ]
    return {
        "campaign": "demo",
        "started_at": "2026-11-28T19:00:00+00:00",
        "finished_at": "2026-11-28T19:55:30+00:00",
        "home_task": HOME,
        "held_out_tasks": HELD,
        "model_pair": ["minilm-l3", "mpnet"],
        "stop_reason": "budget",
        "researchers": researchers,
        "runs": base + official,
        "flags": flags,
    }


def _researcher(name, direction, backend, model, spend, tokens, runs):
    return {
        "name": name,
        "direction": direction,
        "backend": backend,
        "model": model,
        "status": "finished",
        "stop_reason": "wall clock budget spent",
        "spend_usd": spend,
        "tokens": tokens,
        "turns": 42,
        "official_runs": runs,
        "posts": 5,
    }


def _flag(fid, kind, run_id, agent, state, resolution):
    return {
        "id": fid,
        "kind": kind,
        "subject_type": "run",
        "subject_id": run_id,
        "agent": agent,
        "task": HOME,
        "evidence": {"home_pgr": 0.95, "held_out_mean_pgr": 0.05},
        "state": state,
        "resolution": resolution,
        "created_at": "2026-11-28T19:21:00",
    }


EMPTY = {
    "campaign": "empty",
    "started_at": "2026-11-28T19:00:00+00:00",
    "finished_at": None,
    "home_task": HOME,
    "held_out_tasks": [],
    "model_pair": None,
    "stop_reason": "interrupted",
    "researchers": [],
    "runs": [],
    "flags": [],
}


@pytest.fixture(scope="module")
def snapshot() -> dict:
    return make_snapshot()


@pytest.fixture(scope="module")
def report(tmp_path_factory, snapshot) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report")
    path = write_report(out, snapshot)
    return path, path.read_text()


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 250, (path, img.shape)
    assert float(np.std(img[..., :3])) > 0.01, f"{path} looks blank"


# -- the report -----------------------------------------------------------------------------------------


def test_report_writes_every_plot_as_a_valid_png(report):
    path, text = report
    for name in PLOT_NAMES:
        png = path.parent / "plots" / f"{name}.png"
        _assert_png(png)
        assert f"](plots/{name}.png)" in text
    assert not [p for p in path.parent.rglob("*") if p.name.endswith(".tmp")]


def test_report_writes_a_strict_json_snapshot(report, snapshot):
    path, _ = report
    assert json.loads((path.parent / "snapshot.json").read_text()) == snapshot


def test_report_overview_and_tables(report):
    _, text = report
    assert text.startswith("# Campaign report: demo\n")
    assert "2026-11-28 19:00 UTC to 2026-11-28 19:55 UTC (55 min 30 s)" in text
    assert "**stop reason**: budget" in text
    assert "weak `minilm-l3` -> strong `mpnet`" in text
    # researchers: backend/model, spend, tokens and their best (non-rejected, by CI low) run
    assert (
        "| r1-prior | priors over labels | anthropic / claude-x | finished | $1.25 | 120,000 | 42 | 3 | 5 "
        "| 0.450 [0.300, 0.600] (run 9) |" in text
    )
    assert (
        "| r3-hack | unsupervised elicitation | scripted | finished | $0.00 | 0 | 42 | 3 | 5 | none |" in text
    )
    # leaderboard: sorted by home PGR, held-out columns, undefined last
    header = "| rank | author | idea | run | home PGR [CI] | transfer acc | parentheses PGR | epistemic PGR |"
    assert header + " review |" in text
    assert (
        "| 1 | r3-hack | ideas/peek.py | 12 | 0.950 [0.850, 1.020] | 0.800 | 0.200 | undefined | rejected |"
        in text
    )
    assert (
        "| 3 | r2-ensemble | ideas/ens.py | 10 | 0.660 [0.510, 0.840] | 0.800 | 0.200 | undefined |" in text
    )
    assert "| 6 | r2-ensemble | ideas/zero.py | 16 | 0.000 [-0.200, 0.200] |" in text
    assert "| 7 | r3-hack | ideas/noise.py | 13 | undefined | 0.800 |" in text
    # baselines, the failed/queued runs (pipe escaped) and the flags
    assert "| vanilla | 1 | 0.050 [-0.140, 0.210] | 0.800 | 0.700 | 0.880 | 0.200 | undefined |" in text
    assert "| bootstrap | 5 | undefined |" in text
    assert "| 14 | r3-hack | ideas/crash.py | failed | ValueError \\| bad shape |" in text
    assert "| 15 | r1-prior | ideas/late.py | queued |  |" in text
    assert "| 1 | home_heldout_gap | run 12 | r3-hack | sentiment_hotels | open |  |" in text
    assert (
        "| 2 | pgr_above_ceiling | run 12 | r3-hack | sentiment_hotels | closed | reviewed: run rejected |"
        in text
    )
    assert "## How to read this report" in text and "paired bootstrap" in text


def test_headline_picks_best_run_by_ci_lower_bound(report, snapshot):
    # run 12 (0.95) is rejected and run 11 (0.72) has a lower CI bound than run 10 (0.66)
    assert best_run(snapshot)["id"] == 10
    expected = (
        "best official run: r2-ensemble's ideas/ens.py (run 10): home PGR 0.660 [0.510, 0.840] "
        "vs vanilla 0.050 [-0.140, 0.210]; CI above vanilla's CI: yes"
    )
    assert headline(snapshot) == expected
    assert expected in report[1]


# -- summary and helpers ------------------------------------------------------------------------------


def test_summary_shape_and_order(snapshot):
    s = summary(snapshot)
    assert set(s) == {"leaderboard", "baselines"}
    assert [e["commit"][-2:] for e in s["leaderboard"]] == ["12", "11", "10", "09", "08", "16", "13"]
    for e in s["leaderboard"]:
        assert set(e) == {"author", "commit", "task", "pgr", "pgr_ci", "held_out", "review"}
    top = s["leaderboard"][0]
    assert top == {
        "author": "r3-hack",
        "commit": f"c{12:039d}",
        "task": HOME,
        "pgr": 0.95,
        "pgr_ci": [0.85, 1.02],
        "held_out": {"parentheses": 0.2, "epistemic": None},
        "review": "rejected",
    }
    assert s["leaderboard"][-1]["pgr"] is None and s["leaderboard"][-1]["pgr_ci"] == [None, None]
    assert list(s["baselines"]) == [
        "vanilla",
        "soft",
        "confident",
        "logconf",
        "bootstrap",
        "zeroshot_prior",
        "ceiling",
    ]
    assert s["baselines"]["vanilla"] == {"pgr": 0.05, "pgr_ci": [-0.14, 0.21]}
    assert s["baselines"]["bootstrap"] == {"pgr": None, "pgr_ci": [None, None]}


def test_write_summary_is_json_of_summary(tmp_path, snapshot):
    path = write_summary(tmp_path / "summary.json", snapshot)
    assert json.loads(path.read_text()) == summary(snapshot)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_ci_above_vanilla_true_and_false(snapshot):
    assert ci_above_vanilla(snapshot) is True
    wide = copy.deepcopy(snapshot)
    vanilla(wide)["results"][HOME]["pgr_ci"] = [-0.2, 0.6]  # overlaps run 10's [0.51, 0.84]
    assert ci_above_vanilla(wide) is False
    assert headline(wide).endswith("CI above vanilla's CI: no")
    undefined = copy.deepcopy(snapshot)
    vanilla(undefined)["results"][HOME].update(pgr=None, pgr_ci=[None, None])
    assert ci_above_vanilla(undefined) is False
    no_vanilla = copy.deepcopy(snapshot)
    no_vanilla["runs"] = [r for r in no_vanilla["runs"] if r["idea_path"] != "vanilla"]
    assert vanilla(no_vanilla) is None and ci_above_vanilla(no_vanilla) is False
    assert "vanilla: not available" in headline(no_vanilla)


def test_nan_reads_as_undefined(snapshot, tmp_path):
    snap = copy.deepcopy(snapshot)
    run10 = next(r for r in snap["runs"] if r["id"] == 10)
    run10["results"][HOME].update(pgr=math.nan, pgr_ci=[math.nan, math.nan])
    assert best_run(snap)["id"] == 9
    assert [r["id"] for r in leaderboard(snap)][-2:] == [10, 13]
    path = write_report(tmp_path, snap)
    assert "| ideas/ens.py | 10 | undefined |" in path.read_text()
    strict = json.loads((tmp_path / "snapshot.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert strict["runs"][9]["results"][HOME]["pgr"] is None


# -- terminal ---------------------------------------------------------------------------------------------


def _render(table) -> str:
    console = Console(file=io.StringIO(), width=220, record=True)
    console.print(table)
    return console.export_text()


def test_terminal_table_top_rows_and_vanilla(snapshot):
    table = terminal_table(snapshot)
    assert table.row_count == 7 + 1  # 7 done official runs + vanilla
    text = _render(table)
    assert "0.660 [0.510, 0.840]" in text and "vanilla" in text and "epistemic" in text


def test_terminal_table_keeps_ten(snapshot):
    many = copy.deepcopy(snapshot)
    many["runs"] += [
        _run(100 + i, "r1-prior", f"ideas/v{i}.py", (0.1 + i / 100, (0.0, 0.3)), minute=30) for i in range(8)
    ]
    assert terminal_table(many).row_count == 10 + 1


# -- empty campaigns -------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap", [EMPTY, {}], ids=["no-runs", "bare"])
def test_empty_snapshot_still_reports(tmp_path, snap):
    path = write_report(tmp_path, snap)
    text = path.read_text()
    assert "best official run: none with a defined home PGR (vanilla: not available)." in text
    assert "_no official run finished._" in text and "_no flags raised._" in text
    for name in PLOT_NAMES:
        _assert_png(tmp_path / "plots" / f"{name}.png")
    assert summary(snap) == {"leaderboard": [], "baselines": {}}
    assert best_run(snap) is None and ci_above_vanilla(snap) is False
    assert terminal_table(snap).row_count == 0
