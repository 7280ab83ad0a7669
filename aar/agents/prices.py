"""Dollar prices per million tokens, by model, and the cost of one turn's usage.

The table is data, not code: the defaults are the prices each registered backend declares for its models
(``aar.agents.backends.registry``), and ``load_prices`` layers a JSON/YAML file over them so a campaign
can price a new model (or a local one at zero) without a release. Unknown models cost 0 and say so
once in the log: an unpriced model must not silently pass a dollar budget unnoticed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from aar.transcript_format import Usage  # the token counts are the transcript's format (re-exported)

log = logging.getLogger("aar.agents")

__all__ = ["Price", "PriceTable", "Usage", "default_prices", "load_prices"]


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cache writes and reads are priced separately (Anthropic bills both)."""

    input: float
    output: float
    cache_write: float = 0.0
    cache_read: float = 0.0


def default_prices() -> dict[str, Price]:
    """The registered backends' published list prices (each backend declares its models' prices where
    it is registered: ``aar.agents.backends.providers`` and any plugin)."""
    from aar.agents.backends.registry import registered_prices

    return registered_prices()


class PriceTable:
    def __init__(self, prices: dict[str, Price] | None = None):
        self.prices = dict(default_prices() if prices is None else prices)
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
