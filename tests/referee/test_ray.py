"""The ray executor on a real two-node Ray cluster on this machine: a head and a worker node started
as separate process groups, the worker with the custom resource official-run units ask for. Units
land on the worker; the result equals the local executor's. Killing the worker node mid-run: Ray
retries its units on a new worker node and the run completes exactly once, with the same result."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from aar.referee.db import AuditEntry, Run
from aar.referee.executors.ray_cluster import LocalCluster
from aar.referee.units import RunUnit
from aar.sandbox import bubblewrap_available

from .conftest import HOME, backend
from .test_codestore import bundle, make_repo, push
from .test_units import wait_until

pytestmark = [
    # not importorskip: Ray reads its auth token when first imported, so the executor imports it
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install -e '.[ray]'"),
    pytest.mark.skipif(not bubblewrap_available(), reason="official runs need bubblewrap"),
    pytest.mark.skipif(backend() == "postgres", reason="the executor does not depend on the store"),
]

API = "/api/v1"
GOOD = "from aar.w2s.methods import vanilla\n\ndef run(ctx):\n    return vanilla(ctx)\n"
SLOW = (
    "import time\nfrom aar.w2s.methods import vanilla\n\n"
    "def run(ctx):\n    time.sleep(2.0)\n    return vanilla(ctx)\n"
)
RESOURCE = {"aar_unit": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("ray"))
    try:
        c.start_head(num_cpus=1)  # no aar_unit: official runs never land on the head
        c.start_worker("w1", num_cpus=1, resources=RESOURCE)
        c.wait_nodes(2)
        yield c
    finally:
        c.stop()


def ray_options(c: LocalCluster) -> dict:
    return {"address": c.address, "token": c.token, "resources": RESOURCE, "memory_bytes": 256 << 20}


def worker_nodes() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and "aar_unit" in n["Resources"]}


def official(env, tmp_path, src: str, name: str) -> tuple[dict, int]:
    h = env.agent("alice")
    (pushed,) = push(env, "alice", bundle(make_repo(tmp_path / name, {"idea.py": src}))).json()
    body = {"commit": pushed["commit"], "idea_path": "idea.py", "task": HOME}
    r = env.client.post(f"{API}/runs", headers=h, json=body)
    assert r.status_code == 202, r.text
    return h, r.json()["id"]


def finished(env, run_id: int, h: dict, timeout: float = 400) -> Run:
    wait_until(
        lambda: (
            env.client.get(f"{API}/runs/{run_id}", headers=h).json()["status"] not in ("queued", "running")
        ),
        timeout,
        what=f"run {run_id}",
    )
    with env.ref.db.read() as s:
        return s.get(Run, run_id)


def local_results(make_env, tmp_path, src: str, **opts) -> dict:
    env = make_env(executor="local", runs_dir=None, **opts)
    h, run_id = official(env, tmp_path, src, "local")
    run = finished(env, run_id, h)
    assert run.status == "done", run.error
    return run.results


def test_units_land_on_the_worker_node_and_match_local(cluster, make_env, tmp_path):
    opts = dict(seeds=1, determinism_check=False, sandbox_wall_seconds=120)
    expected = local_results(make_env, tmp_path, GOOD, **opts)
    env = make_env(executor="ray", ray=ray_options(cluster), runs_dir=None, **opts)
    h, run_id = official(env, tmp_path, GOOD, "ray")
    run = finished(env, run_id, h)
    assert run.status == "done", run.error
    workers = worker_nodes()
    assert len(workers) == 1
    calls = run.sandbox["calls"]
    assert calls and {c["ray_node"] for c in calls} == workers  # every unit ran on the worker node
    assert run.results == expected  # same predictions, same scores as the local executor


@pytest.mark.slow
def test_worker_node_killed_mid_run(cluster, make_env, tmp_path):
    opts = dict(seeds=2, sandbox_wall_seconds=120)
    env = make_env(executor="ray", ray=ray_options(cluster), runs_dir=None, **opts)
    h, run_id = official(env, tmp_path, SLOW, "ray")

    def recorded() -> int:
        with env.ref.db.read() as s:
            return s.scalar(select(func.count()).select_from(RunUnit).where(RunUnit.run_id == run_id))

    wait_until(lambda: recorded() >= 1, 300, what="a first unit")
    first = worker_nodes()
    (w1,) = [n for n in cluster.nodes if n.name == "w1"]
    cluster.kill_node(w1)  # the worker node dies mid-run (raylet and workers, SIGKILL)
    time.sleep(2)
    cluster.start_worker("w2", num_cpus=1, resources=RESOURCE)  # a new node: Ray retries the lost units there
    run = finished(env, run_id, h, timeout=500)
    assert run.status == "done", run.error
    n_tasks = len(env.ref.data.official_tasks())
    calls = run.sandbox["calls"]
    assert len(calls) == 2 * n_tasks + 1  # each unit (and the determinism rerun) charged once
    nodes = {c["ray_node"] for c in calls}
    assert len(nodes - first) >= 1  # some units ran on the new node
    with env.ref.db.read() as s:
        keys = s.execute(
            select(RunUnit.task, RunUnit.seed, RunUnit.tag).where(RunUnit.run_id == run_id)
        ).all()
        finishes = s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "runs.finish")
        )
    assert len(keys) == len(set(keys)) == 2 * n_tasks + 1
    assert finishes == 1  # scored exactly once
    assert run.results == local_results(make_env, tmp_path, SLOW, **opts)


def test_a_local_run_reproduces_bit_for_bit_on_the_worker_node(cluster, make_env, tmp_path):
    """`aar referee reproduce --ray`: a run the local executor scored, run again on the cluster, gives
    the same predictions bit for bit and the same scores (the leaderboard does not depend on where)."""
    from aar.referee import executors
    from aar.referee.reproduce import reproduce

    opts = dict(seeds=1, determinism_check=True, sandbox_wall_seconds=120)
    env = make_env(executor="local", runs_dir=None, **opts)
    h, run_id = official(env, tmp_path, GOOD, "local")
    assert finished(env, run_id, h).status == "done"
    config = replace(env.config, executor="ray", ray=ray_options(cluster))
    ray_exec = executors.build("ray", env.ref.runs, config)
    try:
        (check,) = reproduce(env.ref.runs, ray_exec, [run_id])
        assert check.identical, check
        assert check.units == len(env.ref.data.official_tasks()) + 1
        assert set(check.ran_on) == worker_nodes()  # every unit ran again on the worker node
    finally:
        ray_exec.shutdown(wait=False)
