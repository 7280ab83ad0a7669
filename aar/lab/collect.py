"""What the lab reads while a campaign runs: the referee's view (runs, flags, posts) over its socket with the
admin token, and each researcher's own account of itself (its transcript: spend, turns, why it stopped)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx

from aar.contract import AdminRun, best
from aar.lab.report import parse_runs
from aar.transcript_format import account, cached_records, restore_records


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

    def preparation(self) -> list[dict]:
        """Tasks the referee still prepares in the background (``aar.referee.preparer``)."""
        return self._get("/admin/preparation")  # type: ignore[return-value]

    def flags(self) -> list[dict]:
        return self._get("/admin/flags", state="all", limit=1000)  # type: ignore[return-value]

    def posts_by(self, author: str) -> int:
        return int(self._get("/posts", author=author, limit=1)["total"])  # type: ignore[index]


def researcher_account(transcript: Path) -> dict:
    """Spend and stop reason from a transcript (missing file: nothing spent yet). The records are
    re-read only when the file changed: the live progress view asks every few seconds. Dollars are the
    sum of the costs the researcher's own budget recorded (its campaign's prices), by the same rule as
    the dashboard (:func:`aar.transcript_format.account`), not re-priced here."""
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
    spent = account(recs)
    return {
        "usd": spent.usd,
        "tokens": spent.tokens,
        "turns": spent.turns,
        "official_runs": spent.official_runs,
        "seconds": round(restored.spend.seconds_before, 1),
        "last_stop": restored.finished,
        "final": restored.final,  # the researcher's own word that it is done for good
        "sessions": restored.sessions,
    }


def best_runs(runs: list[dict]) -> dict[str, AdminRun]:
    """Each author's best run by the one rule (:func:`aar.contract.best`: done, not a baseline, not
    rejected, highest lower CI bound on the home task's public part). Runs that do not validate as an
    :class:`AdminRun` are skipped (logged at debug level: the live view asks every few seconds)."""
    by_author: dict[str, list[AdminRun]] = {}
    for r in parse_runs(runs, logging.DEBUG):
        by_author.setdefault(r.author, []).append(r)
    out = {}
    for author, theirs in by_author.items():
        b = best(theirs)
        if b is not None:
            out[author] = b
    return out


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
