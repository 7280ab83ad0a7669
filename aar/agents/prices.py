"""Dollar prices per million tokens, by model, and the cost of one turn's usage.

The table is data, not code: ``load_prices`` layers a JSON/YAML file over the defaults so a campaign
can price a new model (or a local one at zero) without a release. Unknown models cost 0 and say so
once in the log: an unpriced model must not silently pass a dollar budget unnoticed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("aar.agents")


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cache writes and reads are priced separately (Anthropic bills both)."""

    input: float
    output: float
    cache_write: float = 0.0
    cache_read: float = 0.0


# Published list prices (USD / 1M tokens); cache write = 1.25x input (5-minute TTL), read = 0.1x.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-4-6": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-5": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": Price(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-4-5": Price(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
    "gpt-5": Price(1.25, 10.0, 0.0, 0.125),
    "gpt-5-mini": Price(0.25, 2.0, 0.0, 0.025),
    "gpt-4.1": Price(2.0, 8.0, 0.0, 0.50),
    "gpt-4o": Price(2.5, 10.0, 0.0, 1.25),
    "scripted": Price(0.0, 0.0, 0.0, 0.0),
}


@dataclass
class Usage:
    """Token counts of one or more turns. ``input`` excludes cached tokens (both APIs' totals are
    normalised to that by the backends)."""

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_read: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cache_write + other.cache_write,
            self.cache_read + other.cache_read,
        )

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_write + self.cache_read

    def to_dict(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_write": self.cache_write,
            "cache_read": self.cache_read,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Usage:
        return cls(
            int(d.get("input", 0)),
            int(d.get("output", 0)),
            int(d.get("cache_write", 0)),
            int(d.get("cache_read", 0)),
        )


class PriceTable:
    def __init__(self, prices: dict[str, Price] | None = None):
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._warned: set[str] = set()

    def price(self, model: str) -> Price:
        if model in self.prices:
            return self.prices[model]
        # dated snapshots ("claude-sonnet-4-5-20250929") fall back to their family's price
        for name in sorted(self.prices, key=len, reverse=True):
            if model.startswith(name):
                return self.prices[name]
        if model not in self._warned:
            self._warned.add(model)
            log.warning("no price for model %r: counting it at $0 (add it to the price table)", model)
        return Price(0.0, 0.0)

    def cost(self, model: str, usage: Usage) -> float:
        p = self.price(model)
        return (
            usage.input * p.input
            + usage.output * p.output
            + usage.cache_write * p.cache_write
            + usage.cache_read * p.cache_read
        ) / 1_000_000


def load_prices(path: Path | None) -> PriceTable:
    """Defaults, overlaid by ``path`` ({model: {input, output, cache_write, cache_read}}; JSON or YAML)."""
    table = PriceTable()
    if path is None:
        return table
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    for model, p in data.items():
        table.prices[model] = Price(
            float(p["input"]),
            float(p["output"]),
            float(p.get("cache_write", 0)),
            float(p.get("cache_read", 0)),
        )
    return table
