"""Child processes of a campaign (the referee server, one process per researcher), and the signal state
every ``aar`` process starts from.

Guarantees the lab needs, whoever started it and however it ends:
- a clean signal state: a shell hands the jobs it starts in the background SIGINT (and SIGQUIT) as
  *ignored*, and children inherit that. So every ``aar`` process installs its own SIGINT and SIGTERM
  handlers at start-up (``reset_signals``, called first by the CLI), and ``spawn`` resets them to their
  defaults on the way too (``env --default-signal`` where coreutils has it, no ``preexec_fn``).
- children are stopped with SIGTERM (a signal they handle themselves, so it cannot have been inherited
  as ignored), then SIGKILL of their whole process group after a grace period (``stop``).
- children die with the lab: each is told the lab's pid (``AAR_PARENT_PID``) and, at start-up, asks the
  kernel for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``, see ``die_with_parent``). Done in
  the child rather than with ``preexec_fn``, which is unsafe in a threaded parent.
- a restarted lab finds and stops leftovers anyway (pids recorded in the campaign's state, checked
  against /proc/<pid>/environ so a recycled pid is never killed).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from aar.sandbox.reap import kill_children  # noqa: F401  (re-exported: the lab reaps with it too)

PR_SET_PDEATHSIG = 1
AAR = [sys.executable, "-m", "aar.cli"]
STOP_GRACE = 30.0  # seconds between SIGTERM and SIGKILL of a child's process group


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same cleanup runs
    (a researcher closes its transcript, the lab stops its children and writes its report)."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame) -> None:  # noqa: ANN001
    raise Terminated


def reset_signals() -> None:
    """Explicit SIGINT (KeyboardInterrupt) and SIGTERM (``Terminated``) handlers, whatever this process
    inherited (ignored under ``nohup ... &``, blocked, or anything else); main thread only."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


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


@functools.cache
def _signal_trampoline() -> tuple[str, ...]:
    """``env --default-signal=...`` (coreutils >= 9.1) as an argv prefix: the child starts with SIGINT,
    SIGQUIT and SIGTERM at their defaults even before its own ``reset_signals``; () where unsupported."""
    env = shutil.which("env")
    if env is None:
        return ()
    prefix = (env, "--default-signal=INT,QUIT,TERM")
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return prefix if ok else ()


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
            [*_signal_trampoline(), *AAR, *args],
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


def terminate(proc: subprocess.Popen) -> None:
    """Ask a child's whole process group to stop (it started its own session) with SIGTERM."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)


def _exited(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` exits (or ``deadline``) without reaping it: while it is an unreaped zombie,
    its pid (the id of its process group) cannot be reused, so a later killpg hits only its group."""
    pause = 0.01
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # reaped already
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> int:
    """Wait up to ``timeout`` s for a child, then SIGKILL its whole process group (at once if it is still
    running; stragglers it left in the group otherwise) and reap it."""
    if proc.returncode is not None:
        return proc.returncode
    _exited(proc.pid, time.monotonic() + timeout)
    if proc.returncode is None:  # not reaped meanwhile: its group id is still its own
        _signal_group(proc.pid, signal.SIGKILL)
    return proc.wait()


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE) -> int:
    """SIGTERM to the child's process group, SIGKILL to the group after ``grace`` s; its exit code."""
    terminate(proc)
    return wait_or_kill(proc, grace)
