"""Budgets: stop a researcher on dollars, tokens, wall clock or official runs, whichever comes first.

Spending is kept as integer token counts per model; dollars are computed from those totals with the
price table, so the recorded cost equals the price table applied to the provider's usage fields
exactly (no float drift from summing per-turn costs). Wall clock counts active time across restarts
(each session adds its own elapsed time), so a crash loop cannot extend a researcher's hours.

The wall clock is also enforced from outside the loop: a ``Watchdog`` thread stops a researcher whose
tool call or model request outlasts its budget, and one whose referee has gone away.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aar.agents.prices import PriceTable
from aar.transcript_format import Spend, Usage  # the spend is read from the transcript (re-exported)

log = logging.getLogger("aar.agents")


@dataclass
class Limits:
    usd: float | None = None
    tokens: int | None = None
    hours: float | None = None
    official_runs: int | None = None
    turns: int | None = None  # a safety net for runaway loops, not a research budget


class Budget:
    def __init__(self, limits: Limits, prices: PriceTable, spend: Spend | None = None):
        self.limits = limits
        self.prices = prices
        self.spend = spend or Spend()
        self._session_start = time.monotonic()

    def add_usage(self, model: str, usage: Usage) -> None:
        self.spend.usage[model] = self.spend.usage.get(model, Usage()) + usage
        self.spend.turns += 1

    def add_official_run(self) -> None:
        self.spend.official_runs += 1

    @property
    def usd(self) -> float:
        return sum(self.prices.cost(m, u) for m, u in self.spend.usage.items())

    @property
    def tokens(self) -> int:
        return sum(u.total for u in self.spend.usage.values())

    @property
    def seconds(self) -> float:
        return self.spend.seconds_before + (time.monotonic() - self._session_start)

    def exhausted(self) -> str | None:
        """Why the researcher must stop now, or None."""
        lim = self.limits
        if lim.usd is not None and self.usd >= lim.usd:
            return f"dollar budget spent (${self.usd:.4f} of ${lim.usd})"
        if lim.tokens is not None and self.tokens >= lim.tokens:
            return f"token budget spent ({self.tokens} of {lim.tokens})"
        if lim.hours is not None and self.seconds >= lim.hours * 3600:
            return f"wall-clock budget spent ({self.seconds / 3600:.3f} h of {lim.hours} h)"
        if lim.turns is not None and self.spend.turns >= lim.turns:
            return f"turn limit reached ({self.spend.turns})"
        return None

    def time_left(self) -> float | None:
        if self.limits.hours is None:
            return None
        return self.limits.hours * 3600 - self.seconds

    def runs_left(self) -> int | None:
        if self.limits.official_runs is None:
            return None
        return max(0, self.limits.official_runs - self.spend.official_runs)

    def summary(self) -> dict:
        return {
            "usd": self.usd,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "official_runs": self.spend.official_runs,
            "turns": self.spend.turns,
            "usage": {m: u.to_dict() for m, u in self.spend.usage.items()},
        }


# -- the hard stop -------------------------------------------------------------------------------------

STOP_SIGNAL = signal.SIGUSR1  # sent by the watchdog to the main thread (a signal interrupts blocking calls)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by the ``Watchdog``: stop now. ``reason`` and ``final`` are what the
    session_end record says (a KeyboardInterrupt, so no ``except Exception`` in a tool swallows it and
    every cleanup written for Ctrl-C runs)."""

    def __init__(self, reason: str, final: bool):
        super().__init__(reason)
        self.reason, self.final = reason, final


