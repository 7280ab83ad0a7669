"""bench/referee_load.py's SIGKILL phase, at a small scale: the bench runs as a script (its own server,
its own agents), kills the server while the agents are still sending, and checks that nothing
acknowledged was lost; here we check that it said so, with counts that prove writes were made. And its
check itself: given an acknowledged write the database does not hold, it reports it lost."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from aar.referee.auth import add_agent
from aar.referee.db import Database

BENCH = Path(__file__).resolve().parents[2] / "bench" / "referee_load.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("referee_load_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_sigkill_mid_load_loses_no_acknowledged_write(data_dir, tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--agents",
            "8",
            "--duration",
            "3",
            "--think",
            "0.25",
            "--data",
            str(data_dir),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    k = result["sigkill"]
    assert "SIGKILL after 3.0 s under 8 agents" in proc.stdout
    assert k["server_exit"] == -9  # the server itself died of the SIGKILL
    assert k["agents_running_at_kill"] == 8  # mid-load: no agent had stopped
    assert k["acked_seed_posts"] == 50
    assert k["acked_posts"] >= 3 and k["acked_dev_queries"] >= 10, k
    assert k["lost"] == 0 and k["lost_posts"] == 0 and k["lost_dev_queries"] == 0, k
    assert k["integrity"] == "ok" and k["audit_chain_intact"], k
    assert k["stored_posts"] >= k["acked_posts"] + k["acked_seed_posts"]
    assert k["stored_dev_queries"] >= k["acked_dev_queries"]
    assert k["restarted"] and k["served_posts"] == k["stored_posts"], k
    assert k["ok"] and not k["problems"], k
    assert result["errors"] == 0  # the calls that failed after the kill are not errors
    assert result["duration_s"] < 3.5  # the window ends at the kill
    timed = sum(v["n"] for v in result["kinds"].values())
    assert timed == result["requests"] > 0
    assert result["kinds"]["forum_post"]["n"] <= k["acked_posts"]
    assert result["kinds"]["dev_evaluate"]["n"] <= k["acked_dev_queries"]


def test_bench_check_reports_an_acknowledged_write_that_is_not_stored(tmp_path):
    bench = _bench_module()
    db_url = f"sqlite:///{tmp_path}/check.db"
    database = Database(db_url)
    database.create_all()
    tokens = [add_agent(database, f"bench{i}") for i in range(2)]
    database.dispose()
    load = bench.Load(2)
    load.posts = {7: 1}  # acknowledged, never stored
    load.dev = [0, 3]
    k = bench.verify(db_url, load, tokens)
    assert k["integrity"] == "ok" and k["audit_chain_intact"]
    assert k["lost_posts"] == 1 and k["lost_dev_queries"] == 3 and k["lost"] == 4
    assert not k["ok"] and len(k["problems"]) == 2, k

    load.posts, load.dev = {}, [0, 0]  # nothing acknowledged: nothing owed
    assert bench.verify(db_url, load, tokens)["ok"]
