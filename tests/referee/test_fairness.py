"""Official runs shared fairly: credit to the commit's author, a queue per researcher served in turn,
caps on queued runs and on run time, and time-outs caused by load retried instead of flagged."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from aar.referee.db import Flag, Run
from aar.sandbox import bubblewrap_available

from .conftest import HOME
from .test_codestore import bundle, make_repo, push
from .test_runs import wait_run

API = "/api/v1"
FAST = "def run(ctx):\n    return [0.5] * len(ctx.test_ids)\n"
SLOW = "import time\n\ndef run(ctx):\n    time.sleep({s})\n    return [0.5] * len(ctx.test_ids)\n"


def _commit(env, tmp_path, name: str, files: dict[str, str]) -> str:
    repo = make_repo(tmp_path / name, files)
    r = push(env, name, bundle(repo))
    assert r.status_code == 200, r.text
    return r.json()[0]["commit"]


def _run(env, name: str, commit: str, idea: str = "fast.py"):
    return env.client.post(
        f"{API}/runs", headers=env.agent(name), json={"commit": commit, "idea_path": idea, "task": HOME}
    )


def test_a_run_of_someone_elses_commit_is_credited_to_its_author(env, tmp_path):
    commit = _commit(env, tmp_path, "alice", {"fast.py": FAST})
    r = _run(env, "bob", commit)
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["author"] == "alice" and run["submitted_by"] == "bob" and run["reproduction"] is True
    # bob copies alice's commit into his own namespace: it is still alice's
    repo = tmp_path / "alice"
    assert push(env, "bob", bundle(repo)).status_code == 200
    again = _run(env, "bob", commit).json()
    assert again["author"] == "alice" and again["reproduction"]
    own = _run(env, "alice", commit).json()
    assert own["author"] == own["submitted_by"] == "alice" and not own["reproduction"]
    listed = env.client.get(f"{API}/runs", params={"agent": "alice"}, headers=env.agent("bob")).json()
    assert {x["id"] for x in listed} == {run["id"], again["id"], own["id"]}
    assert env.client.get(f"{API}/runs", params={"agent": "bob"}, headers=env.agent("bob")).json() == []


def test_the_queue_serves_researchers_in_turn(env, tmp_path):
    a = _commit(env, tmp_path, "alice", {"fast.py": FAST})
    b = _commit(env, tmp_path, "bob", {"fast.py": FAST})
    alice = [_run(env, "alice", a).json()["id"] for _ in range(3)]
    bob = [_run(env, "bob", b).json()["id"] for _ in range(2)]
    order = [env.ref.runs.claim_next() for _ in range(6)]
    assert order == [alice[0], bob[0], alice[1], bob[1], alice[2], None]


def test_queued_runs_and_run_time_are_capped(make_env, tmp_path):
    env = make_env(max_queued_runs=2, run_seconds_per_day=100.0, reproduction_share=0.5)
    commit = _commit(env, tmp_path, "alice", {"fast.py": FAST})
    assert [_run(env, "alice", commit).status_code for _ in range(3)] == [202, 202, 429]
    assert "queued" in _run(env, "alice", commit).json()["detail"]
    # others' reproductions may use only half of alice's run time
    first = env.ref.runs.claim_next()
    bob = env.ref.auth.identify(env.agent("bob")["Authorization"]).id
    with env.ref.db.write() as s:
        run = s.get(Run, first)
        run.status, run.seconds, run.agent_id = "done", 60.0, bob
    refused = _run(env, "bob", commit)
    assert refused.status_code == 429 and "reproductions" in refused.json()["detail"]
    # and alice's own run time: spent, refused whoever submits
    with env.ref.db.write() as s:
        for run in s.scalars(select(Run)):
            run.status, run.seconds = "done", 60.0
    for who in ("alice", "bob"):
        r = _run(env, who, commit)
        assert r.status_code == 429 and "run time" in r.json()["detail"], r.text


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_slow_runs_of_one_researcher_do_not_hold_up_another(make_env, tmp_path):
    env = make_env(executor="local", seeds=1, determinism_check=False, sandbox_wall_seconds=120)
    slow = _commit(env, tmp_path, "alice", {"slow.py": SLOW.format(s=2)})
    fast = _commit(env, tmp_path, "bob", {"fast.py": FAST})
    alice = [_run(env, "alice", slow, "slow.py").json()["id"] for _ in range(3)]
    bob = _run(env, "bob", fast).json()["id"]
    h = env.agent("bob")
    for run_id in [bob, *alice]:
        assert wait_run(env, run_id, h)["status"] == "done"
    with env.ref.db.read() as s:
        runs = {r.id: r for r in s.scalars(select(Run))}
    # bob waited for at most the one run of alice's that was running when he submitted
    assert runs[bob].started_at <= runs[alice[1]].started_at
    assert runs[bob].started_at - runs[alice[0]].finished_at < dt.timedelta(seconds=5)
    assert all(runs[i].seconds and runs[i].seconds >= 4 for i in alice)  # 2 tasks x 2 s charged


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_a_time_out_under_load_is_retried_and_not_flagged(make_env, tmp_path):
    env = make_env(executor="local", seeds=1, determinism_check=False, sandbox_wall_seconds=3, load_retries=1)
    commit = _commit(env, tmp_path, "alice", {"slow.py": SLOW.format(s=30)})
    h = env.agent("alice")
    env.ref.runs.load_probe = lambda: (99.0, 99.0, 99.0)  # the host is busier than its cores
    loaded = wait_run(env, _run(env, "alice", commit, "slow.py").json()["id"], h)
    env.ref.runs.load_probe = lambda: (0.0, 0.0, 0.0)
    quiet = wait_run(env, _run(env, "alice", commit, "slow.py").json()["id"], h)
    assert loaded["status"] == quiet["status"] == "failed"
    assert "overloaded" in loaded["error"]
    with env.ref.db.read() as s:
        attempts = {r.id: r.attempts for r in s.scalars(select(Run))}
        flagged = {f.subject_id for f in s.scalars(select(Flag).where(Flag.subject_type == "run"))}
    assert attempts[loaded["id"]] == 2 and attempts[quiet["id"]] == 1
    assert loaded["id"] not in flagged and quiet["id"] in flagged
