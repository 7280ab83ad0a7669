"""Agent fixtures: one real referee per session (fast tier, small subsets) served on a Unix socket by
`aar referee serve --uds`, its public export, and per-test researcher homes under a world-traversable
root (agent uids must be able to reach their workspace)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

AAR = [sys.executable, "-m", "aar.cli"]
# a small pair whose weak teacher beats the majority class on the fast tier at 1,500 rows (the referee refuses
# a task that fails that check; the default home task does at this size), prepared in seconds
HOME_TASK = "navigate"
HELD_TASK = "navigate_turns"  # held out: researchers never see its name or numbers
_names = itertools.count()


@dataclass
class RefereeProc:
    data: Path
    socket: Path
    public: Path
    proc: subprocess.Popen

    def add_agent(self, name: str) -> str:
        out = subprocess.run(
            [*AAR, "referee", "add-agent", name, "--data", str(self.data)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://referee/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )


@pytest.fixture(scope="session")
def base() -> Path:
    path = Path(tempfile.mkdtemp(prefix="aar-agents-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def referee(base: Path) -> RefereeProc:
    data = base / "referee-data"
    subprocess.run(
        [
            *AAR,
            "referee",
            "init",
            str(data),
            "--fast",
            "--max-rows",
            "1500",
            "--tasks",
            f"{HOME_TASK},{HELD_TASK}",
            "--seeds",
            "2",
        ],
        check=True,
        capture_output=True,
    )
    public = base / "public-export"
    subprocess.run(
        [*AAR, "referee", "export-public", "--data", str(data), "--out", str(public)],
        check=True,
        capture_output=True,
    )
    sock_dir = base / "sock"
    sock_dir.mkdir(mode=0o755)
    sock = sock_dir / "referee.sock"
    log = open(base / "referee.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [*AAR, "referee", "serve", "--data", str(data), "--uds", str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"referee did not start: {(base / 'referee.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield RefereeProc(data, sock, public, proc)
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture
def agent_name() -> str:
    return f"agent{os.getpid() % 1000}x{next(_names)}"
