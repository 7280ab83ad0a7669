"""Campaign files: the shipped ones load, defaults resolve to diverse directions, and every mistake is an
error naming the field (CLI: exit 2, one message, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aar.lab.campaign import CampaignError, load, parse
from aar.lab.cli import apply_minutes
from aar.lab.directions import DEFAULT_DIRECTIONS

ROOT = Path(__file__).resolve().parents[2]
AAR_CMD = [sys.executable, "-m", "aar.cli"]


def test_shipped_campaigns_load_and_resolve() -> None:
    demo = load(ROOT / "campaigns" / "demo.yaml")
    rs = demo.resolved()
    assert [r.name for r in rs] == ["prior", "confidence", "combine"]
    assert all(r.backend == "scripted" and r.budget.minutes == 4 for r in rs)
    assert len({r.seed for r in rs}) == 3

    claude = load(ROOT / "campaigns" / "claude.yaml")
    rs = claude.resolved()
    assert len(rs) == 9 and len({r.name for r in rs}) == 9
    assert [r.direction for r in rs] == [d for _, d in DEFAULT_DIRECTIONS]
    assert {r.backend for r in rs} == {"anthropic"} and rs[0].model == "claude-opus-4-6"
    assert rs[0].budget.usd == 50 and rs[0].budget.minutes == 300


def test_overrides_and_minutes() -> None:
    c = load(
        ROOT / "campaigns" / "claude.yaml",
        ["n_researchers=2", "defaults.base_url=http://127.0.0.1:9", "testbed.held_out=[navigate]"],
    )
    apply_minutes(c, 1.5)
    rs = c.resolved()
    assert len(rs) == 2 and rs[1].base_url == "http://127.0.0.1:9" and rs[1].budget.minutes == 1.5
    assert c.testbed.tasks == ["sentiment_movies", "navigate"]


def test_researcher_budget_overrides_keep_zero() -> None:
    c = parse(
        {
            "name": "x",
            "defaults": {"budget": {"minutes": 3, "official_runs": 5}},
            "researchers": [{"name": "a", "budget": {"official_runs": 0}}, {}],
        }
    )
    a, b = c.resolved()
    assert a.budget.official_runs == 0 and a.budget.minutes == 3
    assert b.budget.official_runs == 5 and b.name.startswith("r2-")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "x", "testbed": {"hold_out": ["a"]}}, "testbed.hold_out: unknown field"),
        ({"name": "x", "testbed": {"home": "nope"}}, "testbed.home: Value error, unknown task 'nope'"),
        ({"name": "x", "referee": {"seeds": 0}}, "referee.seeds: Input should be greater than or equal to 1"),
        ({"name": "Bad Name"}, "name: String should match pattern"),
        ({"name": "x", "researchers": [{"name": "a"}, {"name": "a"}]}, "researchers: Value error"),
        ({"name": "x", "defaults": {"backend": "gpt"}}, "defaults.backend: Value error, unknown backend"),
        ({"name": "x", "testbed": {"held_out": ["sentiment_movies"]}}, "also listed in held_out"),
        ({"name": "x", "researchers": [{"budget": {"minutes": -1}}]}, "researchers.0.budget.minutes"),
        (
            {"name": "x", "testbed": {"visible": ["nope"]}},
            "testbed.visible: Value error, unknown task 'nope'",
        ),
        ({"name": "x", "testbed": {"visible": ["sentiment_movies"]}}, "also listed in visible"),
        ({"name": "x", "testbed": {"visible": ["fever", "fever"]}}, "visible lists a task twice"),
        ({"name": "x", "testbed": {"visible": ["navigate"]}}, "both held out and visible: navigate"),
        ({"name": "x", "report_top_k": 0}, "report_top_k: Input should be greater than or equal to 1"),
    ],
)
def test_errors_name_the_field(data: dict, needle: str) -> None:
    with pytest.raises(CampaignError) as err:
        parse(data, "c.yaml")
    assert needle in str(err.value) and str(err.value).startswith("c.yaml: invalid campaign")


def test_cli_reports_bad_files_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nreferee: {port: 99999}\n")
    notyaml = tmp_path / "broken.yaml"
    notyaml.write_text("name: [unclosed\n")
    for path, needle in (
        (bad, "referee.port"),
        (notyaml, "not valid YAML"),
        (tmp_path / "missing.yaml", "cannot read"),
    ):
        r = subprocess.run(
            [*AAR_CMD, "lab", "run", str(path), "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing started


def test_missing_api_keys_are_reported_before_anything_starts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    r = subprocess.run(
        [*AAR_CMD, "lab", "run", str(ROOT / "campaigns" / "claude.yaml"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 2 and "researcher r1-prior: backend anthropic needs ANTHROPIC_API_KEY" in r.stderr
    assert "r9-truth" in r.stderr and not (tmp_path / "o").exists()


def test_demo_keeps_a_finished_demo_aside_and_resumes_an_unfinished_one(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from aar.lab import cli

    started: list[Path] = []

    def fake_run(target: Path, **kw) -> SimpleNamespace:
        started.append(kw["out"])
        result = {"snapshot": {}, "stop_reason": "budget", "report": None, "dashboard_url": None}
        return SimpleNamespace(**result, out=kw["out"])

    monkeypatch.setattr(cli, "run_campaign", fake_run)
    out = tmp_path / "demo"
    out.mkdir()
    (out / "lab.json").write_text('{"status": "running", "created_at": "2026-01-01T00:00:00+00:00"}')
    cli.demo(None, None, out)  # killed earlier: resumed in place
    assert started == [out] and (out / "lab.json").exists()
    (out / "lab.json").write_text('{"status": "budget", "created_at": "2026-01-01T00:00:00+00:00"}')
    cli.demo(None, None, out)  # finished earlier: kept under another name, a new demo starts
    kept = tmp_path / "demo-2026-01-01T000000+0000"
    assert started == [out, out] and (kept / "lab.json").exists() and not out.exists()


def test_visible_tasks_and_report_top_k() -> None:
    c = parse({"name": "x", "testbed": {"visible": ["fever"]}, "report_top_k": 3})
    assert c.testbed.tasks == ["sentiment_movies", "navigate", "fever"]  # home first
    assert c.report_top_k == 3
    d = parse({"name": "x"})
    assert d.testbed.visible == [] and d.report_top_k == 5


def test_an_empty_visible_keeps_the_fingerprint_of_older_campaigns() -> None:
    import hashlib

    import yaml

    from aar.lab.campaign import fingerprint

    c = parse({"name": "x"})
    newer = ("visible", "task_files", "models")  # fields added since, left out when empty
    old_testbed = {k: v for k, v in c.testbed.model_dump().items() if k not in newer}
    old = yaml.safe_dump({"testbed": old_testbed, "seeds": c.referee.seeds}, sort_keys=True)
    assert fingerprint(c) == hashlib.sha256(old.encode()).hexdigest()[:16]
    assert fingerprint(parse({"name": "x", "testbed": {"visible": ["fever"]}})) != fingerprint(c)


def test_the_lab_passes_visible_to_the_referee_and_the_snapshot(tmp_path: Path, monkeypatch) -> None:
    import aar.referee.datadir
    import aar.referee.setup
    from aar.lab.runner import Lab

    seen: dict = {}

    def fake_initialise(data, **kw):  # noqa: ANN001, ANN202
        seen.update(kw)
        return {"admin": "t"}

    monkeypatch.setattr(aar.referee.setup, "initialise", fake_initialise)
    monkeypatch.setattr(aar.referee.datadir, "export_public", lambda data, public: public.mkdir())
    c = parse(
        {"name": "x", "testbed": {"visible": ["fever"], "held_out": ["parentheses"]}, "report_top_k": 2}
    )
    lab = Lab(c, tmp_path / "x")
    lab.dir.create()
    monkeypatch.setattr(lab, "_uid", lambda name: None)
    lab._setup_referee()
    assert seen["tasks"] == ["sentiment_movies", "parentheses", "fever"] and list(seen["visible"]) == [
        "fever"
    ]
    snap = lab._snapshot("budget")
    assert snap["visible_tasks"] == ["fever"] and snap["held_out_tasks"] == ["parentheses"]
    assert snap["report_top_k"] == 2 and snap["runs"] == []


def test_local_endpoint_campaign_needs_no_key() -> None:
    from aar.lab.campaign import backend_problems

    c = load(ROOT / "campaigns" / "local.yaml")
    rs = c.resolved()
    assert len(rs) == 3 and {r.backend for r in rs} == {"openai"}
    assert {r.base_url for r in rs} == {"http://127.0.0.1:8000/v1"} and rs[0].model == "Qwen/Qwen3-8B"
    assert backend_problems(c, {}) == []  # a local server: no OPENAI_API_KEY needed
