"""`aar lab run` end to end: a real campaign finishes with a report; SIGKILL mid-campaign and a restart
finish it with every earlier official run and post intact; the nine-Claude campaign file runs against
the fake model server through the real Anthropic SDK."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
from pathlib import Path

import pytest

from aar.agents.prices import PriceTable, Usage
from tests.agents.fake_llm import FakeModel
from tests.agents.test_session import steps
from tests.lab.minilab import (
    db_rows,
    pid_alive,
    run_lab,
    snapshot,
    start_lab,
    wait_for,
    write_campaign,
)

ROOT = Path(__file__).resolve().parents[2]


def socket_dead(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        return True
    finally:
        s.close()
    return False


def test_campaign_runs_to_a_report(finished_campaign) -> None:
    folder = finished_campaign.folder
    snap = snapshot(folder)
    assert snap["stop_reason"] == "budget"
    names = [r["name"] for r in snap["researchers"]]
    assert names == ["prior", "confidence"]
    for r in snap["researchers"]:
        assert r["status"] == "finished" and "budget spent" in r["stop_reason"]
        assert r["official_runs"] >= 1 and r["posts"] >= 1
        assert json.loads((folder / "researchers" / r["name"] / "researcher.json").read_text())["status"] == (
            "finished"
        )
        state = folder / "researchers" / r["name"] / "state"
        assert state.stat().st_mode & 0o777 == 0o700  # transcripts are not readable by the researchers
    done = [r for r in snap["runs"] if r["status"] == "done" and not r["baseline"]]
    assert {r["author"] for r in done} == {"prior", "confidence"}
    assert all(set(r["results"]) == {"navigate_turns", "navigate"} for r in done)
    assert not [r for r in snap["runs"] if r["status"] in ("queued", "running")]  # drained
    report = (folder / "report.md").read_text()
    assert "# Campaign report: mini" in report and "| prior |" in report
    for png in ("progress", "leaderboard", "home_vs_heldout", "spend", "flags"):
        assert (folder / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = json.loads((folder / "lab.json").read_text())
    assert state["status"] == "budget" and state["pids"] == [] and len(state["sessions"]) == 1
    assert socket_dead(folder / "sock" / "referee.sock")  # the referee was stopped
    assert "official leaderboard" in finished_campaign.stdout + finished_campaign.stderr


def test_sigkill_mid_campaign_then_resume(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    lab, http = start_lab(write_campaign(tmp_path / "mini.yaml", minutes=1.0), folder)
    try:

        def progress() -> bool:
            runs = [r for r in http.get("/runs").json() if not r["baseline"]]
            posts = http.get("/posts").json()["total"]
            return sum(r["status"] == "done" for r in runs) >= 2 and posts >= 1

        wait_for(progress, 240, "two done official runs and a post")
        second = run_lab([str(folder)], timeout=60)  # one lab per folder at a time
        assert second.returncode == 2 and "in use by a running lab" in second.stderr
        children = json.loads((folder / "lab.json").read_text())["pids"]
        assert len(children) == 3  # referee + two researchers
        lab.send_signal(signal.SIGKILL)
        lab.wait(timeout=30)
    finally:
        if lab.poll() is None:
            lab.kill()
    # what the referee had acknowledged before the kill, read from its database directly
    runs_before = dict(db_rows(folder, "select id, status from runs where is_baseline = 0"))
    done_before = dict(db_rows(folder, "select id, results from runs where status = 'done'"))
    posts_before = db_rows(folder, "select id, title, body from posts order by id")
    assert len(done_before) >= 2 and posts_before
    # every child died with the lab (each gets SIGTERM from the kernel when the lab dies)
    wait_for(lambda: not any(pid_alive(p) for p in children), 60, "the killed lab's children to exit")

    r = run_lab([str(folder)], timeout=600)  # resume: the folder, not the file
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming campaign mini" in r.stderr
    snap = snapshot(folder)
    assert snap["stop_reason"] == "budget" and snap["sessions"] == 2
    after = {run["id"]: run for run in snap["runs"]}
    assert set(runs_before) <= set(after)  # no official run lost ...
    for run_id, results in done_before.items():  # ... and no score changed
        assert after[run_id]["status"] == "done"
        assert after[run_id]["results"] == json.loads(results)
    assert all(after[i]["status"] == "done" for i in runs_before)  # interrupted runs were finished
    posts_after = db_rows(folder, "select id, title, body from posts order by id")
    assert posts_after[: len(posts_before)] == posts_before
    for name in ("prior", "confidence"):
        lines = (folder / "researchers" / name / "state" / "transcript.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert sum(rec["type"] == "session_start" for rec in records) >= 2  # resumed, not restarted
    state = json.loads((folder / "lab.json").read_text())
    assert [s.get("reason") for s in state["sessions"]] == [None, "budget"]  # the first one was killed


def test_ctrl_c_stops_everything_cleanly_and_still_reports(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    lab, http = start_lab(write_campaign(tmp_path / "mini.yaml", minutes=5.0), folder)
    try:
        wait_for(lambda: any(not r["baseline"] for r in http.get("/runs").json()), 120, "an official run")
        children = json.loads((folder / "lab.json").read_text())["pids"]
        lab.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends to the foreground process
        out, err = lab.communicate(timeout=180)
    finally:
        if lab.poll() is None:
            lab.kill()
    assert lab.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    assert not any(pid_alive(p) for p in children)
    assert socket_dead(folder / "sock" / "referee.sock")
    snap = snapshot(folder)
    assert snap["stop_reason"] == "interrupted" and snap["runs"]
    assert (folder / "report.md").exists()
    for r in snap["researchers"]:
        assert r["status"] == "stopped" and r["stop_reason"] == "interrupted"
        lines = (folder / "researchers" / r["name"] / "state" / "transcript.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["type"] == "session_end"  # each researcher closed its transcript
    assert json.loads((folder / "lab.json").read_text())["status"] == "interrupted"


def own_steps(body: dict, turn: int) -> list[dict]:
    """``steps``, with an idea file of each researcher's own (the referee credits an official run to the
    commit's first pusher: two researchers pushing the same code would share one author)."""
    blocks = steps(body, turn)
    for b in blocks:
        if b.get("name") == "write_file":
            tag = hashlib.sha256(json.dumps(body["system"]).encode()).hexdigest()[:12]
            b["input"] = {**b["input"], "content": f"{b['input']['content']}# researcher {tag}\n"}
    return blocks


