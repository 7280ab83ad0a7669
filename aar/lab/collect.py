"""What the lab reads while a campaign runs: the referee's view (runs, flags, posts) over its socket with the
admin token, and each researcher's own account of itself (its transcript: spend, turns, why it stopped)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from aar.agents.budget import Budget, Limits
from aar.agents.prices import load_prices
from aar.agents.transcript import cached_records, restore_records
from aar.lab.report import home_pgr

_PRICES = load_prices(None)


class RefereeView:
    """Admin reads from the referee's API (never writes)."""

    def __init__(self, socket: Path, admin_token: str, timeout: float = 30.0):
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url="http://referee/api/v1",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, **params) -> object:
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def healthy(self) -> bool:
        try:
            return self.http.get("/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def runs(self) -> list[dict]:
        out: list[dict] = []
        while True:
            page = self._get("/runs", limit=500, offset=len(out))
            out += page  # type: ignore[operator]
            if len(page) < 500:  # type: ignore[arg-type]
                return out

    def flags(self) -> list[dict]:
        return self._get("/admin/flags", state="all", limit=1000)  # type: ignore[return-value]

    def posts_by(self, author: str) -> int:
        return int(self._get("/posts", author=author, limit=1)["total"])  # type: ignore[index]


def researcher_account(transcript: Path) -> dict:
    """Spend and stop reason from a transcript (missing file: nothing spent yet). The records are
    re-read only when the file changed: the live progress view asks every few seconds."""
    recs = cached_records(transcript)
    if not recs:
        return {
            "usd": 0.0,
            "tokens": 0,
            "turns": 0,
            "official_runs": 0,
            "seconds": 0.0,
            "last_stop": None,
            "final": False,
        }
    restored = restore_records(recs)
    summary = Budget(Limits(), _PRICES, restored.spend).summary()
    return {
        "usd": summary["usd"],
        "tokens": summary["tokens"],
        "turns": summary["turns"],
        "official_runs": summary["official_runs"],
        "seconds": round(restored.spend.seconds_before, 1),
        "last_stop": restored.finished,
        "final": restored.final,  # the researcher's own word that it is done for good
        "sessions": restored.sessions,
    }


def best_runs(runs: list[dict]) -> dict[str, dict]:
    """Each author's best done, non-rejected run by home PGR."""
    best: dict[str, dict] = {}
    for r in runs:
        pgr = home_pgr(r)
        if r["status"] != "done" or r["review_state"] == "rejected" or pgr is None:
            continue
        cur = best.get(r["author"])
        if cur is None or pgr > (home_pgr(cur) or -1e9):
            best[r["author"]] = r
    return best


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
