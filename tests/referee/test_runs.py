"""Official runs through the real sandbox: a good idea is scored, hostile ideas fail cleanly and are
flagged, and the referee keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import aar
from aar.referee.db import Flag, RunPrediction
from aar.sandbox import bubblewrap_available

from .conftest import HELD, HOME, VISIBLE
from .test_codestore import bundle, make_repo, push

API = "/api/v1"

GOOD = "from aar.w2s.methods import vanilla\n\ndef run(ctx):\n    return vanilla(ctx)\n"
HOSTILE = {
    "read_labels": """
import numpy as np
def run(ctx):
    for path in {paths!r}:
        try:
            data = np.load(path)
            return data["labels_final"].astype(float)  # would be a perfect score
        except Exception as exc:
            last = exc
    raise last
""",
    "socket": """
import socket
def run(ctx):
    s = socket.create_connection(("127.0.0.1", 22), timeout=3)
    s.sendall(b"leak")
    return ctx.weak[: len(ctx.test_ids)]
""",
    "fork_bomb": """
import os
def run(ctx):
    while True:
        os.fork()
""",
    "memory": """
def run(ctx):
    hog = bytearray(10 * {limit})
    return [0.5] * len(ctx.test_ids)
""",
    "symlink_predictions": """
import os
import sys
def run(ctx):
    os.symlink({paths!r}[0], sys.argv[3])  # the referee must not follow it into its private data
    os._exit(0)
""",
    "write_outside": """
import pathlib
import aar
def run(ctx):
    target = pathlib.Path(aar.__file__).parent / "pwned.py"
    target.write_text("owned")
    return [0.5] * len(ctx.test_ids)
