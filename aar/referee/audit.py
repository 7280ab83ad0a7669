"""The append-only audit log: one hash-chained row per state-changing request, written in the same
transaction as the change itself (so the log and the state can never disagree)."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.referee.db import AuditEntry, utcnow

GENESIS = "0" * 64


def record(
    session: Session, *, agent_id: int | None, action: str, method: str, path: str, detail: dict | None = None
) -> AuditEntry:
    """Append one entry; call inside ``Database.write()`` (the write lock makes the chain linear)."""
    prev = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)) or GENESIS
    ts = utcnow()
    detail = detail or {}
    payload = json.dumps(
        [prev, ts.isoformat(), agent_id, action, method, path, detail], sort_keys=True, default=str
    )
    entry = AuditEntry(
        ts=ts,
        agent_id=agent_id,
        action=action,
        method=method,
        path=path,
        detail=detail,
        prev_hash=prev,
        hash=hashlib.sha256(payload.encode()).hexdigest(),
    )
    session.add(entry)
    return entry


def verify_chain(session: Session) -> tuple[bool, int]:
    """(intact, entries checked): recompute every hash in order."""
    prev = GENESIS
    count = 0
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)):
        payload = json.dumps(
            [
                prev,
                entry.ts.isoformat(),
                entry.agent_id,
                entry.action,
                entry.method,
                entry.path,
                entry.detail,
            ],
            sort_keys=True,
            default=str,
        )
        if entry.prev_hash != prev or entry.hash != hashlib.sha256(payload.encode()).hexdigest():
            return False, count
        prev = entry.hash
        count += 1
    return True, count