def referee_reachable(target: str, timeout: float = 5.0) -> bool:
    """Whether the referee accepts a connection (a Unix socket path or an http(s) URL); no request."""
    try:
        if not target.startswith(("http://", "https://")):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(os.path.abspath(target))
            return True
        url = urlsplit(target)
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((url.hostname or "127.0.0.1", port), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


class Watchdog:
    """A daemon thread that stops the researcher whatever its main thread is doing (a tool call that
    hangs, a model request that never answers, a referee client retrying for minutes): the loop checks its
    budgets only between turns.

    It fires when the wall-clock budget has been spent for ``deadline_grace`` seconds (final: the budget
    is spent) or when the referee has refused connections for ``referee_grace`` seconds (not final: a
    resumed session goes on). Firing sends ``STOP_SIGNAL`` to the main thread, whose handler raises
    ``Stopped``; if the process still runs ``exit_grace`` seconds later, ``hard_exit(reason, final)`` is
    called (the CLI's closes the transcript and ``os._exit``s). ``stop()`` ends the watch but not that
    last countdown: once told to stop, the process is gone within ``exit_grace``.
    """

    def __init__(
        self,
        *,
        referee: str | None = None,
        referee_grace: float | None = 90.0,
        deadline_grace: float = 15.0,
        exit_grace: float = 15.0,
        hard_exit: Callable[[str, bool], None] | None = None,
        interval: float = 1.0,
    ):
        self.referee = referee
        self.referee_grace = referee_grace if referee and referee_grace and referee_grace > 0 else None
        self.deadline_grace, self.exit_grace = deadline_grace, exit_grace
        self.hard_exit = hard_exit
        self.interval = interval
        self.budget: Budget | None = None
        self.fired: tuple[str, bool] | None = None
        self._raised = False
        self._stop = threading.Event()
        self._lock = threading.Lock()  # no STOP_SIGNAL once stop() has put the previous handler back
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread().ident
        self._previous = None
        self._armed = False  # the STOP_SIGNAL handler is ours

    def watch(self, budget: Budget) -> None:
        """The budget whose wall clock is enforced (it may come after ``start``)."""
        self.budget = budget

    def start(self) -> Watchdog:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(STOP_SIGNAL, self._on_signal)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {STOP_SIGNAL})
            self._armed = True
        self._thread = threading.Thread(target=self._run, name="aar-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            if self._armed and threading.current_thread() is threading.main_thread():
                signal.signal(STOP_SIGNAL, self._previous if self._previous is not None else signal.SIG_DFL)
                self._armed = False

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _on_signal(self, signum, frame) -> None:  # noqa: ANN001
        if self.fired is not None and not self._raised:
            self._raised = True
            raise Stopped(*self.fired)

    def check(self, now: float, last_ok: float) -> tuple[str, bool] | None:
        """Why the researcher must stop now, or None."""
        b = self.budget
        left = b.time_left() if b is not None else None
        if left is not None and left <= -self.deadline_grace:
            return (b.exhausted() or "wall-clock budget spent"), True  # type: ignore[union-attr]
        if self.referee_grace is not None and now - last_ok >= self.referee_grace:
            return f"referee unreachable for {now - last_ok:.0f} s ({self.referee})", False
        return None

    def _run(self) -> None:
        last_ok = next_probe = time.monotonic()
        probe_every = min(5.0, (self.referee_grace or 20.0) / 4)
        while not self._stop.is_set():
            now = time.monotonic()
            if self.referee_grace is not None and now >= next_probe:
                if referee_reachable(self.referee, timeout=min(5.0, probe_every)):  # type: ignore[arg-type]
                    last_ok = time.monotonic()
                next_probe = now + probe_every
            fired = self.check(time.monotonic(), last_ok)
            if fired is not None:
                self._fire(*fired)
                return
            self._stop.wait(self.interval)

    def _fire(self, reason: str, final: bool) -> None:
        with self._lock:
            if self._stop.is_set():  # the main thread is done already
                return
            log.warning("stopping the researcher: %s", reason)
            self.fired = (reason, final)
            if self._armed:
                try:
                    signal.pthread_kill(self._main, STOP_SIGNAL)  # type: ignore[arg-type]
                except (ProcessLookupError, OSError):
                    pass
        if self.hard_exit is None:
            return
        time.sleep(self.exit_grace)  # the process is normally gone by now (this is a daemon thread)
        log.error(
            "the researcher did not stop within %.0f s of being told to (%s): exiting",
            self.exit_grace,
            reason,
        )
        self.hard_exit(reason, final)
