"""The demo campaign as a benchmark: wall time of each phase and what the researchers reached.

    python bench/lab_demo.py [--minutes 4] [--agents 3] [--out DIR]

Runs `aar demo` (the offline demo campaign: scripted researchers, the default testbed) in a fresh folder
and prints, side by side, the best official run's home PGR with its CI next to vanilla's, the ratio of
their PGRs, the held-out PGRs beside the home PGR, and the time split (referee set-up incl. any
first-use feature extraction, research, drain). Writes bench/results/lab_demo.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aar.lab import report

AAR = [sys.executable, "-m", "aar.cli"]


def _ci(ci: list) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=None, help="default: the demo campaign's")
    ap.add_argument("--agents", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="keep the campaign here (default: temp, removed)")
    ap.add_argument("--results", type=Path, default=Path("bench/results/lab_demo.json"))
    args = ap.parse_args(argv)

    root = args.out or Path(tempfile.mkdtemp(prefix="aar-bench-demo-")) / "demo"
    cmd = [*AAR, "demo", "--out", str(root)]
    cmd += ["--minutes", str(args.minutes)] if args.minutes else []
    cmd += ["--agents", str(args.agents)] if args.agents else []
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(proc.stderr)
        proc.check_returncode()
        wall = time.monotonic() - t0
        snap = json.loads((root / "snapshot.json").read_text())
    finally:
        if args.out is None:
            shutil.rmtree(root.parent, ignore_errors=True)

    best_run = report.best_run(snap)  # the report's rule: highest CI lower bound, rejected runs excluded
    best = report.summary_row(best_run) if best_run else None
    vanilla = report.summary(snap)["baselines"].get("vanilla", {})
    researchers = snap["researchers"]
    setup = re.search(r"referee ready \((\d+) s\)", proc.stderr)
    out = {
        "wall_seconds": round(wall, 1),
        "research_seconds": [r.get("active_seconds") for r in researchers],
        "setup_seconds": int(setup.group(1)) if setup else None,
        "official_runs": sum(1 for r in snap["runs"] if not r["baseline"]),
        "posts": sum(r["posts"] for r in researchers),
        "flags": len(snap["flags"]),
        "best": best,
        "vanilla": vanilla,
        "best_ci_above_vanilla_ci": report.ci_above_vanilla(snap),
        "best_over_vanilla_pgr": (
            round(best["pgr"] / vanilla["pgr"], 2) if best and vanilla.get("pgr") else None
        ),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=1))
    print(f"wall {out['wall_seconds']} s; {out['official_runs']} official runs, {out['posts']} posts")
    if best:
        print(
            f"best: {best['author']} PGR {best['pgr']:.3f} CI {_ci(best['pgr_ci'])}"
            f" | vanilla {vanilla['pgr']:.3f} CI {_ci(vanilla['pgr_ci'])}"
            f" | ratio {out['best_over_vanilla_pgr']}x | held-out {best['held_out']}"
        )
    return out


if __name__ == "__main__":
    main()
