"""The issue's acceptance check: the demo campaign through a two-node local Ray cluster (official-run
units on a worker node with ``aar_unit``, researchers as Ray actors on the head with ``aar_researcher``)
ends with the same leaderboard as with the local executor.

    nice -n 10 python bench/ray_demo_equivalence.py [--campaign campaigns/demo.yaml] [--out DIR]

Runs the campaign twice in fresh folders (local, then ``--ray``) and compares the official runs. The
demo's scripted researchers are deterministic in *what* they try but time-budgeted (``budget.minutes``),
so the two campaigns can make a different number of runs; runs are matched by content (author, idea
file, task; commits differ because they carry timestamps) and, for every run both made, the exact
results (every PGR of every task and part) must be equal. Writes bench/results/ray_demo_equivalence.json.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaign", type=Path, default=ROOT / "campaigns" / "demo.yaml")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--result", type=Path, default=ROOT / "bench" / "results" / "ray_demo_equivalence.json")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="aar-ray-demo-"))
    wall_local = run(args.campaign, out / "local", [], {})
    cluster = LocalCluster(out / "ray")
    try:
        cluster.start_head(num_cpus=1, resources={"aar_researcher": 8})
        cluster.start_worker("w1", num_cpus=1, resources={"aar_unit": 1})
        cluster.wait_nodes(2)
        switch = ["--ray", cluster.address, "--set", "ray.resources={aar_unit: 1}"]
        switch += ["--set", "ray.researchers=true", "--set", "ray.researcher_resources={aar_researcher: 1}"]
        wall_ray = run(args.campaign, out / "ray_lab", switch, ray_env(cluster.token))
    finally:
        cluster.stop()
    local, ray = leaderboard(out / "local"), leaderboard(out / "ray_lab")
    both = sorted(set(local) & set(ray))
    differ = [k for k in both if local[k] != ray[k]]
    result = {
        "campaign": str(
            args.campaign.relative_to(ROOT) if args.campaign.is_relative_to(ROOT) else args.campaign
        ),
        "wall_s": {"local": round(wall_local, 1), "ray": round(wall_ray, 1)},
        "runs": {"local": len(local), "ray": len(ray), "both": len(both)},
        "only_local": sorted(set(local) - set(ray)),
        "only_ray": sorted(set(ray) - set(local)),
        "differ": differ,
        "same_runs": set(local) == set(ray),
        "same_results_on_common_runs": not differ,
        "folder": str(out),
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
