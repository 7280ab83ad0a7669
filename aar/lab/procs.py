"""Child processes of a campaign (the referee server, one process per researcher).

Two guarantees the lab needs for resume after SIGKILL:
- children die with the lab: each is told the lab's pid (``AAR_PARENT_PID``) and, at start-up, asks the
  kernel for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``, see ``die_with_parent``). Done in
  the child rather than with ``preexec_fn``, which is unsafe in a threaded parent.
- a restarted lab finds and stops leftovers anyway (pids recorded in the campaign's state, checked
  against /proc/<pid>/environ so a recycled pid is never killed).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
AAR = [sys.executable, "-m", "aar.cli"]


def die_with_parent() -> None:
    """Called first thing by the ``aar`` CLI: honour ``AAR_PARENT_PID`` / ``AAR_PARENT_DEATHSIG``."""
    parent = os.environ.pop("AAR_PARENT_PID", None)
    signame = os.environ.pop("AAR_PARENT_DEATHSIG", "SIGTERM")
    if not parent or not sys.platform.startswith("linux"):
        return
    sig = getattr(signal, signame, signal.SIGTERM)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


def spawn(
    args: list[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    death_signal: str = "SIGTERM",
    tag: str,
) -> subprocess.Popen:
    """Start ``aar ARGS`` in its own session (a terminal's Ctrl-C reaches only the lab, which then
    stops children in order), logging to ``log``; ``tag`` marks it as this campaign's child."""
    full_env = {**os.environ, **(env or {})}
    full_env.update(
        {"AAR_PARENT_PID": str(os.getpid()), "AAR_PARENT_DEATHSIG": death_signal, "AAR_LAB_CHILD": tag}
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*AAR, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )


def _is_ours(pid: int, tag: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"AAR_LAB_CHILD={tag}".encode() in environ


def stop_leftovers(pids: list[int], tag: str, grace: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL, the earlier lab's children that still run; returns the pids stopped."""
    alive = [p for p in pids if _is_ours(p, tag)]
    for p in alive:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_is_ours(p, tag) for p in alive):
        time.sleep(0.2)
    for p in alive:
        if _is_ours(p, tag):
            _signal_group(p, signal.SIGKILL)
    return alive


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def interrupt(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    """Ask a child's whole session to stop (it started its own process group)."""
    if proc.poll() is None:
        _signal_group(proc.pid, sig)


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.wait()
