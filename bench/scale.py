"""Official-run throughput on one queue: the local executor vs Ray with one and with two worker nodes.

    python bench/scale.py [--runs 6] [--seeds 1] [--out bench/results/scale.json]

One referee (fast tier, navigate at home, navigate_turns held out, 1500 rows) gets ``--runs`` official
runs of the same idea (vanilla behind a 1 s sleep, so a unit's work dominates its start-up) queued at
once by three researchers, then runs them with each executor in turn, on a fresh database each time:

- ``local``: one coordinator thread, units one after another in sandboxes on this host;
- ``ray-1``: a Ray head (no ``aar_unit`` resource: no units) plus one worker node with 1 CPU and the
  resource; ``ray-2``: the same with two worker nodes. Every node is a process group on this host.

Reports runs per minute (first submission to last run done) and the per-unit overhead: wall time
times the unit slots (1, 1, 2) minus the seconds spent inside sandboxes, per unit; i.e. what the
executor adds to each unit (dispatch, transfer, checkout, recording). On a shared 2-core machine the
two-node numbers are bounded by the cores, not by Ray: read them as overhead, not as speed-up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
import time
from pathlib import Path

SLOW = (
    "import time\nfrom aar.w2s.methods import vanilla\n\n"
    "def run(ctx):\n    time.sleep(1.0)\n    return vanilla(ctx)\n"
)
API = "/api/v1"


def idea_bundle(root: Path) -> bytes:
    repo = root / "idea"
    repo.mkdir()
    (repo / "idea.py").write_text(SLOW)
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "idea"]):
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *cmd], cwd=repo, check=True)
    out = root / "idea.bundle"
    subprocess.run(["git", "bundle", "create", "-q", str(out), "--all"], cwd=repo, check=True)
    return out.read_bytes()


def measure(data: Path, root: Path, name: str, runs: int, seeds: int, ray: dict | None) -> dict:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from aar.referee.app import create_app
    from aar.referee.auth import add_agent
    from aar.referee.config import RefereeConfig
    from aar.referee.db import Run

    overrides = dict(
        db_url=f"sqlite:///{root / f'{name}.db'}",
        executor="ray" if ray else "local",
        ray=ray,
        seeds=seeds,
        max_queued_runs=runs,
        run_workers=1,
        runs_dir=None,
    )
    config = RefereeConfig.load(data, **overrides)
    app = create_app(config)
    with TestClient(app) as client:
        ref = app.state.referee
        heads = [{"Authorization": f"Bearer {add_agent(ref.db, f'r{i}')}"} for i in range(3)]
        commit = client.post(
            f"{API}/code",
            content=idea_bundle(Path(tempfile.mkdtemp(dir=root))),
            headers={**heads[0], "content-type": "application/octet-stream"},
        ).json()[0]["commit"]
        t0 = time.monotonic()
        ids = []
        for i in range(runs):
            body = {"commit": commit, "idea_path": "idea.py", "task": ref.data.home}
            r = client.post(f"{API}/runs", headers=heads[i % 3], json=body)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        while True:
            with ref.db.read() as s:
                rows = s.scalars(select(Run).where(Run.id.in_(ids))).all()
                if all(r.status in ("done", "failed") for r in rows):
                    break
            time.sleep(0.5)
        wall = time.monotonic() - t0
        with ref.db.read() as s:
            rows = s.scalars(select(Run).where(Run.id.in_(ids))).all()
            failed = [r.error for r in rows if r.status != "done"]
            calls = [c for r in rows for c in (r.sandbox or {}).get("calls", [])]
            results = {r.id: r.results for r in rows}
    slots = int((ray or {}).get("slots", 1))
    inside = sum(float(c.get("seconds") or 0) for c in calls)
    return {
        "executor": name,
        "runs": runs,
        "units": len(calls),
        "failed": failed,
        "wall_s": round(wall, 1),
        "runs_per_minute": round(60 * runs / wall, 2),
        "sandbox_s_per_unit": round(inside / max(1, len(calls)), 2),
        "overhead_s_per_unit": round((wall * slots - inside) / max(1, len(calls)), 2),
        # the same idea on the same inputs: one distinct result per executor, the same for all of them
        "results_sha256": sorted({_digest(r) for r in results.values()}),
    }


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    args = ap.parse_args()

    from aar.referee.datadir import init_data_dir
    from aar.referee.executors.ray_cluster import LocalCluster, new_token

    root = Path(tempfile.mkdtemp(prefix="aar-scale-"))
    data = root / "data"
    init_data_dir(
        data, tasks=["navigate", "navigate_turns"], tier="fast", max_rows=1500, log=lambda *_a: None
    )
    rows = [measure(data, root, "local", args.runs, args.seeds, None)]
    print(rows[-1], flush=True)
    token = new_token()  # one for both clusters: a process reads Ray's token once, when it first connects
    for workers in (1, 2):
        cluster = LocalCluster(root / f"ray-{workers}", token=token)
        try:
            cluster.start_head(num_cpus=1)
            for w in range(workers):
                cluster.start_worker(f"w{w}", num_cpus=1, resources={"aar_unit": 1})
            cluster.wait_nodes(1 + workers)
            ray = {
                "address": cluster.address,
                "token": cluster.token,
                "resources": {"aar_unit": 1},
                "memory_bytes": 256 << 20,
                "slots": workers,
            }
            rows.append(measure(data, root, f"ray-{workers}", args.runs, args.seeds, ray))
            print(rows[-1], flush=True)
        finally:
            cluster.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "seeds": args.seeds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
