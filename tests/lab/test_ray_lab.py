"""One switch: ``aar lab run CAMPAIGN --ray HOST:PORT`` (or ``ray: {address: ...}`` in the campaign)
sends the official-run units of the whole campaign to a Ray cluster; without it Ray is not imported."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from aar.lab.campaign import load
from aar.lab.cli import CAMPAIGNS
from aar.referee.executors.ray_cluster import LocalCluster, ray_env
from tests.lab.minilab import db_rows, run_lab, write_campaign


def test_the_switch_parses_into_the_campaign() -> None:
    assert load(CAMPAIGNS / "demo.yaml").ray is None  # default: local, no Ray
    c = load(CAMPAIGNS / "demo.yaml", ["ray.address=10.0.0.5:6379", "ray.resources={aar_unit: 1}"])
    assert c.ray is not None and c.ray.address == "10.0.0.5:6379" and c.ray.resources == {"aar_unit": 1.0}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install -e '.[ray]'")
def test_mini_campaign_on_a_two_node_ray_cluster(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "ray")
    try:
        cluster.start_head(num_cpus=1)
        cluster.start_worker("w1", num_cpus=1, resources={"aar_unit": 1})
        cluster.wait_nodes(2)
        folder = tmp_path / "mini"
        args = [str(write_campaign(tmp_path / "mini.yaml", minutes=0.5)), "--out", str(folder)]
        args += ["--ray", cluster.address, "--set", "ray.resources={aar_unit: 1}"]
        old = dict(os.environ)
        os.environ.update(ray_env(cluster.token))  # the lab's referee reads the token from its environment
        try:
            r = run_lab(args, timeout=900)
        finally:
            os.environ.clear()
            os.environ.update(old)
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        cluster.stop()
    runs = db_rows(folder, "select id, status, sandbox from runs where is_baseline = 0")
    done = [(i, json.loads(sb)) for i, status, sb in runs if status == "done"]
    assert done, runs
    nodes = {call.get("ray_node") for _, sb in done for call in sb["calls"]}
    assert len(nodes) == 1 and None not in nodes  # every unit ran on the one node with aar_unit
    finishes = db_rows(folder, "select detail from audit_log where action = 'runs.finish'")
    finished = [json.loads(d)["run_id"] for (d,) in finishes]
    assert len(finished) == len(set(finished))  # no run scored twice
    assert {i for i, _ in done} <= set(finished)
