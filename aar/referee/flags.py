"""The review queue's flags: how a flag looks to a human, listing them, closing one (audited). Shared by
the API (/api/v1/admin/flags), the dashboard's review page and `aar referee review`."""

from __future__ import annotations

from sqlalchemy import select

from aar.referee import audit
from aar.referee.auth import Identity
from aar.referee.db import Agent, Database, Flag, utcnow
from aar.referee.errors import ApiError


def flag_view(flag: Flag, agent: str | None) -> dict:
    return {
        "id": flag.id,
        "kind": flag.kind,
        "subject_type": flag.subject_type,
        "subject_id": flag.subject_id,
        "agent": agent,
        "task": flag.task,
        "evidence": flag.evidence,
        "state": flag.state,
        "resolution": flag.resolution,
        "created_at": flag.created_at.isoformat(),
    }


def list_flags(db, state: str, limit: int, offset: int) -> list[dict]:  # noqa: ANN001
    with db.read() as session:
        q = select(Flag, Agent.name).outerjoin(Agent, Agent.id == Flag.agent_id)
        if state != "all":
            q = q.where(Flag.state == state)
        rows = session.execute(q.order_by(Flag.id).limit(limit).offset(offset)).all()
        return [flag_view(f, name) for f, name in rows]


def close_flag(db: Database, me: Identity, flag_id: int, resolution: str, path: str) -> dict:
    """Close one open flag with a human's resolution, audited (the API and the dashboard)."""
    with db.write() as session:
        flag = session.get(Flag, flag_id)
        if flag is None:
            raise ApiError(404, f"no flag {flag_id}")
        if flag.state != "open":
            raise ApiError(409, f"flag {flag_id} is already {flag.state}")
        flag.state = "closed"
        flag.resolution = resolution
        flag.updated_at = utcnow()
        audit.record(
            session,
            agent_id=me.id,
            action="flags.close",
            method="POST",
            path=path,
            detail={"flag_id": flag_id, "resolution": resolution},
        )
        session.flush()
        return flag_view(flag, None)
