"""The append-only audit log: one hash-chained row per state-changing request, written in the same
transaction as the change itself (so the log and the state can never disagree), and one per refused
request (4xx), written in small batches after the answer (``RefusalLog``).

Verifying the chain is incremental: a checkpoint (last verified id, its hash, entries up to it) is
kept in memory per database and process, and a check re-hashes only the entries after it (plus the
checkpoint row itself). ``full=True`` re-verifies from the genesis, which is what finds a row edited
before the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from aar.referee.db import AuditEntry, Database, utcnow
from aar.referee.errors import ApiError

GENESIS = "0" * 64
log = logging.getLogger("aar.referee")


def _digest(prev: str, ts, agent_id, action, method, path, detail) -> str:  # noqa: ANN001
    payload = json.dumps(
        [prev, ts.isoformat(), agent_id, action, method, path, detail], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def record(
    session: Session, *, agent_id: int | None, action: str, method: str, path: str, detail: dict | None = None
) -> AuditEntry:
    """Append one entry; call inside ``Database.write()`` (the write lock makes the chain linear)."""
    prev = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)) or GENESIS
    ts = utcnow()
    path = path.replace("\x00", "\\x00")  # a refused request's path may hold one; PostgreSQL text cannot
    detail = detail or {}
    entry = AuditEntry(
        ts=ts,
        agent_id=agent_id,
        action=action,
        method=method,
        path=path,
        detail=detail,
        prev_hash=prev,
        hash=_digest(prev, ts, agent_id, action, method, path, detail),
    )
    session.add(entry)
    return entry


def count_today(session: Session, agent_id: int, action: str) -> int:
    """How many ``action`` entries ``agent_id`` has since 00:00 UTC (budgets kept in the log itself)."""
    start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return (
        session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.agent_id == agent_id, AuditEntry.action == action, AuditEntry.ts >= start)
        )
        or 0
    )


def ensure_index(db: Database) -> None:
    """The index the forum's rate limits read (per researcher, per action, by time); idempotent."""
    try:
        with db.write() as session:
            session.execute(
                text(
                    "CREATE INDEX IF NOT EXISTS ix_audit_agent_action_ts ON audit_log (agent_id, action, ts)"
                )
            )
    except Exception:  # a database without the table, or a dialect without IF NOT EXISTS: slower, not wrong
        log.warning("could not create the audit_log (agent_id, action, ts) index", exc_info=True)


# -- verification ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainCheck:
    intact: bool
    entries: int  # entries of the chain verified intact (all of them when intact)
    hashed: int  # hashes this check recomputed
    first_bad_id: int | None = None
    full: bool = False


_checkpoints: dict[str, tuple[int, str, int]] = {}  # database url -> (last id, its hash, entries up to it)
_checkpoints_lock = threading.Lock()


def _db_key(session: Session) -> str:
    return session.get_bind().url.render_as_string(hide_password=True)


def _entry_digest(entry: AuditEntry, prev: str) -> str:
    return _digest(prev, entry.ts, entry.agent_id, entry.action, entry.method, entry.path, entry.detail)


def check_chain(session: Session, *, full: bool = False) -> ChainCheck:
    """Verify the chain from the checkpoint (or from the genesis with ``full``) and move the checkpoint."""
    key = _db_key(session)
    with _checkpoints_lock:
        cp = None if full else _checkpoints.get(key)
    full = cp is None  # no checkpoint yet: from the genesis
    prev, count, after, hashed = GENESIS, 0, 0, 0
    if cp is not None:
        cp_id, cp_hash, cp_count = cp
        row = session.get(AuditEntry, cp_id)
        hashed = 1
        if row is not None and row.hash == cp_hash and _entry_digest(row, row.prev_hash) == cp_hash:
            prev, count, after = cp_hash, cp_count, cp_id
        else:  # the checkpoint row changed (or this is another database at the same url): start over
            full = True
            with _checkpoints_lock:
                _checkpoints.pop(key, None)
    last: tuple[int, str] | None = None
    stmt = select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id)
    for entry in session.scalars(stmt.execution_options(yield_per=1000)):
        hashed += 1
        if entry.prev_hash != prev or entry.hash != _entry_digest(entry, prev):
            if full:
                with _checkpoints_lock:
                    _checkpoints.pop(key, None)
            return ChainCheck(False, count, hashed, entry.id, full)
        prev = entry.hash
        count += 1
        last = (entry.id, entry.hash)
    if last is not None:
        with _checkpoints_lock:
            old = _checkpoints.get(key)
            if old is None or old[0] < last[0]:
                _checkpoints[key] = (last[0], last[1], count)
    return ChainCheck(True, count, hashed, None, full)


