"""A small real campaign for tests: fast model tier, 1500 rows (enough for a significant gap, so PGR is
defined), two tasks, two scripted researchers, every part real (referee process on a Unix socket and
loopback TCP, bubblewrap sandboxes, SQLite WAL)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

AAR = [sys.executable, "-m", "aar.cli"]
MINI = """\
name: mini
testbed: {home: sentiment_hotels, held_out: [parentheses], tier: fast, max_rows: 1500}
referee: {seeds: 2, port: 0, drain_minutes: 4}
defaults: {backend: scripted, budget: {minutes: %(minutes)s}}
researchers:
  - {name: prior, direction: "Unsupervised elicitation of the strong model's prior."}
  - {name: confidence, direction: "Reweight the weak labels by confidence."}
"""


def write_campaign(path: Path, minutes: float) -> Path:
    path.write_text(MINI % {"minutes": minutes})
    return path


def run_lab(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*AAR, "lab", "run", *args], capture_output=True, text=True, timeout=timeout)


def admin_client(folder: Path) -> httpx.Client:
    token = (folder / "data" / "admin.token").read_text().strip()
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(folder / "sock" / "referee.sock")),
        base_url="http://referee/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, httpx.HTTPError, ValueError):
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_lab(campaign: Path, folder: Path) -> tuple[subprocess.Popen, httpx.Client]:
    """`aar lab run` in the background; returns once its referee answers, with an admin client."""
    lab = subprocess.Popen(
        [*AAR, "lab", "run", str(campaign), "--out", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (folder / "sock" / "port").exists(), 300, "the referee to start")
    except AssertionError:
        lab.kill()
        raise
    return lab, admin_client(folder)


def db_rows(folder: Path, sql: str) -> list[tuple]:
    """Read the referee's SQLite database directly (read-only), bypassing every API."""
    con = sqlite3.connect(f"file:{folder / 'data' / 'referee.db'}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def snapshot(folder: Path) -> dict:
    return json.loads((folder / "snapshot.json").read_text())


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
