"""Official runs as units: a referee stopped mid-run leaves the run in flight with the units it
finished recorded; the next referee on the same database resumes it without running those units
again, scores it exactly once, with the same result as an uninterrupted run. Executors come from a
registry by name, and choosing ``local`` never imports Ray."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from aar.referee import executors
from aar.referee.db import AuditEntry, Run
from aar.referee.units import RunUnit
from aar.sandbox import bubblewrap_available

from .conftest import HOME
from .test_codestore import bundle, make_repo, push

API = "/api/v1"
SEEDS = 1  # four units a run (three tasks and the determinism re-run)
# deterministic, and slow enough per unit (about 1 s) that a referee can stop between two units
SLOW = (
    "import time\nfrom aar.w2s.methods import vanilla\n\n"
    "def run(ctx):\n    time.sleep(1.0)\n    return vanilla(ctx)\n"
)


def wait_until(predicate, timeout: float = 240.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_registry_names_and_lazy_ray():
    assert {"local", "none", "ray"} <= set(executors.names())
    with pytest.raises(ValueError, match="unknown executor"):
        executors.build("nope", None, None)  # type: ignore[arg-type]
    # a referee with the local executor (and the lab) never imports Ray
    code = (
        "import sys; from aar.referee import app, executors; from aar.referee.executors import local, none;"
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not bubblewrap_available(), reason="official runs need bubblewrap")
def test_restart_resumes_units_and_scores_once(make_env, fresh_db_url, tmp_path):
    db_url = fresh_db_url("units")
    opts = dict(executor="local", seeds=SEEDS, sandbox_wall_seconds=120, runs_dir=None, db_url=db_url)
    env = make_env(**opts)
    h = env.agent("alice")
    (pushed,) = push(env, "alice", bundle(make_repo(tmp_path / "ideas", {"slow.py": SLOW}))).json()
    body = {"commit": pushed["commit"], "idea_path": "slow.py", "task": HOME}
    run_id = env.client.post(f"{API}/runs", headers=h, json=body).json()["id"]

    def units() -> list[tuple[int, str, int, str]]:
        with env.ref.db.read() as s:
            rows = s.scalars(select(RunUnit).where(RunUnit.run_id == run_id).order_by(RunUnit.id)).all()
            return [(r.id, r.task, r.seed, r.tag) for r in rows]

    wait_until(lambda: len(units()) >= 2, what="two units recorded")
    env.client.__exit__(None, None, None)  # the referee stops mid-run
    for t in env.ref.executor._threads:  # the coordinator gives up after its current unit
        t.join(120)
    before = units()
    with env.ref.db.read() as s:
        status = s.get(Run, run_id).status
    assert status in ("running", "waiting"), status  # in flight, not failed, not done
    n_tasks = len(env.ref.data.official_tasks())
    assert 2 <= len(before) < SEEDS * n_tasks + 1

    env2 = make_env(**opts)  # a new referee on the same database resumes the run
    env2.tokens.update(env.tokens)  # the same database: the same agents
    h2 = env2.agent("alice")
    done = wait_until(
        lambda: (r := env2.client.get(f"{API}/runs/{run_id}", headers=h2).json())["status"] == "done" and r,
        what="the resumed run",
    )
    assert done["status"] == "done"
    after = units()
    assert after[: len(before)] == before  # the units that ran before the stop were not run again
    assert len(after) == len({key[1:] for key in after}) == SEEDS * n_tasks + 1  # each unit once
    with env2.ref.db.read() as s:
        run = s.get(Run, run_id)
        finishes = s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "runs.finish")
        )
        assert run.attempts == 2
        assert len(run.sandbox["calls"]) == SEEDS * n_tasks + 1  # every unit charged once
        resumed = run.results

    # the same idea run uninterrupted scores the same, on every task and part
    again = env2.client.post(f"{API}/runs", headers=h2, json=body).json()["id"]
    wait_until(
        lambda: env2.client.get(f"{API}/runs/{again}", headers=h2).json()["status"] == "done",
        what="the uninterrupted run",
    )
    with env2.ref.db.read() as s:
        assert s.get(Run, again).results == resumed
        finishes_after = s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "runs.finish")
        )
    assert finishes == 1 and finishes_after == 2  # scored exactly once each
