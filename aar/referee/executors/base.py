"""The executor interface: where official runs and their units execute.

An executor has two jobs. ``submit`` wakes the run coordinators (threads in the referee that claim the
next run from the database's fair queue and drive it: checkout, units, scoring); ``run_units`` runs a
batch of pure units (``aar.referee.units``) somewhere and yields their outputs as they finish. The
referee's database stays the queue and the record; an executor only decides *where* units run.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from aar.referee.units import Unit, UnitOutput

log = logging.getLogger("aar.referee")


class Executor(ABC):
    name = "?"

    @abstractmethod
    def submit(self, run_id: int) -> None:
        """Schedule a queued run; must return quickly."""

    def run_units(self, code: bytes, units: list[Unit]) -> Iterator[tuple[Unit, UnitOutput]]:
        """Run ``units`` of one run (its checkout as ``code``); yield each with its output as it finishes.
        Closing the iterator early (a unit failed, the referee stops) abandons the rest."""
        raise NotImplementedError(f"the {self.name} executor runs no units")

    def shutdown(self, wait: bool = False) -> None:  # noqa: B027 (optional hook)
        """Stop accepting work; queued runs stay ``queued`` in the db and resume at the next start."""


class CoordinatedExecutor(Executor):
    """Coordinator threads that pull the next run from the database's fair queue (``claim``: one queue
    per researcher, served in turn) rather than first come, first served: ``submit`` only wakes them."""

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

    @property
    def stopped(self) -> bool:
        return self._stopped

    def shutdown(self, wait: bool = False) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if wait:
            for t in self._threads:
                t.join()