def test_claude_campaign_against_the_fake_model_server(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789abcdef")
    folder = tmp_path / "claude"
    with FakeModel(own_steps) as fake:
        r = run_lab(
            [
                str(ROOT / "campaigns" / "claude.yaml"),
                "--out",
                str(folder),
                "--researchers",
                "2",
                "--set",
                f"defaults.base_url={fake.url}",
                "--set",
                "defaults.budget.turns=5",
                "--set",
                "testbed.tier=fast",
                "--set",
                "testbed.max_rows=600",
                "--set",
                "testbed.home=navigate",
                "--set",
                "testbed.held_out=[navigate_turns]",
                "--set",
                "referee.port=0",
                "--set",
                "referee.seeds=2",
            ],
            timeout=600,
        )
    assert r.returncode == 0, r.stderr[-3000:]
    snap = snapshot(folder)
    assert [x["name"] for x in snap["researchers"]] == ["r1-prior", "r2-confidence"]
    for x in snap["researchers"]:
        assert x["backend"] == "anthropic" and x["model"] == "claude-opus-4-6"
        assert x["status"] == "finished" and x["stop_reason"] == "turn limit reached (5)"
        assert x["turns"] == 5 and x["official_runs"] == 1
    # every request went to the configured model, with each researcher's own direction in its prompt
    bodies = [q["body"] for q in fake.requests]
    assert len(bodies) == 10 and {b["model"] for b in bodies} == {"claude-opus-4-6"}
    systems = json.dumps([b["system"] for b in bodies])
    assert "what the strong model already believes" in systems and "how much they can be trusted" in systems
    transcript = folder / "researchers" / "r1-prior" / "state" / "transcript.jsonl"
    assert "sk-ant-test" not in transcript.read_text()  # the API key is redacted
    # spend: exactly the fake server's usage times the published price of the model
    prices = PriceTable()
    expected = sum(
        prices.cost("claude-opus-4-6", Usage(u["input"], u["output"], u["cache_write"], u["cache_read"]))
        for u in fake.usages
    )
    assert sum(x["spend_usd"] for x in snap["researchers"]) == pytest.approx(expected, rel=1e-6)
    runs = [x for x in snap["runs"] if not x["baseline"]]
    assert len(runs) == 2 and all(x["status"] == "done" for x in runs)


def test_a_campaign_folder_refuses_another_testbed(finished_campaign) -> None:
    # a different testbed on the same folder is refused before anything starts
    other = finished_campaign.folder.parent / "other.yaml"
    text = (finished_campaign.folder / "campaign.yaml").read_text().replace("seeds: 2", "seeds: 3")
    other.write_text(text)
    r = run_lab([str(other), "--out", str(finished_campaign.folder)], timeout=120)
    assert r.returncode == 2 and "another testbed or seed count" in r.stderr
    assert os.path.exists(finished_campaign.folder / "report.md")


def test_a_referee_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    campaign = write_campaign(tmp_path / "mini.yaml", minutes=0.2)
    r = run_lab([str(campaign), "--out", str(tmp_path / "run"), "--set", "referee.host=203.0.113.7"], 300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the referee exited with code 2" in r.stderr and "cannot listen" in r.stderr
    state = json.loads((tmp_path / "run" / "lab.json").read_text())
    assert state["pids"] == [] and state["status"] == "failed"


def test_too_few_rows_for_a_split_is_a_clear_error_before_any_extraction(tmp_path: Path) -> None:
    """The home task's rows come in groups (a film's snippets together), so a small max_rows can leave
    dev empty: the lab says so, naming the split and the setting, instead of a traceback."""
    campaign = write_campaign(tmp_path / "mini.yaml", minutes=0.2)
    args = [str(campaign), "--out", str(tmp_path / "run"), "--set", "testbed.home=sentiment_movies"]
    r = run_lab([*args, "--set", "testbed.max_rows=200"], 300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "empty dev split" in r.stderr and "testbed.max_rows" in r.stderr
    state = json.loads((tmp_path / "run" / "lab.json").read_text())
    assert state["status"] == "failed" and state["pids"] == []
