"""First result first: the lab's data dir holds only the shown tasks; the referee prepares the held-out
one in the background, official runs that reach it wait (status ``waiting``), and nothing fails: a
run finishes once, scored on every task, with the baselines extended to the new task. A held-out
task refused in the background is dropped, and the runs waiting for it finish without it; a referee
stopped while a run waits leaves it to the next one."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aar.contract import has_result
from aar.referee import preparer
from aar.referee.app import create_app
from aar.referee.config import RefereeConfig
from aar.referee.datadir import DataStore, TaskNotReady, export_public, init_data_dir
from aar.referee.db import Run
from aar.sandbox import bubblewrap_available

from .conftest import HELD, HOME
from .test_codestore import bundle, make_repo

API = "/api/v1"
GOOD = "from aar.w2s.methods import vanilla\n\ndef run(ctx):\n    return vanilla(ctx)\n"
QUIET = {"log": lambda *_a: None}


def deferred_data_dir(path, tasks=(HOME, HELD), max_rows=2000):
    init_data_dir(path, tasks=list(tasks), tier="fast", max_rows=max_rows, defer_held_out=True, **QUIET)
    return path


@pytest.fixture
def gate(monkeypatch):
    """Holds the background preparation until the test sets it (the preparation itself is the real one)."""
    event = threading.Event()
    real = preparer.prepare_task

    def gated(*args, **kwargs):
        assert event.wait(120), "the test never opened the gate"
        return real(*args, **kwargs)

    monkeypatch.setattr(preparer, "prepare_task", gated)
    return event


class Referee:
    """A referee app on ``data`` with a local executor, as `aar referee serve` runs it."""

    def __init__(self, data, db_url, **overrides):
        overrides = {"executor": "local", "seeds": 1, "runs_dir": None, **overrides}
        config = RefereeConfig.load(data, db_url=db_url, **overrides)
        self.app = create_app(config)
        self.ref = self.app.state.referee
        self.client = TestClient(self.app, raise_server_exceptions=False)

    def __enter__(self):
        self.client.__enter__()
        return self

    def __exit__(self, *exc):
        self.client.__exit__(*exc)

    def headers(self, name, admin=False):
        from aar.referee.auth import ensure_agent

        token = f"token-{name}-{'x' * 32}"
        ensure_agent(self.ref.db, name, token, admin=admin)
        return {"Authorization": f"Bearer {token}"}

    def admin_run(self, run_id):
        return self.client.get(f"{API}/runs/{run_id}", headers=self.headers("root", admin=True)).json()

    def wait_status(self, run_id, statuses, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.admin_run(run_id)
            if run["status"] in statuses:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} never reached {statuses}: {run}")

    def submit(self, tmp_path, name="alice", task=HOME):
        h = self.headers(name)
        repo = make_repo(tmp_path / f"idea-{name}", {"good.py": GOOD})
        pushed = self.client.post(
            f"{API}/code", content=bundle(repo), headers={**h, "content-type": "application/octet-stream"}
        )
        assert pushed.status_code == 200, pushed.text
        body = {"commit": pushed.json()[0]["commit"], "idea_path": "good.py", "task": task}
        r = self.client.post(f"{API}/runs", headers=h, json=body)
        assert r.status_code == 202, r.text
        return r.json()["id"]


def test_only_the_shown_tasks_are_prepared_first(tmp_path):
    data = deferred_data_dir(tmp_path / "data")
    store = DataStore(data)
    assert json.loads((data / "manifest.json").read_text())["tasks"] == {HOME: "home", HELD: "held_out"}
    assert store.ready(HOME) and not store.ready(HELD)
    assert store.pending() == [HELD] and store.official_tasks() == [HOME, HELD]
    with pytest.raises(TaskNotReady, match=HELD):
        store.task(HELD)
    assert [p.parent.name for p in export_public(data, tmp_path / "public")] == [HOME] * 3


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_runs_wait_for_the_held_out_task_then_finish_once_on_every_task(tmp_path, fresh_db_url, gate):
    data = deferred_data_dir(tmp_path / "data")
    db_url = fresh_db_url()
    with Referee(data, db_url) as r:
        assert r.ref.runs.ensure_baselines(["vanilla"]) == 1  # as `initialise` does: on the ready tasks
        run_id = r.submit(tmp_path)
        waiting = r.wait_status(run_id, {"waiting", "done", "failed"})
        assert waiting["status"] == "waiting", waiting  # home is scored; the held-out task is not there yet
        prep = r.client.get(f"{API}/admin/preparation", headers=r.headers("root", admin=True)).json()
        assert [(p["task"], p["role"]) for p in prep] == [(HELD, "held_out")]
        assert prep[0]["state"] in ("queued", "preparing")
        assert r.client.get(f"{API}/admin/preparation", headers=r.headers("alice")).status_code == 403
        # dev scoring a held-out task still being prepared: the usual refusal, not a crash
        probe = {"task": HELD, "predictions": {"x": 0.5}}
        dev = r.client.post(f"{API}/dev/evaluate", headers=r.headers("alice"), json=probe)
        assert dev.status_code == 403 and "held-out" in dev.json()["detail"]
        # the researcher already has its official result (the released home score), and never the
        # held-out task's name
        mine = r.client.get(f"{API}/runs/{run_id}", headers=r.headers("alice"))
        assert mine.json()["status"] == "waiting" and set(mine.json()["released"]) == {HOME}
        assert has_result(mine.json()) and HELD not in mine.text
        released = mine.json()["released"]

        gate.set()
        done = r.wait_status(run_id, {"done", "failed"})
        assert done["status"] == "done", done
        assert set(done["results"]) == {HOME, HELD}
        # released once, before the wait: the Ladder saw one query for this run
        assert r.client.get(f"{API}/runs/{run_id}", headers=r.headers("alice")).json()["released"] == released
        prep = r.client.get(f"{API}/admin/preparation", headers=r.headers("root", admin=True)).json()
        assert prep[0]["state"] == "ready" and prep[0]["reason"] is None
        with r.ref.db.read() as session:
            vanilla = session.scalar(select(Run).where(Run.is_baseline.is_(True)))
            assert set(vanilla.results) == {HOME, HELD}  # the baseline was extended before the run went on
            researcher_runs = select(func.count()).select_from(Run).where(Run.is_baseline.is_(False))
            assert session.scalar(researcher_runs) == 1
        cards = r.client.get(f"{API}/tasks", headers=r.headers("root", admin=True)).json()
        assert {c["name"] for c in cards} == {HOME, HELD}


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_a_referee_stopped_while_a_run_waits_leaves_it_to_the_next(tmp_path, fresh_db_url, gate):
    data = deferred_data_dir(tmp_path / "data")
    db_url = fresh_db_url()
    with Referee(data, db_url) as first:
        first.ref.runs.ensure_baselines(["vanilla"])
        run_id = first.submit(tmp_path)
        assert first.wait_status(run_id, {"waiting", "done", "failed"})["status"] == "waiting"
    # stopped mid-wait: the run stays in flight (not failed), the task still pending
    with Referee(data, db_url) as second:
        assert second.admin_run(run_id)["status"] in ("queued", "running", "waiting")
        gate.set()
        done = second.wait_status(run_id, {"done", "failed"})
        assert done["status"] == "done" and set(done["results"]) == {HOME, HELD}
    assert DataStore(data).ready(HELD) and not DataStore(data).refused(HELD)


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_a_held_out_task_refused_in_the_background_is_dropped(tmp_path, fresh_db_url, monkeypatch):
    import random

    from aar.w2s import tasks
    from aar.w2s.tasks import Row, TaskSpec, get_spec

    coin = random.Random(7)
    noise = [Row(r.id, r.text, int(coin.random() < 0.9), r.group) for r in get_spec(HOME).build()[:1500]]
    spec = TaskSpec(name="coin_labels", domain="noise", build=lambda: noise)
    monkeypatch.setitem(tasks._REGISTRY, "coin_labels", spec)
    data = deferred_data_dir(tmp_path / "data", tasks=(HOME, "coin_labels"), max_rows=1500)
    with Referee(data, fresh_db_url()) as r:
        run_id = r.submit(tmp_path)
        done = r.wait_status(run_id, {"done", "failed"})
        assert done["status"] == "done" and set(done["results"]) == {HOME}, done
        prep = r.client.get(f"{API}/admin/preparation", headers=r.headers("root", admin=True)).json()
        assert prep[0]["state"] == "refused" and "majority-class rate" in prep[0]["reason"]
    store = DataStore(data)
    assert store.refused("coin_labels") and store.official_tasks() == [HOME] and not store.pending()


def test_background_preparation_runs_at_lower_priority_and_its_workers_inherit_it():
    """The referee's background thread gives way to official runs: it and the extraction workers it
    starts (threads inherit the nice value on Linux) run 10 nice levels below the serving threads."""
    import os

    seen: dict[str, int] = {}

    def worker() -> None:
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def background() -> None:
        preparer._lower_priority()
        seen["background"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        t = threading.Thread(target=worker)
        t.start()
        t.join()

    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=background)
    t.start()
    t.join()
    assert seen["background"] == min(19, main + preparer.BACKGROUND_NICE)
    assert seen["worker"] == seen["background"]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main  # the caller is untouched
