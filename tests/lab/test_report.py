"""The campaign report, plots, summary and terminal table, driven by a synthetic snapshot in the referee's
admin shape (``aar.contract.AdminRun``): public/private parts of the home and visible tasks, held-out
tasks (private only), paired comparisons with vanilla."""

from __future__ import annotations

import copy
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from aar.contract import AdminRun
from aar.lab import plots
from aar.lab.report import (
    View,
    best_run,
    headline,
    headline_run,
    leaderboard,
    summary,
    terminal_table,
    top_k,
    vanilla,
    write_report,
    write_summary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOME, VISIBLE, HELD = "sentiment_hotels", ["sentiment_products"], ["parentheses", "epistemic"]
PLOT_NAMES = [name for name, _, _ in plots.FIGURES]
NONE_CI = (None, None)


def _part(pgr, ci, transfer=0.8):
    return {
        "pgr": pgr,
        "pgr_ci": list(ci),
        "transfer_acc": transfer,
        "transfer_acc_ci": [transfer - 0.02, transfer + 0.02],
        "weak_acc": 0.70,
        "weak_acc_ci": [0.68, 0.72],
        "ceiling_acc": 0.88,
        "ceiling_acc_ci": [0.86, 0.90],
        "gap": 0.18,
        "gap_ci": [0.12, 0.24],
        "gap_se": 0.03,
        "transfer_seed_std": 0.01,
        "n_items": 294,
        "n_seeds": 3,
    }


def _vs(acc, acc_ci, p, pgr_diff=0.1, pgr_ci=(0.0, 0.2)):
    return {"acc_diff": acc, "acc_diff_ci": list(acc_ci), "pgr_diff": pgr_diff, "pgr_diff_ci": list(pgr_ci),
            "p_value": p}  # fmt: skip


def _results(public, private, vs, held):
    home = {"role": "home", "public": _part(*public), "private": _part(*private)}
    if vs is not None:  # {} for vanilla itself; absent when not compared
        home["vs_vanilla"] = {"public": vs, "private": copy.deepcopy(vs)} if vs else {}
    out = {HOME: home}
    out[VISIBLE[0]] = {
        "role": "visible",
        "public": _part(*public),
        "private": _part(*private),
        "vs_vanilla": {},
    }
    for task, (pgr, ci) in held.items():
        out[task] = {"role": "held_out", "public": None, "private": _part(pgr, ci)}
    return out


HELD_DEFAULT = {"parentheses": (0.2, (0.0, 0.4)), "epistemic": (None, NONE_CI)}


def _run(
    rid, author, idea, public=None, private=None, *, minute, vs=None, status="done", review="unreviewed",
    baseline=False, error=None, held=None,
):  # fmt: skip
    return {
        "id": rid,
        "author": author,
        "submitted_by": author,
        "reproduction": False,
        "commit": f"c{rid:039d}",
        "idea_path": idea,
        "task": HOME,
        "seeds": 3,
        "status": status,
        "error": error,
        "baseline": baseline,
        "review_state": review,
        "review_reason": None,
        "created_at": f"2026-11-28T19:{max(minute - 5, 0):02d}:00",
        "finished_at": f"2026-11-28T19:{minute:02d}:00" if status in ("done", "failed") else None,
        "sandbox_backend": "bwrap",
        "view": "admin",
        "released": {},
        "results": _results(public, private or public, vs, held or HELD_DEFAULT)
        if status == "done"
        else None,
    }


def _baseline(rid, method, public, private, vs=None):
    return _run(rid, "baselines", method, public, private, minute=0, review="verified", baseline=True, vs=vs)


def make_snapshot(k: int = 5) -> dict:
    """Public rank of the eligible runs (lower CI bound): 10, 9, 11, 8, 16, then 13 (undefined). Run 12
    scores highest but is rejected. With k=5, Holm over the 5 private p-values: run 8 (p 0.0001, the
    best private PGR) and run 9 (p 0.001) are confirmed; run 10 (p 0.04, first in public order) is
    not, since 0.04 * 3 > 0.05. So the headline is run 9: the first confirmed one in public order."""
    base = [
        _baseline(1, "vanilla", (0.05, (-0.14, 0.21)), (0.04, (-0.15, 0.20)), vs={}),
        _baseline(2, "soft", (0.12, (-0.05, 0.30)), (0.10, (-0.06, 0.28)), _vs(0.01, (-0.01, 0.03), 0.30)),
        _baseline(3, "logconf", (0.25, (0.08, 0.41)), (0.24, (0.06, 0.40)), _vs(0.03, (0.01, 0.05), 0.004)),
        _baseline(
            4, "bootstrap", (None, NONE_CI), (None, NONE_CI), _vs(0.0, (-0.02, 0.02), 0.9, None, NONE_CI)
        ),
        _baseline(5, "zeroshot_prior", (-0.30, (-0.60, 0.0)), (-0.25, (-0.55, 0.05))),
    ]
    official = [
        _run(8, "r1-prior", "ideas/prior.py", (0.31, (0.12, 0.50)), (0.70, (0.55, 0.85)), minute=10,
             review="verified", vs=_vs(0.05, (0.03, 0.07), 0.0001)),
        _run(9, "r1-prior", "ideas/prior2.py", (0.45, (0.30, 0.60)), (0.50, (0.35, 0.65)), minute=25,
             vs=_vs(0.03, (0.015, 0.045), 0.001, 0.46, (0.30, 0.62))),
        _run(10, "r2-ensemble", "ideas/ens.py", (0.66, (0.51, 0.84)), (0.40, (0.20, 0.60)), minute=40,
             review="verified", vs=_vs(0.02, (0.001, 0.04), 0.04)),
        _run(11, "r2-ensemble", "ideas/ens_big.py", (0.72, (0.20, 1.30)), (0.30, (-0.20, 0.80)), minute=45,
             vs=_vs(0.01, (-0.01, 0.03), 0.5)),
        _run(12, "r3-hack", "ideas/peek.py", (0.95, (0.85, 1.02)), (0.10, (-0.10, 0.30)), minute=20,
             review="rejected", vs=_vs(0.01, (-0.02, 0.04), 0.6)),
        _run(13, "r3-hack", "ideas/noise.py", (None, NONE_CI), (None, NONE_CI), minute=30,
             vs=_vs(0.0, (-0.02, 0.02), 0.9, None, NONE_CI)),
        _run(14, "r3-hack", "ideas/crash.py", minute=35, status="failed", error="ValueError | bad shape"),
        _run(15, "r1-prior", "ideas/late.py", minute=50, status="queued"),
        _run(16, "r2-ensemble", "ideas/zero.py", (0.0, (-0.2, 0.2)), (0.02, (-0.2, 0.24)), minute=15,
             vs=_vs(-0.01, (-0.03, 0.01), 0.8)),
    ]  # fmt: skip
    researchers = [
        _researcher("r1-prior", "priors over labels", "anthropic", "claude-x", 1.25, 120_000, 4),
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
        "visible_tasks": VISIBLE,
        "held_out_tasks": HELD,
        "report_top_k": k,
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
    "visible_tasks": [],
    "held_out_tasks": [],
    "model_pair": None,
    "stop_reason": "interrupted",
    "researchers": [],
    "runs": [],
    "flags": [],
}


def _get(snap: dict, rid: int) -> dict:
    return next(r for r in snap["runs"] if r["id"] == rid)


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


def test_synthetic_runs_are_valid_admin_runs(snapshot):
    for raw in snapshot["runs"]:
        AdminRun.model_validate(raw)
    assert len(View.of(snapshot).runs) == len(snapshot["runs"])


# -- selection and confirmation ---------------------------------------------------------------------------


def test_top_k_is_public_order_with_holm_over_the_k(snapshot):
    comps = top_k(snapshot)
    assert [c.run.id for c in comps] == [10, 9, 11, 8, 16]  # 12 rejected, 13 undefined
    holm = {c.run.id: c.holm_p for c in comps}
    assert holm == pytest.approx({8: 0.0005, 9: 0.004, 10: 0.12, 11: 1.0, 16: 1.0})
    assert {c.run.id: c.confirmed for c in comps} == {10: False, 9: True, 11: False, 8: True, 16: False}
    assert best_run(snapshot).id == 10  # "best" is the public rule; confirmation is separate


def test_headline_is_the_first_confirmed_in_public_order_not_the_best_private(report, snapshot):
    # run 8 has the best private PGR (0.70) and is confirmed, but run 9 comes first in public order;
    # run 10 comes before both but its p 0.04 does not survive Holm over 5
    assert headline_run(snapshot).run.id == 9
    text = headline(snapshot)
    assert text == (
        "best confirmed run: r1-prior's ideas/prior2.py (run 9), number 2 of the top 5 by public PGR: "
        "private PGR 0.500 [0.350, 0.650] (± 0.150); public PGR 0.450 [0.300, 0.600] (± 0.150); "
        "public -> private drop -0.050; "
        "held-out PGR: parentheses 0.200 [0.000, 0.400] (± 0.200), epistemic undefined; "
        "private accuracy vs vanilla +0.030 [0.015, 0.045], PGR diff +0.460 [0.300, 0.620], Holm p 0.004; "
        "vanilla private PGR 0.040 [-0.150, 0.200]; private CI above vanilla's private CI: yes"
    )
    assert text in report[1]


def test_a_run_that_does_not_survive_holm_is_not_confirmed(snapshot):
    k1 = make_snapshot(k=1)  # only run 10: p 0.04 survives Holm over one
    assert [(c.run.id, c.confirmed) for c in top_k(k1)] == [(10, True)]
    k3 = make_snapshot(k=3)  # 10, 9, 11: run 10's 0.04 * 2 = 0.08 fails, run 9's 0.001 * 3 passes
    assert [(c.run.id, c.confirmed) for c in top_k(k3)] == [(10, False), (9, True), (11, False)]
    assert headline_run(k3).run.id == 9


def test_a_significant_run_whose_accuracy_ci_touches_zero_is_not_confirmed():
    snap = make_snapshot()
    _get(snap, 9)["results"][HOME]["vs_vanilla"]["private"]["acc_diff_ci"] = [-0.001, 0.06]
    assert headline_run(snap).run.id == 8
    worse = make_snapshot()
    _get(worse, 9)["results"][HOME]["vs_vanilla"]["private"].update(
        acc_diff=-0.03, acc_diff_ci=[-0.05, -0.01]
    )
    assert headline_run(worse).run.id == 8  # significant, but worse than vanilla


def test_none_confirmed_says_so(tmp_path):
    snap = make_snapshot()
    for r in snap["runs"]:
        for part in (r["results"] or {}).get(HOME, {}).get("vs_vanilla", {}).values():
            part["p_value"] = 0.5
    assert headline_run(snap) is None
    text = headline(snap)
    assert text.startswith("no run was confirmed: none of the top 5 runs by public PGR beats vanilla")
    assert "Holm correction over 5" in text
    s = summary(snap)
    assert s["confirmed"] is False and s["headline"] is None and len(s["top_k"]) == 5
    assert text in write_report(tmp_path, snap).read_text()


def test_missing_comparisons_count_against_the_k():
    snap = make_snapshot(k=3)
    _get(snap, 11)["results"][HOME].pop("vs_vanilla")
    comps = top_k(snap)
    assert comps[2].vs is None and comps[2].holm_p is None and not comps[2].confirmed
    assert comps[1].holm_p == pytest.approx(0.003)  # still m = 3


def test_private_ci_above_vanilla_true_and_false(snapshot):
    v = View.of(snapshot)
    assert v.ci_above_vanilla(headline_run(v).run) is True
    wide = copy.deepcopy(snapshot)
    vanilla(wide)  # parsed copy; edit the raw run
    _get(wide, 1)["results"][HOME]["private"]["pgr_ci"] = [-0.2, 0.6]
    assert headline(wide).endswith("private CI above vanilla's private CI: no")
    assert summary(wide)["headline"]["private_ci_above_vanilla"] is False
    no_vanilla = copy.deepcopy(snapshot)
    no_vanilla["runs"] = [r for r in no_vanilla["runs"] if r["idea_path"] != "vanilla"]
    assert vanilla(no_vanilla) is None
    assert "vanilla: not available" in headline(no_vanilla)
    assert View.of(no_vanilla).ci_above_vanilla(View.of(no_vanilla).best()) is False


# -- the report -----------------------------------------------------------------------------------------


def test_report_writes_every_plot_as_a_valid_png(report):
    path, text = report
    assert "drop" in PLOT_NAMES and "home_vs_heldout" in PLOT_NAMES
    for name in PLOT_NAMES:
        png = path.parent / "plots" / f"{name}.png"
        _assert_png(png)
        assert f"](plots/{name}.png)" in text
    assert "could not be drawn" not in text
    assert not [p for p in path.parent.rglob("*") if p.name.endswith(".tmp")]


def test_report_writes_a_strict_json_snapshot(report, snapshot):
    path, _ = report
    assert json.loads((path.parent / "snapshot.json").read_text()) == snapshot


def test_report_overview_and_tables(report):
    _, text = report
    assert text.startswith("# Campaign report: demo\n")
    assert "2026-11-28 19:00 UTC to 2026-11-28 19:55 UTC (55 min 30 s)" in text
    assert "**stop reason**: budget" in text
    assert "**visible tasks**: `sentiment_products`; **held-out tasks**: `parentheses`, `epistemic`" in text
    assert "weak `minilm-l3` -> strong `mpnet`" in text
    # researchers: best by the public rule (run 9's public CI low 0.30 beats run 8's 0.12)
    assert (
        "| r1-prior | priors over labels | anthropic / claude-x | finished | $1.25 | 120,000 | 42 | 4 | 5 "
        "| 0.450 [0.300, 0.600] (run 9) | 0.500 [0.350, 0.650] |" in text
    )
    assert (
        "| r3-hack | unsupervised elicitation | scripted | finished | $0.00 | 0 | 42 | 3 | 5 | none |  |"
        in text
    )
    # the top k, confirmed on private
    assert "### Top 5 by public PGR, confirmed on private" in text
    assert (
        "| 1 | 10 | r2-ensemble | ideas/ens.py | 0.660 [0.510, 0.840] | 0.400 [0.200, 0.600] (± 0.200) "
        "| 0.260 | 0.200 [0.000, 0.400] | undefined | +0.020 [0.001, 0.040] | +0.100 [0.000, 0.200] "
        "| 0.040 | 0.120 | no |" in text
    )
    assert "| 2 | 9 | r1-prior | ideas/prior2.py |" in text and "| 0.001 | 0.004 | yes |" in text
    # leaderboard: public rank (rejected run 12 included and marked), private, drop, held-out
    header = (
        "| rank | author | idea | run | public PGR [CI] | private PGR [CI] | drop | parentheses PGR [CI] |"
    )
    assert header + " epistemic PGR [CI] | review |" in text
    assert (
        "| 1 | r3-hack | ideas/peek.py | 12 | 0.950 [0.850, 1.020] | 0.100 [-0.100, 0.300] | 0.850 "
        "| 0.200 [0.000, 0.400] | undefined | rejected |" in text
    )
    assert (
        "| 2 | r2-ensemble | ideas/ens.py | 10 | 0.660 [0.510, 0.840] | 0.400 [0.200, 0.600] | 0.260 |"
        in text
    )
    assert "| 7 | r3-hack | ideas/noise.py | 13 | undefined | undefined | undefined |" in text
    # baselines: public, private, Holm over the 3 compared (soft, logconf, bootstrap)
    assert "| vanilla | 1 | 0.050 [-0.140, 0.210] | 0.040 [-0.150, 0.200] | 0.800 | 0.700 | 0.880 |" in text
    assert "| (the reference) |" in text
    assert "| logconf | 3 | 0.250 [0.080, 0.410] | 0.240 [0.060, 0.400] |" in text
    assert "| +0.030 [0.010, 0.050] | +0.100 [0.000, 0.200] | 0.004 | 0.012 | yes |" in text
    assert "| soft | 2 |" in text and "| 0.300 | 0.600 | no |" in text
    assert "| zeroshot_prior | 5 |" in text and "| not compared |" in text
    assert "| bootstrap | 4 | undefined | undefined |" in text
    # the failed/queued runs (pipe escaped) and the flags
    assert "| 14 | r3-hack | ideas/crash.py | failed | ValueError \\| bad shape |" in text
    assert "| 15 | r1-prior | ideas/late.py | queued |  |" in text
    assert "| 1 | home_heldout_gap | run 12 | r3-hack | sentiment_hotels | open |  |" in text
    assert (
        "| 2 | pgr_above_ceiling | run 12 | r3-hack | sentiment_hotels | closed | reviewed: run rejected |"
        in text
    )


def test_how_to_read_explains_the_rules(report):
    how = report[1].split("## How to read this report", 1)[1]
    for needle in (
        "**public / private / held-out**",
        "selection on public only",
        "**Holm**",
        "under 3 standard errors",
        "paired bootstrap",
        "first confirmed run in public order",
    ):
        assert needle in how, needle  # fmt: skip


# -- summary -----------------------------------------------------------------------------------------------


def test_summary_schema(snapshot):
    s = summary(snapshot)
    assert set(s) == {"k", "alpha", "leaderboard", "baselines", "vanilla", "top_k", "confirmed", "headline"}
    assert s["k"] == 5 and s["alpha"] == 0.05 and s["confirmed"] is True
    assert [e["run_id"] for e in s["leaderboard"]] == [12, 10, 9, 11, 8, 16, 13]
    row_keys = {"rank", "run_id", "author", "commit", "idea_path", "task", "public", "private", "drop"}
    row_keys |= {"visible", "held_out", "review"}
    assert all(set(e) == row_keys for e in s["leaderboard"])
    first = s["leaderboard"][0]
    assert first["public"] == {"pgr": 0.95, "ci": [0.85, 1.02]}
    assert first["private"] == {"pgr": 0.10, "ci": [-0.10, 0.30]}
    assert first["drop"] == pytest.approx(0.85) and first["review"] == "rejected"
    assert first["held_out"] == {"parentheses": {"pgr": 0.2, "ci": [0.0, 0.4]}, "epistemic": {"pgr": None,
                                 "ci": [None, None]}}  # fmt: skip
    assert set(first["visible"]) == {"sentiment_products"} and set(
        first["visible"]["sentiment_products"]
    ) == {
        "public",
        "private",
    }
    last = s["leaderboard"][-1]
    assert last["public"] == {"pgr": None, "ci": [None, None]} and last["drop"] is None

    assert s["vanilla"] == {
        "run_id": 1,
        "public": {"pgr": 0.05, "ci": [-0.14, 0.21]},
        "private": {"pgr": 0.04, "ci": [-0.15, 0.20]},
    }
    assert list(s["baselines"]) == ["vanilla", "soft", "logconf", "bootstrap", "zeroshot_prior"]
    assert s["baselines"]["logconf"]["beats_vanilla"] is True
    assert s["baselines"]["logconf"]["holm_p"] == pytest.approx(0.012)
    assert s["baselines"]["soft"]["beats_vanilla"] is False
    assert (
        s["baselines"]["vanilla"]["vs_vanilla"] is None
        and s["baselines"]["vanilla"]["beats_vanilla"] is False
    )
    assert s["baselines"]["zeroshot_prior"]["vs_vanilla"] is None
    assert s["baselines"]["bootstrap"]["public"] == {"pgr": None, "ci": [None, None]}

    assert [t["run_id"] for t in s["top_k"]] == [10, 9, 11, 8, 16]
    assert [t["confirmed"] for t in s["top_k"]] == [False, True, False, True, False]
    t9 = s["top_k"][1]
    assert set(t9) == row_keys | {"vs_vanilla", "holm_p", "confirmed"}
    assert t9["rank"] == 2 and t9["holm_p"] == pytest.approx(0.004)
    assert t9["vs_vanilla"] == {
        "acc_diff": 0.03,
        "acc_diff_ci": [0.015, 0.045],
        "pgr_diff": 0.46,
        "pgr_diff_ci": [0.30, 0.62],
        "p_value": 0.001,
    }

    h = s["headline"]
    assert {
        "run_id",
        "author",
        "idea_path",
        "private_pgr",
        "private_ci",
        "private_half_width",
        "public_pgr",
    } <= set(h)
    assert {"drop", "held_out", "private_ci_above_vanilla"} <= set(h)
    assert h["run_id"] == 9 and h["author"] == "r1-prior" and h["idea_path"] == "ideas/prior2.py"
    assert h["private_pgr"] == 0.5 and h["private_ci"] == [0.35, 0.65]
    assert h["private_half_width"] == pytest.approx(0.15)
    assert h["public_pgr"] == 0.45 and h["drop"] == pytest.approx(-0.05)
    assert h["held_out"]["parentheses"] == {"pgr": 0.2, "ci": [0.0, 0.4]}
    assert h["held_out"]["epistemic"] == {"pgr": None, "ci": [None, None]}
    assert h["private_ci_above_vanilla"] is True


def test_write_summary_is_strict_json_of_summary(tmp_path, snapshot):
    path = write_summary(tmp_path / "summary.json", snapshot)
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c)) == summary(snapshot)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# -- undefined, NaN, malformed and old runs ----------------------------------------------------------------


