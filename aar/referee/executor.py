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
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("aar.referee")


class Executor(ABC):
    @abstractmethod
    def submit(self, run_id: int) -> None:
        """Schedule a queued run; must return quickly."""

    def shutdown(self, wait: bool = False) -> None:  # noqa: B027 (optional hook)
        """Stop accepting work; queued runs stay ``queued`` in the db and resume at the next start."""


class LocalPoolExecutor(Executor):
    def __init__(self, job: Callable[[int], None], workers: int = 1):
        self._job = job
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="aar-run")
        self.futures: dict[int, Future] = {}

    def submit(self, run_id: int) -> None:
        self.futures[run_id] = self._pool.submit(self._safe, run_id)

    def _safe(self, run_id: int) -> None:
        try:
            self._job(run_id)
        except Exception:  # the job records its own failures; this is the last line of defence
            log.exception("official run %s crashed the executor job", run_id)

    def shutdown(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


class NullExecutor(Executor):
    """Queue only (runs stay ``queued``): for a referee that delegates execution to another host."""

    def submit(self, run_id: int) -> None:
        return None
