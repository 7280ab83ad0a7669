"""A researcher killed with SIGKILL right after submitting an official run, then restarted, continues
from its transcript: it picks up where it was and never submits the same run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from aar.agents.transcript import Transcript


def start(referee, home, token) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "aar.cli",
        "agent",
        "run",
        "--referee",
        str(referee.socket),
        "--token",
        token,
        "--backend",
        "scripted",
        "--seed",
        "3",
        "--direction",
        "self-training",
        "--workspace",
        str(home),
        "--public",
        str(referee.public),
        "--max-runs",
        "2",
        "--hours",
        "0.1",
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=open(f"{home}.log", "a"), start_new_session=True
    )  # noqa: SIM115


def test_sigkill_and_resume_without_repeating_runs(referee, base, agent_name):
    token = referee.add_agent(agent_name)
    home = base / agent_name
    transcript = Transcript(home / "state" / "transcript.jsonl")
    proc = start(referee, home, token)
    deadline = time.monotonic() + 240
    while not any(r["type"] == "official_run" for r in transcript.records()):
        assert proc.poll() is None and time.monotonic() < deadline, open(f"{home}.log").read()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # right after the submission: its tool_result is likely unwritten
    proc.wait()
    before = transcript.records()
    assert not any(r["type"] == "session_end" for r in before)
    calls_before = sum(1 for r in before if r["type"] == "tool_start")

    proc = start(referee, home, token)
    assert proc.wait(timeout=400) == 0, open(f"{home}.log").read()[-3000:]
    records = transcript.records()
    assert records[-1]["type"] == "session_end" and "official-run budget" in records[-1]["reason"]
    starts = [r for r in records if r["type"] == "session_start"]
    assert [s["resumed"] for s in starts] == [False, True]
    # the second session went on from the first: no second orientation (notebook read, leaderboard, anchor)
    second = [r for r in records if r["type"] == "tool_start" and r["session"] == 2]
    assert sum(1 for r in records if r["type"] == "tool_start" and r["name"] == "leaderboard") == 1
    assert second and len(second) + calls_before == sum(1 for r in records if r["type"] == "tool_start")
    with referee.client(token) as http:
        runs = http.get("/runs", params={"agent": agent_name}).json()
    keys = [(r["commit"], r["idea_path"]) for r in runs]
    assert len(keys) == len(set(keys)) == 2, keys
    official = [r for r in records if r["type"] == "official_run"]
    assert sorted(r["run_id"] for r in official) == sorted(r["id"] for r in runs)
    resubmits = [r for r in records if r["type"] == "tool_result" and r["name"] == "submit_run"]
    assert all(not r["is_error"] for r in resubmits)
    notes = [json.loads(r["content"]).get("note", "") for r in resubmits]
    assert len(resubmits) == 2 or any("already submitted" in n for n in notes)
