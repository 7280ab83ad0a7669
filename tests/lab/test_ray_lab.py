"""One switch: ``aar lab run CAMPAIGN --ray HOST:PORT`` (or ``ray: {address: ...}`` in the campaign)
sends the official-run units of the whole campaign to a Ray cluster; without it Ray is not imported."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aar.lab.campaign import load
from aar.lab.cli import CAMPAIGNS
from aar.lab.runner import RESEARCHER_KEYS
from aar.referee.executors.ray_cluster import LocalCluster, ray_env
from tests.lab.minilab import db_rows, start_lab, wait_for, write_campaign


def test_the_switch_parses_into_the_campaign() -> None:
    assert load(CAMPAIGNS / "demo.yaml").ray is None  # default: local, no Ray
    c = load(CAMPAIGNS / "demo.yaml", ["ray.address=10.0.0.5:6379", "ray.resources={aar_unit: 1}"])
    assert c.ray is not None and c.ray.address == "10.0.0.5:6379" and c.ray.resources == {"aar_unit": 1.0}


def test_researchers_on_ray_are_opt_in_and_import_no_ray() -> None:
    c = load(
        CAMPAIGNS / "demo.yaml",
        ["ray.address=h:1", "ray.researchers=true", "ray.researcher_resources={r: 1}"],
    )
    assert c.ray is not None and c.ray.researchers and c.ray.researcher_resources == {"r": 1.0}
    assert load(CAMPAIGNS / "demo.yaml", ["ray.address=h:1"]).ray.researchers is False  # type: ignore[union-attr]
    # the referee gets only its own options; the lab's modules import Ray only when a researcher goes to Ray
    assert not RESEARCHER_KEYS & set(c.ray.model_dump(exclude=RESEARCHER_KEYS))
    code = "import sys, aar.lab.runner, aar.lab.ray_researchers; assert 'ray' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_researchers_that_cannot_all_run_at_once_are_counted_per_node() -> None:
    """The lab warns before a campaign whose actors Ray would run one after another (a head with one
    CPU and three researchers asking one each did exactly that: 4 minutes each, 12 in all)."""
    from aar.lab.ray_researchers import demand, how_many_fit

    ask = demand({"researcher_cpus": 1, "researcher_resources": {"aar_researcher": 1}}, gpus=False)
    assert ask == {"CPU": 1.0, "aar_researcher": 1.0}
    head = {"CPU": 1.0, "aar_researcher": 8.0}
    assert how_many_fit([head], [ask] * 3) == 1  # CPU-bound: one at a time
    assert how_many_fit([{"CPU": 4.0, "aar_researcher": 8.0}], [ask] * 3) == 3
    # per node, not the cluster's sum: two nodes with 1.5 CPUs each host two, not three
    assert how_many_fit([{"CPU": 1.5, "aar_researcher": 2.0}] * 2, [ask] * 3) == 2
    gpu = demand({"researcher_cpus": 0.5}, gpus=True)
    assert how_many_fit([{"CPU": 8.0, "GPU": 1.0}], [gpu, gpu]) == 1
    assert how_many_fit([{"CPU": 8.0}], [ask]) == 0  # no node has the custom resource


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install -e '.[ray]'")
def test_mini_campaign_on_a_two_node_ray_cluster_with_a_node_killed(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "ray")
    try:
        cluster.start_head(num_cpus=1)
        cluster.start_worker("w1", num_cpus=1, resources={"aar_unit": 1})
        cluster.wait_nodes(2)
        folder = tmp_path / "mini"
        campaign = write_campaign(tmp_path / "mini.yaml", minutes=1.0)
        switch = ["--ray", cluster.address, "--set", "ray.resources={aar_unit: 1}"]
        # the lab's referee reads Ray's token from its environment
        lab, http = start_lab(campaign, folder, env=ray_env(cluster.token), extra=switch)
        try:

            def one_done() -> bool:
                return any(r["status"] == "done" for r in http.get("/runs").json() if not r["baseline"])

            wait_for(one_done, 600, "a first official run on Ray")
            (w1,) = cluster.nodes[1:]
            cluster.kill_node(w1)  # the worker node dies mid-campaign
            cluster.start_worker("w2", num_cpus=1, resources={"aar_unit": 1})
            out, err = lab.communicate(timeout=900)
            assert lab.returncode == 0, err[-3000:]
        finally:
            if lab.poll() is None:
                lab.kill()
    finally:
        cluster.stop()
    queued = db_rows(folder, "select id, status from runs where is_baseline = 0")
    assert queued and all(status in ("done", "failed") for _, status in queued)  # none lost in flight
    runs = db_rows(folder, "select id, status, sandbox from runs where is_baseline = 0")
    done = [(i, json.loads(sb)) for i, status, sb in runs if status == "done"]
    assert done, runs
    nodes = {call.get("ray_node") for _, sb in done for call in sb["calls"]}
    assert 1 <= len(nodes) <= 2 and None not in nodes  # every unit ran on a node with aar_unit (w1, w2)
    finishes = db_rows(folder, "select detail from audit_log where action = 'runs.finish'")
    finished = [json.loads(d)["run_id"] for (d,) in finishes]
    assert len(finished) == len(set(finished))  # no run scored twice
    assert {i for i, _ in done} <= set(finished)
    # the same leaderboard with the local executor: every official run replayed on a fresh database
    assert replay_locally(folder, tmp_path, [i for i, _ in done]) == {
        i: json.loads(res)
        for i, res in db_rows(folder, "select id, results from runs where status = 'done'")
        if i in dict(done)
    }


def replay_locally(folder: Path, tmp_path: Path, run_ids: list[int]) -> dict[int, dict]:
    """The campaign's runs (same commits, same ideas) run again by a referee with the local executor on
    the campaign's data dir and a new database, with its baselines scored afresh; exact results by id."""
    from sqlalchemy import select

    from aar.referee import executors
    from aar.referee.app import Referee
    from aar.referee.auth import add_agent
    from aar.referee.config import RefereeConfig
    from aar.referee.db import Agent, Run
    from aar.referee.scoring import today
    from tests.lab.minilab import wait_for

    cfg = RefereeConfig.load(folder / "data", db_url=f"sqlite:///{tmp_path / 'replay.db'}", executor="local")
    ref = Referee.build(cfg)
    ref.runs.ensure_baselines(cfg.baseline_methods)
    add_agent(ref.db, "replay")
    rows = db_rows(
        folder, f'select id, "commit", idea_path, task from runs where id in ({",".join(map(str, run_ids))})'
    )
    pairs = {}
    with ref.db.write() as s:
        agent = s.scalar(select(Agent.id).where(Agent.name == "replay"))
        for old_id, commit, idea_path, task in rows:
            run = Run(
                agent_id=agent, commit=commit, idea_path=idea_path, task=task, seeds=cfg.seeds, day=today()
            )
            s.add(run)
            s.flush()
            pairs[run.id] = old_id
    ex = executors.build("local", ref.runs, cfg)
    ref.runs.executor = ex
    try:
        ex.submit(0)

        def all_done() -> bool:
            with ref.db.read() as s:
                return all(s.get(Run, i).status in ("done", "failed") for i in pairs)

        wait_for(all_done, 900, "the replayed runs")
        with ref.db.read() as s:
            return {pairs[i]: s.get(Run, i).results for i in pairs}
    finally:
        ex.shutdown()
        ref.db.dispose()


