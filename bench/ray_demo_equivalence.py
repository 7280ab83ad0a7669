"""The issue's acceptance check: the demo campaign through a two-node local Ray cluster (official-run
units on a worker node with ``aar_unit``, researchers as Ray actors on the head with ``aar_researcher``)
ends with the same leaderboard as with the local executor.

    nice -n 10 python bench/ray_demo_equivalence.py [--campaign campaigns/demo.yaml] [--out DIR]

Four steps, one folder each:
1. the demo with the local executor, twice (``local``, ``local_again``: the control);
2. the demo on the cluster (``ray_lab``);
3. ``aar referee reproduce`` of the local demo's whole leaderboard on the cluster's worker node, and of
   the Ray demo's leaderboard locally: every unit of every done run again from its commit, predictions
   compared bit for bit, scores compared exactly.

Why both: the demo's scripted researchers are time-budgeted (``budget.minutes``) and react to what the
shared Ladders and the forum show at that moment, so two campaigns make different runs even on the same
executor (the control measures how different). Which runs a campaign makes is the researchers' doing;
what the leaderboard says about a given run is the executor's, and step 3 checks that exactly: the same
runs give the same PGRs wherever they run. Runs both campaigns made are also compared by content (author,
idea file, task; commits differ as they carry timestamps). Writes bench/results/ray_demo_equivalence.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aar.referee.executors.ray_cluster import LocalCluster, ray_env

AAR = [sys.executable, "-m", "aar.cli"]
ROOT = Path(__file__).resolve().parents[1]


def leaderboard(folder: Path) -> dict[str, dict]:
    """Done official runs (baselines included) by content key -> exact results."""
    con = sqlite3.connect(f"file:{folder / 'data' / 'referee.db'}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "select coalesce(a.name, ''), r.idea_path, r.task, r.is_baseline, r.results from runs r "
            "left join agents a on a.id = coalesce(r.author_id, r.agent_id) "
            "where r.status = 'done' order by r.id"
        ).fetchall()
    finally:
        con.close()
    board: dict[str, dict] = {}
    for author, idea, task, baseline, results in rows:
        key = f"{'baseline' if baseline else author}:{idea}:{task}"
        n = sum(1 for k in board if k == key or k.startswith(key + "#"))
        board[key if n == 0 else f"{key}#{n}"] = json.loads(results)  # the nth run of the same idea
    return board


def run(campaign: Path, folder: Path, extra: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    argv = [*AAR, "lab", "run", str(campaign), "--out", str(folder), "--set", "referee.port=0", *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=3600)
    (folder.parent / f"{folder.name}.stderr").write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{folder.name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


def reproduce(folder: Path, extra: list[str], env: dict[str, str], name: str) -> dict:
    """``aar referee reproduce`` of a finished campaign's data dir; its JSON summary and wall time."""
    t0 = time.monotonic()
    out = folder.parent / f"reproduce_{name}.json"
    argv = [*AAR, "referee", "reproduce", "--data", str(folder / "data"), "--json", str(out), *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=3600)
    (folder.parent / f"reproduce_{name}.stderr").write_text(proc.stderr)
    if not out.exists():
        raise SystemExit(f"reproduce {name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    found = json.loads(out.read_text())
    found["wall_s"] = round(time.monotonic() - t0, 1)
    return found


def compare(a: dict[str, dict], b: dict[str, dict]) -> dict:
    both = sorted(set(a) & set(b))
    return {
        "runs": [len(a), len(b)],
        "both": len(both),
        "only_first": sorted(set(a) - set(b)),
        "only_second": sorted(set(b) - set(a)),
        "results_differ_on_common_runs": [k for k in both if a[k] != b[k]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaign", type=Path, default=ROOT / "campaigns" / "demo.yaml")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--result", type=Path, default=ROOT / "bench" / "results" / "ray_demo_equivalence.json")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="aar-ray-demo-"))
    wall = {"local": run(args.campaign, out / "local", [], {})}
    wall["local_again"] = run(args.campaign, out / "local_again", [], {})
    cluster = LocalCluster(out / "ray")
    try:  # the head hosts the three researcher actors (one CPU each), the worker the official-run units
        cluster.start_head(num_cpus=3, resources={"aar_researcher": 3})
        cluster.start_worker("w1", num_cpus=1, resources={"aar_unit": 1})
        cluster.wait_nodes(2)
        env = ray_env(cluster.token)
        switch = ["--ray", cluster.address, "--set", "ray.resources={aar_unit: 1}"]
        switch += ["--set", "ray.researchers=true", "--set", "ray.researcher_resources={aar_researcher: 1}"]
        wall["ray"] = run(args.campaign, out / "ray_lab", switch, env)
        on_ray = json.dumps({"address": cluster.address, "resources": {"aar_unit": 1}})
        local_on_ray = reproduce(out / "local", ["--ray", on_ray], env, "local_on_ray")
    finally:
        cluster.stop()
    ray_locally = reproduce(out / "ray_lab", [], {}, "ray_locally")
    local, again, ray = (leaderboard(out / f) for f in ("local", "local_again", "ray_lab"))
    result = {
        "campaign": str(
            args.campaign.relative_to(ROOT) if args.campaign.is_relative_to(ROOT) else args.campaign
        ),
        "tier": json.loads((out / "local" / "data" / "manifest.json").read_text()).get("tier"),
        "wall_s": {k: round(v, 1) for k, v in wall.items()},
        "local_leaderboard_reproduced_on_the_ray_worker": local_on_ray,
        "ray_leaderboard_reproduced_locally": ray_locally,
        "same_leaderboard_for_the_same_runs": not local_on_ray["differ"] and not ray_locally["differ"],
        "campaigns_local_vs_ray": compare(local, ray),
        "campaigns_local_vs_local_control": compare(local, again),
        "folder": str(out),
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