def verify_chain(session: Session, *, full: bool = False) -> tuple[bool, int]:
    """(intact, entries verified): incremental from this process's checkpoint unless ``full``."""
    check = check_chain(session, full=full)
    return check.intact, check.entries


def forget_checkpoints() -> None:
    with _checkpoints_lock:
        _checkpoints.clear()


# -- refused requests ----------------------------------------------------------------------------------

MAX_MESSAGE = 300
MAX_PATH = 200


class RefusalLog:
    """Records refused requests (4xx) in the audit log, cheaply and boundedly.

    ``note`` runs after the answer has been sent (a background task): it identifies the caller (the
    token cache makes that free for valid tokens), then queues the entry, merging it with an identical
    one still queued (same caller, status, method, path, message: ``count`` says how many). One caller
    at a time flushes the queue, in transactions of at most ``max_batch`` entries; a flood therefore
    costs one O(1) queue operation per request and a bounded number of small transactions, pausing
    between batches so the forum's writers get the write lock. Past ``max_pending`` distinct entries
    new ones are dropped and counted (an ``audit.refusals_dropped`` entry says how many). A failed
    write is logged and never changes the answer, which was sent already.
    """

    def __init__(
        self,
        db: Database,
        identify: Callable[[str | None], object] | None = None,
        *,
        max_pending: int = 1000,
        max_batch: int = 100,
        pause_s: float = 0.05,
    ):
        self.db = db
        self.identify = identify
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.pause_s = pause_s
        self._lock = threading.Lock()
        self._pending: dict[tuple, dict] = {}
        self._dropped = 0
        self._flushing = False
        self.written = 0  # entries written by this log (tests, metrics)

    def note(
        self,
        method: str,
        path: str,
        authorization: str | None,
        status: int,
        message: str,
        *,
        token_invalid: bool = False,
    ) -> None:
        """Queue one refused request, and flush if no one else is flushing. Never raises."""
        try:
            agent_id = None
            if authorization and not token_invalid and self.identify is not None:
                try:
                    agent_id = self.identify(authorization).id  # type: ignore[attr-defined]
                except ApiError:
                    agent_id = None
                except Exception:  # still record the refusal, without its author
                    log.exception("could not identify the caller of a refused request")
            entry = {
                "agent_id": agent_id,
                "method": str(method)[:8],
                "path": str(path)[:MAX_PATH],
                "detail": {
                    "status": int(status),
                    "message": str(message)[:MAX_MESSAGE],
                    "token": bool(authorization),
                },
            }
            d = entry["detail"]
            key = (agent_id, d["token"], d["status"], entry["method"], entry["path"], d["message"])
            with self._lock:
                queued = self._pending.get(key)
                if queued is not None:
                    queued["detail"]["count"] += 1
                elif len(self._pending) >= self.max_pending:
                    self._dropped += 1
                else:
                    d["count"] = 1
                    self._pending[key] = entry
                if self._flushing:
                    return
                self._flushing = True
            self._flush_loop()
        except Exception:
            log.exception("could not record a refused %s %s in the audit log", method, str(path)[:MAX_PATH])

    def _flush_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    keys = list(self._pending)[: self.max_batch]
                    batch = [self._pending.pop(k) for k in keys]
                    dropped, self._dropped = self._dropped, 0
                    if not batch and not dropped:
                        self._flushing = False
                        return
                try:
                    with self.db.write() as session:
                        for e in batch:
                            record(
                                session,
                                agent_id=e["agent_id"],
                                action="refused",
                                method=e["method"],
                                path=e["path"],
                                detail=e["detail"],
                            )
                        if dropped:
                            record(
                                session,
                                agent_id=None,
                                action="audit.refusals_dropped",
                                method="-",
                                path="-",
                                detail={"count": dropped},
                            )
                    self.written += len(batch) + bool(dropped)
                except Exception:
                    log.exception("could not write %d refused-request audit entries", len(batch))
                    with self._lock:
                        self._dropped += len(batch) + dropped
                    time.sleep(self.pause_s)
                    with self._lock:
                        self._flushing = False
                    return
                with self._lock:
                    more = bool(self._pending) or bool(self._dropped)
                if more:
                    time.sleep(self.pause_s)  # let others write; let a flood coalesce
        except BaseException:
            with self._lock:
                self._flushing = False
            raise