KILL_ACTOR = """
import sys, ray
ray.init(address=sys.argv[1], namespace="aar", log_to_driver=False)
names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "-prior-" in a["name"]]
ray.kill(ray.get_actor(names[0], namespace="aar"), no_restart=False)  # Ray restarts it (max_restarts)
print(names[0])
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install -e '.[ray]'")
def test_researcher_actor_killed_mid_campaign_is_restarted_and_resumes(tmp_path: Path) -> None:
    """Researchers as Ray actors (``ray.researchers``) on a node with a custom resource; one actor is
    killed mid-campaign: Ray restarts it, its researcher resumes from its transcript (the earlier records
    kept, a new session), and its official runs are neither lost nor submitted or scored twice."""
    cluster = LocalCluster(tmp_path / "ray")
    try:
        cluster.start_head(num_cpus=1, resources={"aar_unit": 1})
        cluster.start_worker("w1", num_cpus=2, resources={"aar_researcher": 2})
        cluster.wait_nodes(2)
        folder = tmp_path / "mini"
        campaign = write_campaign(tmp_path / "mini.yaml", minutes=1.5)
        switch = ["--ray", cluster.address, "--set", "ray.resources={aar_unit: 1}"]
        switch += ["--set", "ray.researchers=true", "--set", "ray.researcher_resources={aar_researcher: 1}"]
        lab, http = start_lab(campaign, folder, env=ray_env(cluster.token), extra=switch)
        transcript = folder / "researchers" / "prior" / "state" / "transcript.jsonl"
        try:

            def prior_ran() -> bool:
                return any(
                    r["status"] == "done" and r.get("author") == "prior" for r in http.get("/runs").json()
                )

            wait_for(prior_ran, 600, "a first official run by the researcher on Ray")
            before = transcript.read_text().splitlines()
            kill = subprocess.run(
                [sys.executable, "-c", KILL_ACTOR, cluster.address],
                env={**os.environ, **ray_env(cluster.token)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert kill.returncode == 0, kill.stderr[-2000:]
            out, err = lab.communicate(timeout=900)
            assert lab.returncode == 0, err[-3000:]
        finally:
            if lab.poll() is None:
                lab.kill()
    finally:
        cluster.stop()
    after = transcript.read_text().splitlines()
    assert after[: len(before)] == before  # nothing lost: the transcript continues
    sessions = {json.loads(line).get("session") for line in after}
    assert len(sessions) >= 2, sessions  # resumed in a new session of the same transcript
    submitted = [json.loads(line) for line in after if json.loads(line).get("type") == "official_run"]
    runs = db_rows(folder, "select id, status from runs where is_baseline = 0")
    assert all(status in ("done", "failed") for _, status in runs)  # none left in flight
    finishes = [
        json.loads(d)["run_id"]
        for (d,) in db_rows(folder, "select detail from audit_log where action = 'runs.finish'")
    ]
    assert len(finishes) == len(set(finishes))  # no run scored twice
    ids = [r.get("run_id") or r.get("id") for r in submitted]
    assert len(ids) == len(set(ids)), ids  # the resumed researcher did not submit a run twice
