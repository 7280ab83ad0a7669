"""Budgets: stop a researcher on dollars, tokens, wall clock or official runs, whichever comes first.

Spending is kept as integer token counts per model; dollars are computed from those totals with the
price table, so the recorded cost equals the price table applied to the provider's usage fields
exactly (no float drift from summing per-turn costs). Wall clock counts active time across restarts
(each session adds its own elapsed time), so a crash loop cannot extend a researcher's hours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aar.agents.prices import PriceTable, Usage


@dataclass
class Limits:
    usd: float | None = None
    tokens: int | None = None
    hours: float | None = None
    official_runs: int | None = None
    turns: int | None = None  # a safety net for runaway loops, not a research budget


@dataclass
class Spend:
    usage: dict[str, Usage] = field(default_factory=dict)  # by model
    seconds_before: float = 0.0  # active seconds of earlier sessions
    official_runs: int = 0
    turns: int = 0


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
