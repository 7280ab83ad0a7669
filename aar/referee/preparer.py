"""First result first: the referee prepares its held-out tasks in the background.

The lab writes a data dir with only the tasks researchers see (``init_data_dir(defer_held_out=True)``),
so researchers start as soon as the home task is ready instead of after every task's feature
extraction. The referee that serves that data dir prepares each pending task here, in one background
thread of its own process (the referee is the only holder of labels, and a restarted referee simply
carries on with what is still pending), then extends the built-in baselines to it. Official runs that
reach a task still being prepared wait for it (``RunService._await_task``, status ``waiting``); a task
refused here (its weak teacher does not beat the majority class) or whose preparation fails is marked
so in the data dir and dropped from the official tasks, and the waiting runs go on without it.

Progress (``snapshot``) is what the admin route ``/admin/preparation`` and the lab's live table show.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aar.eta import EtaLines
from aar.referee.datadir import DataStore, TaskRefused, prepare_task

log = logging.getLogger("aar.referee")


def _stderr(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


@dataclass
class Preparation:
    """One pending task's state: queued -> preparing -> ready | refused | failed."""

    task: str
    role: str
    state: str = "queued"
    label: str = ""  # the extraction in progress, e.g. "features mpnet"
    done: int = 0
    total: int = 0
    started: float | None = None
    eta_seconds: float | None = None
    reason: str | None = None


BACKGROUND_NICE = 10


def _lower_priority() -> None:
    """Run this thread (and the extraction workers it starts, which inherit it) 10 nice levels lower.

    First result first means the researchers' official runs go before the background: on two cores the
    held-out task's extraction at equal priority took about half the CPU from the first official run.
    Linux sets nice per thread; elsewhere this does nothing (the background then shares the CPU)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
    except (AttributeError, OSError):  # not Linux, or not allowed: slower, never wrong
        pass


class TaskPreparer:
    """Prepares ``data.pending()`` one task at a time in a daemon thread; ``then(task)`` runs after each
    task is stored (the referee extends its baselines there, before runs waiting for it go on), and
    ``then(None)`` once first, for a task an earlier referee stored but stopped before extending."""

    def __init__(
        self, data: DataStore, then: Callable[[str | None], object], write: Callable[[str], None] = _stderr
    ):
        self.data = data
        self.then = then
        self.write = write
        self.tasks = {t: Preparation(t, data.role(t)) for t in data.pending()}
        self._lines = EtaLines(write, every=15.0)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.stopped = threading.Event()  # set when its referee stops: a stopped referee writes nothing more

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="aar-prepare", daemon=True)
            self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [vars(p).copy() for p in self.tasks.values()]

    def _progress(self, label: str, done: int, total: int) -> None:
        self._lines(label, done, total)
        with self._lock:
            p = self._current
            short = label.split(" for ")[0]  # "features mpnet for navigate": the row names the task
            if p.label != short:
                p.label, p.started = short, time.monotonic()
            p.done, p.total = done, total
            elapsed = time.monotonic() - (p.started or time.monotonic())
            p.eta_seconds = (total - done) * elapsed / done if done and elapsed > 0 else None

    def _work(self) -> None:
        _lower_priority()
        if not self.stopped.is_set():
            self.then(None)  # a task stored by an earlier referee that stopped before extending its baselines
        manifest = self.data.manifest
        for name, p in self.tasks.items():
            if self.stopped.is_set():
                return
            self._current = p
            with self._lock:
                p.state, p.started = "preparing", time.monotonic()
            self.write(f"preparing {name} ({p.role}) in the background; official runs wait for it")
            try:
                prepare_task(
                    self.data.dir,
                    name,
                    p.role,
                    manifest["tier"],
                    manifest.get("max_rows"),
                    models=manifest.get("models"),
                    on_progress=self._progress,
                    log=self.write,
                )
                if self.stopped.is_set():  # stored: ready for the next referee, which extends the baselines
                    return
                self.then(name)
                state, reason = "ready", None
            except TaskRefused as exc:
                state, reason = "refused", str(exc)
            except Exception as exc:  # noqa: BLE001 (a crashed preparation must not leave runs waiting forever)
                if self.stopped.is_set():
                    return
                log.exception("preparing task %s failed", name)
                state, reason = "failed", f"{type(exc).__name__}: {exc}"
            if reason is not None:
                self.data.mark_refused(name, reason)
                self.write(f"{name} {state}: {reason}; official runs go on without it")
            with self._lock:
                p.state, p.reason, p.eta_seconds = state, reason, None
