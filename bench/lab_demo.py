"""The demo campaign as a benchmark: wall time of each phase and what the researchers reached.

    python bench/lab_demo.py [--minutes 4] [--agents 3] [--out DIR]

Runs `aar demo` (the offline demo campaign: scripted researchers, the default testbed) in a fresh folder
and prints, side by side, the headline run's private PGR with its CI next to vanilla's, whether the
CIs separate, and the time split (referee set-up incl. any first-use feature extraction, research,
drain). Writes bench/results/lab_demo.json. ``--existing DIR`` summarizes a finished demo folder.
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
    lo, hi = ci
    return f"[{'-inf' if lo is None else f'{lo:.3f}'}, {'inf' if hi is None else f'{hi:.3f}'}]"


def summarize(snap: dict, stderr: str, wall: float | None) -> dict:
    """The demo's numbers as the report's summary gives them: the headline (the first confirmed run of
    the top k by public PGR, reported on private), vanilla on both parts, and the time split."""
    summ = report.summary(snap)
    researchers = snap["researchers"]
    setup = re.search(r"referee ready \((\d+) s\)", stderr)
    head, van = summ["headline"], summ["vanilla"] or {}
    return {
        "wall_seconds": None if wall is None else round(wall, 1),
        "research_seconds": [r.get("active_seconds") for r in researchers],
        "setup_seconds": int(setup.group(1)) if setup else None,
        "official_runs": sum(1 for r in snap["runs"] if not r["baseline"]),
        "posts": sum(r["posts"] for r in researchers),
        "flags": len(snap["flags"]),
        "k": summ["k"],
        "confirmed": summ["confirmed"],
        "headline": head,
        "top_k": [
            {k: row[k] for k in ("run_id", "author", "idea_path", "public", "private", "drop", "confirmed")}
            for row in summ["top_k"]
        ],
        "vanilla": van,
        "private_ci_above_vanilla": bool(head and head["private_ci_above_vanilla"]),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=None, help="default: the demo campaign's")
    ap.add_argument("--agents", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="keep the campaign here (default: temp, removed)")
    ap.add_argument("--existing", type=Path, default=None, help="summarize a finished demo folder instead")
    ap.add_argument("--results", type=Path, default=Path("bench/results/lab_demo.json"))
    args = ap.parse_args(argv)

    if args.existing:
        snap, stderr, wall = json.loads((args.existing / "snapshot.json").read_text()), "", None
    else:
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
            snap, stderr = json.loads((root / "snapshot.json").read_text()), proc.stderr
        finally:
            if args.out is None:
                shutil.rmtree(root.parent, ignore_errors=True)
    out = summarize(snap, stderr, wall)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=1))
    print(f"wall {out['wall_seconds']} s; {out['official_runs']} official runs, {out['posts']} posts")
    head, van = out["headline"], out["vanilla"]
    if head:
        print(
            f"headline: {head['author']} run {head['run_id']} private PGR {head['private_pgr']:.3f} "
            f"CI {_ci(head['private_ci'])} | vanilla private {van['private']['pgr']:.3f} "
            f"CI {_ci(van['private']['ci'])} | CI above vanilla's: {out['private_ci_above_vanilla']}"
        )
    else:
        print("no run of the top k was confirmed against vanilla on private")
    return out


if __name__ == "__main__":
    main()
