"""Runs as each viewer may see them: the only place an ORM run becomes an ``aar.contract`` model.

Routes, the forum and the dashboard all call :func:`run_view`, so a researcher token can only ever
receive a :class:`aar.contract.ResearcherRun` (which has no field for a private or held-out number)
and the ordering of every list is :func:`aar.contract.rank_key`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aar.contract import (
    AdminLeaderboardRow,
    AdminRun,
    Released,
    ResearcherLeaderboardRow,
    ResearcherRun,
    RunView,
    TaskResult,
    ranked,
)
from aar.referee.db import Agent, Run


def credited_id():
    """SQL for the agent a run is credited to: its commit's author (older rows: the submitter)."""
    return func.coalesce(Run.author_id, Run.agent_id)


def names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Agent.id, Agent.name)).all())


def _released(run: Run) -> dict[str, Released]:
    out = {}
    for task, rel in (run.released or {}).items():
        try:
            out[task] = Released.model_validate(rel)
        except ValueError:  # an older row: show nothing rather than something unchecked
            continue
    return out


def researcher_error(error: str | None) -> str | None:
    """What a researcher reads of a failed run: the referee's one-line reason, never the idea's stderr
    (an idea could print the final inputs, or a held-out task's, into it and read them back here)."""
    if not error:
        return error
    first = error.splitlines()[0]
    if "\n" in error:
        first += " (the idea's output is kept for the admins; reproduce the failure on dev)"
    return first


def _common(run: Run, who: dict[int, str], admin: bool = True) -> dict:
    author = who.get(run.author_id or run.agent_id, "?")
    submitter = who.get(run.agent_id, "?")
    return {
        "id": run.id,
        "author": author,
        "submitted_by": submitter,
        "reproduction": submitter != author,
        "commit": run.commit,
        "idea_path": run.idea_path,
        "task": run.task,
        "seeds": run.seeds,
        "status": run.status,
        "error": run.error if admin else researcher_error(run.error),
        "baseline": run.is_baseline,
        "review_state": run.review_state,
        "review_reason": run.review_reason,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "sandbox_backend": (run.sandbox or {}).get("backend"),
        "released": _released(run),
    }


def _results(run: Run) -> dict[str, TaskResult] | None:
    if run.results is None:
        return None
    out = {}
    for task, res in run.results.items():
        try:
            out[task] = TaskResult.model_validate(res)
        except ValueError:  # a row written before public/private existed
            continue
    return out


def run_view(run: Run, who: dict[int, str], *, admin: bool) -> RunView:
    """The run as this viewer may see it (never the per-seed predictions)."""
    if admin:
        return AdminRun(**_common(run, who), results=_results(run))
    return ResearcherRun(**_common(run, who, admin=False))


def leaderboard(runs: Iterable[Run], who: dict[int, str], *, admin: bool) -> list:
    """Done runs ranked by the one rule, as this viewer sees them."""
    views = ranked(run_view(r, who, admin=admin) for r in runs)
    row = AdminLeaderboardRow if admin else ResearcherLeaderboardRow
    return [row(**v.model_dump(), rank=i) for i, v in enumerate(views, start=1)]


def cited_run(run: Run, who: dict[int, str]) -> dict:
    """What a forum post shows of a run it cites, to anyone: the released public numbers only (an
    admin reads the exact ones on the run itself), so a post can never carry a hidden number."""
    view = ResearcherRun(**_common(run, who, admin=False))
    return {
        "run_id": run.id,
        "author": view.author,
        "commit": run.commit,
        "status": run.status,
        "review_state": run.review_state,
        "verified": run.review_state == "verified",
        "released": {t: r.model_dump(mode="json") for t, r in view.released.items()},
    }
