"""Executors: where queued official runs execute. Routes only ever call ``Executor.submit(run_id)``.

A job is a pure function of a run id plus the referee's config (``execute_run_job``): it reads the
run row, does the work, writes the results. So an executor only has to decide *where* that function
runs: ``LocalPoolExecutor`` uses a local pool of worker threads, each driving sandboxed subprocesses
(the heavy work is in the subprocess; threads keep the db handle and the caches shared). A Ray
executor would be ``ray.remote(execute_run_job).remote(config, run_id)`` with a shared database URL
(PostgreSQL) and a data dir mounted on the workers: no route changes.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

log = logging.getLogger("aar.referee")


class Executor(ABC):
    @abstractmethod
    def submit(self, run_id: int) -> None:
        """Schedule a queued run; must return quickly."""

    def shutdown(self, wait: bool = False) -> None:  # noqa: B027 (optional hook)
        """Stop accepting work; queued runs stay ``queued`` in the db and resume at the next start."""


class LocalPoolExecutor(Executor):
    """Worker threads that pull the next run from the database's fair queue (``claim``: one queue per
    researcher, served in turn) rather than first come, first served: ``submit`` only wakes them."""

    def __init__(self, job: Callable[[int], None], workers: int, claim: Callable[[], int | None]):
        self._job = job
        self._next = claim
        self._wake = threading.Condition()
        self._signals = 0
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"aar-run-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def submit(self, run_id: int) -> None:
        with self._wake:
            self._signals += 1
            self._wake.notify_all()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._signals and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                self._signals = max(0, self._signals - 1)
            while not self._stopped:
                try:
                    run_id = self._next()
                except Exception:  # a database hiccup: keep the worker alive, try at the next wake-up
                    log.exception("claiming the next official run failed")
                    break
                if run_id is None:
                    break
                self._safe(run_id)

    def _safe(self, run_id: int) -> None:
        try:
            self._job(run_id)
        except Exception:  # the job records its own failures; this is the last line of defence
            log.exception("official run %s crashed the executor job", run_id)

    def shutdown(self, wait: bool = False) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if wait:
            for t in self._threads:
                t.join()


class NullExecutor(Executor):
    """Queue only (runs stay ``queued``): for a referee that delegates execution to another host."""

    def submit(self, run_id: int) -> None:
        return None
