"""A small real campaign for tests: fast model tier, 1500 rows (enough for a significant gap, so PGR is
defined), two tasks, two scripted researchers, every part real (referee process on a Unix socket and
loopback TCP, bubblewrap sandboxes, SQLite WAL)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

AAR = [sys.executable, "-m", "aar.cli"]
MINI = """\
name: mini
testbed: {home: navigate, held_out: [navigate_turns], tier: fast, max_rows: 1500}
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


# `cmd &` in a script (or `nohup cmd &`, `make test &`): the shell starts the job with SIGINT ignored,
# and every process it starts inherits that
_IGNORE_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def as_background_job(argv: list[str]) -> list[str]:
    """``argv`` started the way a shell starts a background job: with SIGINT ignored (inherited)."""
    return [sys.executable, "-c", _IGNORE_SIGINT, *argv]


def start_lab(
    campaign: Path,
    folder: Path,
    *,
    background_job: bool = False,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
) -> tuple[subprocess.Popen, httpx.Client]:
    """`aar lab run` in the background; returns once its referee answers, with an admin client."""
    argv = [*AAR, "lab", "run", str(campaign), "--out", str(folder), *(extra or [])]
    lab = subprocess.Popen(
        as_background_job(argv) if background_job else argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
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


def _proc_strings(pid: int, name: str) -> list[str]:
    """/proc/<pid>/<name> split at NULs (cmdline, environ); [] when unreadable (gone, a kernel thread)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def processes(folder: Path | None = None, *markers: str) -> dict[int, str]:
    """Live processes (pid -> command line) of the lab in ``folder`` (those carrying its AAR_LAB_CHILD
    tag, or naming the folder on their command line: the lab, bubblewrap's sandboxes) or showing one of
    ``markers`` on their command line (a command inside a sandbox); zombies and this process excluded."""
    found = {}
    root = str(folder.resolve()) if folder is not None else None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not pid_alive(int(entry.name)):
            continue
        pid = int(entry.name)
        cmdline = " ".join(_proc_strings(pid, "cmdline"))
        environ = _proc_strings(pid, "environ") if root is not None else []
        tagged = any(v.startswith("AAR_LAB_CHILD=") and v.endswith(f":{root}") for v in environ)
        if tagged or (root is not None and root in cmdline) or any(m in cmdline for m in markers):
            found[pid] = cmdline.strip()
    return found


def sigint_ignored(pid: int) -> bool:
    """Whether ``pid`` has SIGINT ignored (SigIgn in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False