def test_nan_and_infinite_read_as_undefined_and_unbounded(snapshot, tmp_path):
    snap = copy.deepcopy(snapshot)
    run10 = _get(snap, 10)["results"][HOME]
    run10["public"].update(pgr=math.nan, pgr_ci=[math.nan, math.nan])
    _get(snap, 9)["results"][HOME]["private"]["pgr_ci"] = [0.35, math.inf]
    assert best_run(snap).id == 9
    assert [r.id for r in leaderboard(snap)][-2:] == [10, 13]
    text = write_report(tmp_path, snap).read_text()
    assert "| ideas/ens.py | 10 | undefined | 0.400 [0.200, 0.600] | undefined |" in text
    assert "private PGR 0.500 [0.350, inf] (± unbounded)" in text
    strict = json.loads((tmp_path / "snapshot.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert _get(strict, 10)["results"][HOME]["public"]["pgr"] is None
    s = summary(snap)
    assert s["headline"]["private_ci"] == [0.35, None] and s["headline"]["private_half_width"] is None


def test_a_malformed_run_is_skipped_with_a_log_line(snapshot, tmp_path, caplog):
    snap = copy.deepcopy(snapshot)
    broken = copy.deepcopy(_get(snap, 9))
    broken.update(id=99, results={HOME: {"role": "sideways"}})
    snap["runs"] += [broken, {"id": 100, "author": "x"}, "not a run", None]
    with caplog.at_level(logging.WARNING, logger="aar.lab.report"):
        text = write_report(tmp_path, snap).read_text()
        s = summary(snap)
    assert "snapshot run 99 skipped" in caplog.text and "snapshot run 100 skipped" in caplog.text
    assert "**unreadable runs skipped**: 4" in text
    assert 99 not in [e["run_id"] for e in s["leaderboard"]]
    assert s["headline"]["run_id"] == 9  # the rest of the report is intact
    assert terminal_table(snap).row_count == 7 + 1


def test_an_old_snapshot_yields_no_scores_but_still_reports(tmp_path):
    old_run = {
        "id": 3,
        "author": "r1",
        "commit": "c" * 40,
        "idea_path": "ideas/a.py",
        "task": HOME,
        "seeds": 3,
        "status": "done",
        "baseline": False,
        "review_state": "unreviewed",
        "created_at": "2026-11-28T19:00:00",
        "results": {HOME: {"role": "home", "pgr": 0.4, "pgr_ci": [0.2, 0.6], "transfer_acc": 0.8}},
    }
    snap = {"campaign": "old", "home_task": HOME, "held_out_tasks": ["parentheses"], "runs": [old_run]}
    v = View.of(snap)
    assert [r.id for r in v.runs] == [3] and v.best() is None and v.top_k() == []
    text = write_report(tmp_path, snap).read_text()
    assert "no run was confirmed: no eligible official run has a defined public PGR" in text
    assert "| 1 | r1 | ideas/a.py | 3 | undefined | undefined | undefined | undefined | unreviewed |" in text
    assert summary(snap)["leaderboard"][0]["public"] == {"pgr": None, "ci": [None, None]}


def test_report_top_k_falls_back_to_five():
    for bad in (0, -2, "x", None):
        snap = make_snapshot()
        snap["report_top_k"] = bad
        assert View.of(snap).k == 5
    snap = make_snapshot()
    del snap["report_top_k"]
    assert summary(snap)["k"] == 5


# -- terminal ---------------------------------------------------------------------------------------------


def _render(table) -> str:
    console = Console(file=io.StringIO(), width=260, record=True)
    console.print(table)
    return console.export_text()


def test_terminal_table_top_rows_vanilla_and_headline(snapshot):
    table = terminal_table(snapshot)
    assert table.row_count == 7 + 1  # 7 done official runs + vanilla
    text = _render(table)
    assert "0.660 [0.510, 0.840]" in text and "0.400 [0.200, 0.600]" in text and "vanilla" in text
    assert "epistemic" in text and "Holm p (top 5)" in text and "confirmed" in text
    assert "best confirmed run: r1-prior's ideas/prior2.py (run 9)" in " ".join(text.split())


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
    assert (
        "no run was confirmed: no eligible official run has a defined public PGR (vanilla: not available)."
        in text
    )
    assert "_no official run finished._" in text and "_no flags raised._" in text
    for name in PLOT_NAMES:
        _assert_png(tmp_path / "plots" / f"{name}.png")
    s = summary(snap)
    assert s["leaderboard"] == [] and s["baselines"] == {} and s["top_k"] == []
    assert s["headline"] is None and s["confirmed"] is False and s["vanilla"] is None and s["k"] == 5
    assert best_run(snap) is None and headline_run(snap) is None
    assert terminal_table(snap).row_count == 0