""",
}


def wait_run(env, run_id, h, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = env.client.get(f"{API}/runs/{run_id}", headers=h).json()
        if run["status"] in ("done", "failed", "cancelled"):
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish: {run}")


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_official_runs_good_and_hostile(make_env, tmp_path, data_dir):
    mem = 2 * 1024**3
    env = make_env(
        executor="local",
        seeds=1,
        sandbox_memory_bytes=mem,
        sandbox_wall_seconds=120,
        sandbox_max_processes=64,
        runs_dir=None,
        max_queued_runs=len(HOSTILE) + 1,
    )
    h = env.agent("alice")
    files = {"good.py": GOOD}
    label_paths = [str(data_dir / "tasks" / HOME / "arrays.npz"), str(data_dir / "manifest.json")]
    for name, src in HOSTILE.items():
        files[f"{name}.py"] = src.replace("{paths!r}", repr(label_paths)).replace("{limit}", str(mem))
    repo = make_repo(tmp_path / "ideas", files)
    (pushed,) = push(env, "alice", bundle(repo)).json()
    commit = pushed["commit"]

    ids = {}
    for name in ["good", *HOSTILE]:
        r = env.client.post(
            f"{API}/runs", headers=h, json={"commit": commit, "idea_path": f"{name}.py", "task": HOME}
        )
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]
    runs = {name: wait_run(env, run_id, h) for name, run_id in ids.items()}

    good = runs["good"]
    assert good["status"] == "done", good
    # the researcher sees released public scores of the tasks it may see, nothing exact
    assert good["view"] == "researcher" and "results" not in good
    assert set(good["released"]) == {HOME, VISIBLE}
    assert set(good["released"][HOME]) == {"pgr", "pgr_ci", "improved", "best_pgr", "resolution"}
    admin_view = env.client.get(f"{API}/runs/{ids['good']}", headers=env.agent("root", admin=True)).json()
    assert set(admin_view["results"]) == {HOME, HELD, VISIBLE}
    for task, res in admin_view["results"].items():
        assert res["role"] == {HOME: "home", HELD: "held_out", VISIBLE: "visible"}[task]
        parts = ("private",) if task == HELD else ("public", "private")
        assert [p for p in ("public", "private") if res[p]] == list(parts)
        for part in parts:
            score = res[part]
            assert (
                0.4 < score["transfer_acc"] < 1.0 and len(score["transfer_acc_ci"]) == 2 and "pgr_ci" in score
            )
    assert good["sandbox_backend"] == "bubblewrap"
    assert "predictions" not in str(good)  # per-seed predictions are stored, never returned
    with env.ref.db.read() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(RunPrediction).where(RunPrediction.run_id == ids["good"])
            )
            == 3  # one seed on each of the three tasks
        )

    with env.ref.db.read() as s:
        flags = {(f.subject_id, f.kind) for f in s.scalars(select(Flag).where(Flag.subject_type == "run"))}
    for name in HOSTILE:
        run = runs[name]
        assert run["status"] == "failed", (name, run)
        assert run["error"], name
        assert any(sid == ids[name] and kind in ("sandbox_violation", "run_failed") for sid, kind in flags), (
            name
        )
        print(f"\n{name}: {run['error'].splitlines()[0]}")
    assert not (Path(aar.__file__).parent / "pwned.py").exists()
    kinds = {kind for sid, kind in flags if sid in (ids["read_labels"], ids["socket"])}
    assert kinds == {"sandbox_violation"}  # seen as attempts, not as ordinary bugs

    # still serving: health, a dev query, the leaderboard with the run and the baselines
    assert env.client.get(f"{API}/health").status_code == 200
    dev = env.client.post(
        f"{API}/dev/evaluate", headers=h, json={"task": HOME, "predictions": env.dev_preds()}
    )
    assert dev.status_code == 200
    env.ref.runs.ensure_baselines(["vanilla", "logconf"])
    board = env.client.get(f"{API}/leaderboard", headers=h).json()
    mine = [row for row in board if row["id"] == ids["good"]]
    assert mine and mine[0]["commit"] == commit and mine[0]["author"] == "alice"
    assert mine[0]["review_state"] == "unreviewed" and "results" not in mine[0]
    assert {row["idea_path"] for row in board if row["baseline"]} == {"vanilla", "logconf"}
    assert not any(row["id"] in [ids[n] for n in HOSTILE] for row in board)  # failed runs are not ranked

    # a human reviews: admin endpoint and the CLI
    admin = env.agent("root", admin=True)
    queue = env.client.get(f"{API}/admin/flags", headers=admin).json()
    assert {f["subject_id"] for f in queue if f["subject_type"] == "run"} >= {ids[n] for n in HOSTILE}
    r = env.client.post(
        f"{API}/admin/runs/{ids['good']}/review",
        headers=admin,
        json={"verdict": "verified", "reason": "re-ran by hand"},
    )
    assert r.status_code == 200 and r.json()["review_state"] == "verified"
    assert (
        env.client.post(
            f"{API}/admin/runs/{ids['good']}/review", headers=h, json={"verdict": "verified", "reason": "me"}
        ).status_code
        == 403
    )


def test_run_validation(env, tmp_path):
    h = env.agent("alice")
    repo = make_repo(tmp_path / "ideas", {"good.py": GOOD})
    (pushed,) = push(env, "alice", bundle(repo)).json()
    bad = [
        ({"commit": pushed["commit"], "idea_path": "missing.py", "task": HOME}, 422),
        ({"commit": pushed["commit"], "idea_path": "../good.py", "task": HOME}, 422),
        ({"commit": pushed["commit"], "idea_path": "good.py", "task": "nope"}, 422),
        ({"commit": "f" * 40, "idea_path": "good.py", "task": HOME}, 404),
        ({"commit": 12345678, "idea_path": "good.py", "task": HOME}, 422),
    ]
    for payload, status in bad:
        r = env.client.post(f"{API}/runs", headers=h, json=payload)
        assert r.status_code == status, (payload, r.text)
    r = env.client.post(
        f"{API}/runs", headers=h, json={"commit": pushed["commit"], "idea_path": "good.py", "task": HOME}
    )
    assert r.status_code == 202 and r.json()["status"] == "queued"  # executor "none": stays queued
    assert env.client.delete(f"{API}/runs/{r.json()['id']}", headers=env.agent("bob")).status_code == 403
    assert env.client.delete(f"{API}/runs/{r.json()['id']}", headers=h).json()["status"] == "cancelled"
