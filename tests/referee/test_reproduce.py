"""`aar referee reproduce`: a finished official run, run again from its commit, gives the same
predictions bit for bit and the same scores; a record that no longer matches its commit (here: a
stored unit altered behind the referee's back) is reported, by unit and by score, and the CLI exits 1.
The database is not written to."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import select

from aar.referee import executors
from aar.referee.db import Run, RunPrediction
from aar.referee.reproduce import reproduce, summary
from aar.referee.units import RunUnit
from aar.sandbox import bubblewrap_available

from .conftest import HOME
from .test_codestore import bundle, make_repo, push
from .test_units import wait_until

pytestmark = pytest.mark.skipif(not bubblewrap_available(), reason="official runs need bubblewrap")

API = "/api/v1"
IDEA = (
    "import numpy as np\nfrom aar.w2s.methods import vanilla\n\n"
    "def run(ctx):\n    p = np.asarray(vanilla(ctx))\n    return np.clip(0.9 * p + 0.05, 0, 1)\n"
)
OPTS = dict(executor="local", seeds=1, determinism_check=True, sandbox_wall_seconds=120, runs_dir=None)


def finished_run(env, tmp_path) -> int:
    h = env.agent("alice")
    (pushed,) = push(env, "alice", bundle(make_repo(tmp_path / "ideas", {"idea.py": IDEA}))).json()
    body = {"commit": pushed["commit"], "idea_path": "idea.py", "task": HOME}
    run_id = env.client.post(f"{API}/runs", headers=h, json=body).json()["id"]

    def status() -> str | None:
        s = env.client.get(f"{API}/runs/{run_id}", headers=h).json()["status"]
        return s if s in ("done", "failed") else None

    assert wait_until(status, 300, what="the run") == "done"
    return run_id


def test_a_done_run_reproduces_identically_and_an_altered_record_is_caught(make_env, fresh_db_url, tmp_path):
    db_url = fresh_db_url("repro")
    env = make_env(**OPTS, db_url=db_url)
    run_id = finished_run(env, tmp_path)
    local = executors.build("local", env.ref.runs, env.config)
    try:
        (check,) = reproduce(env.ref.runs, local, [run_id])
        assert check.identical, check
        n_tasks = len(env.ref.data.official_tasks())
        assert check.units == n_tasks + 1  # every task's seed and the determinism re-run
        assert check.label == "alice:idea.py" and check.max_abs_diff == 0.0

        with env.ref.db.write() as s:  # alter one recorded unit: the record no longer matches the commit
            row = s.scalars(select(RunUnit).where(RunUnit.run_id == run_id, RunUnit.task == HOME)).first()
            preds = np.frombuffer(row.predictions, dtype=np.float64).copy()
            preds[:5] = 1.0 - preds[:5]
            row.predictions = preds.tobytes()
            run = s.get(Run, run_id)  # and a stored score
            run.results = {**run.results, HOME: {**run.results[HOME], "public": {"pgr": 0.99}}}
        with env.ref.db.read() as s:
            before = (s.get(Run, run_id).results, s.scalars(select(RunUnit.predictions)).all())
        (check,) = reproduce(env.ref.runs, local, [run_id])
        assert not check.identical
        assert check.units_differ == [f"{HOME}/0"] and check.max_abs_diff > 0.5
        assert f"{HOME}/public" in check.results_differ
        assert summary([check])["differ"][0]["run_id"] == run_id
        with env.ref.db.read() as s:  # reproducing wrote nothing
            assert (s.get(Run, run_id).results, s.scalars(select(RunUnit.predictions)).all()) == before
    finally:
        local.shutdown(wait=False)

    cli = [sys.executable, "-m", "aar.cli", "referee", "reproduce", "--data", str(env.config.data_dir)]
    proc = subprocess.run([*cli, "--db", db_url, "--run", str(run_id)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "0 of 1 runs reproduced identically" in proc.stderr and "DIFFERS" in proc.stderr
    proc = subprocess.run([*cli, "--db", db_url, "--executor", "none"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--executor" in proc.stderr and "Traceback" not in proc.stderr


def test_a_baseline_is_recomputed_in_process_and_an_altered_record_is_caught(make_env):
    env = make_env(**OPTS)
    env.ref.runs.ensure_baselines(["vanilla"])
    local = executors.build("local", env.ref.runs, env.config)
    try:
        (check,) = reproduce(env.ref.runs, local)
        assert check.label == "baseline:vanilla" and check.identical and check.max_abs_diff == 0.0, check
        with env.ref.db.write() as s:  # alter one stored seed of the baseline's predictions
            row = s.scalars(select(RunPrediction).where(RunPrediction.task == HOME)).first()
            preds = np.frombuffer(row.predictions, dtype=np.float64).copy()
            preds[:5] = 1.0 - preds[:5]
            row.predictions = preds.tobytes()
        (check,) = reproduce(env.ref.runs, local)
        assert check.units_differ == [HOME] and check.max_abs_diff > 0.5 and not check.identical, check
    finally:
        local.shutdown(wait=False)
