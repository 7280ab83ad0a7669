"""Shared by the sandbox tests: markers, command builders, host-side process probes."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aar.sandbox import bubblewrap_available, bubblewrap_problem, cgroup_host

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: creates agent users and drops to their uid")
needs_bwrap = pytest.mark.skipif(
    not bubblewrap_available(), reason=f"bubblewrap unusable: {bubblewrap_problem()}"
)
BACKENDS = [pytest.param("bubblewrap", marks=needs_bwrap), "subprocess"]
PY = sys.executable
CGROUP, CGROUP_PROBLEM = cgroup_host()
needs_cgroup = pytest.mark.skipif(CGROUP is None, reason=f"no usable cgroup on this host: {CGROUP_PROBLEM}")
LIMIT_MODES = [pytest.param("cgroup", marks=needs_cgroup), "watchdog"]  # cgroup where the host allows


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def pids_where(pred: Callable[[int, str], bool]) -> list[int]:
    """Live (non-zombie) host pids whose (real uid, cmdline) satisfy pred."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").split()[:1] == ["Z"]:
            continue  # killed, waiting for its new parent (init) to reap it
        if pred(int(fields["Uid"].split()[0]), cmdline):
            found.append(int(entry))
    return found


def gone(pred: Callable[[int, str], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while pids_where(pred):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class PeakMemory:
    """Samples, from the host and independently of the sandbox's own accounting, the memory of all
    processes of `uid` (RssAnon + RssShmem) plus the used bytes of their private /dev/shm."""

    def __init__(self, uid: int) -> None:
        self.uid, self.peak = uid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        host_shm = os.stat("/dev/shm").st_dev
        while not self._stop.is_set():
            total, shm = 0, None
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    if os.stat(f"/proc/{entry}").st_uid != self.uid:
                        continue
                    status = Path(f"/proc/{entry}/status").read_text()
                    if shm is None and os.stat(f"/proc/{entry}/root/dev/shm").st_dev != host_shm:
                        vfs = os.statvfs(f"/proc/{entry}/root/dev/shm")
                        shm = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
                except OSError:
                    continue
                total += sum(
                    int(line.split()[1]) * 1024
                    for line in status.splitlines()
                    if line.startswith(("RssAnon:", "RssShmem:"))
                )
            self.peak = max(self.peak, total + (shm or 0))
            time.sleep(0.005)
