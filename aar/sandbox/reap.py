"""Reap a process's children, process groups included: for a process on its way out.

A sandboxed command runs in a session (process group) of its own, so a researcher that exits must
kill those groups itself or they outlive it. Used by the researcher process (``aar agent run``) and by
the lab; it lives here, beside the sandbox that starts those commands, so neither imports the other.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _children() -> list[tuple[int, int]]:
    """(pid, process group) of this process's live children, from /proc."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, ppid, pgid = fields[0], int(fields[1]), int(fields[2])
        if ppid == me and state != "Z":
            out.append((int(entry.name), pgid))
    return out


def kill_children() -> int:
    """SIGKILL every child of this process still running, with its process group (a sandboxed command
    runs in a session of its own); for a process on its way out. Returns how many were found."""
    if not sys.platform.startswith("linux"):
        return 0
    own = os.getpgrp()
    children = _children()
    for pid, pgid in children:
        try:  # an unreaped child's pid, hence its group's id, cannot be reused: only its group is hit
            if pgid == pid and pgid != own:
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(children)
