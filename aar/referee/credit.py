"""Credit: an official run belongs to whoever pushed its commit first.

Why: any researcher may fetch and re-run any commit (reproduction is part of science), so crediting
the submitter would let a researcher take another's idea as its own. At each push the commits that no
earlier push reached are recorded with the pusher; a run is credited to its commit's author and shown
as a reproduction when someone else submitted it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.referee.codestore import CodeStore
from aar.referee.db import CodePush, CommitAuthor


def record_push(session: Session, code: CodeStore, agent_id: int, tips: list[str]) -> int:
    """Record ``agent_id`` as the author of every commit of ``tips`` that no earlier push reached.
    Call before the push's own CodePush rows are added; returns how many commits were new."""
    earlier = set(session.scalars(select(CodePush.commit).distinct()).all())
    new = 0
    for sha in code.commits_since(tips, earlier):
        if session.get(CommitAuthor, sha) is None:
            session.add(CommitAuthor(commit=sha, agent_id=agent_id))
            new += 1
    return new


def author_of(session: Session, commit: str, submitter_id: int) -> int:
    """The credited author of ``commit``: its first pusher (the submitter for a commit that predates
    authorship records and was never pushed by anyone else)."""
    row = session.get(CommitAuthor, commit)
    if row is not None:
        return row.agent_id
    first = session.scalar(select(CodePush.agent_id).where(CodePush.commit == commit).order_by(CodePush.id))
    return first if first is not None else submitter_id
