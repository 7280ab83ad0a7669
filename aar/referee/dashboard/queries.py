"""Read models for the dashboard pages: plain dicts built from the referee's tables.

Every run a page shows is first the viewer's view of it (``aar.referee.views.run_view`` /
``views.leaderboard`` with the viewer's admin flag): a researcher's page can only ever hold an
``aar.contract.ResearcherRun`` (released public numbers of the home and visible tasks), an admin's
holds the exact public and private parts and the held-out tasks. Orders and "best" are
``aar.contract``'s one rule, so the dashboard ranks exactly as GET /api/v1/leaderboard does for the
same token; flags are the views of GET /api/v1/admin/flags.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.contract import AdminRun, RunView, best, viewer_score
from aar.referee import views
from aar.referee.datadir import DataStore
from aar.referee.db import Agent, Database, Flag, Run
from aar.referee.errors import ApiError
from aar.referee.flags import flag_view
from aar.referee.runs import BASELINE_AGENT


@dataclass(frozen=True)
class Columns:
    """The score columns of a viewer's tables: researchers get the released public PGR of the home
    and visible tasks; admins the exact public and private parts and the held-out tasks too."""

    admin: bool
    home: str
    visible: list[str]
    held_out: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        """How many score cells a row has (for the empty tables' colspan)."""
        if self.admin:
            return 4 + 2 * len(self.visible) + len(self.held_out)
        return 1 + len(self.visible)


def columns(data: DataStore, admin: bool) -> Columns:
    return Columns(admin, data.home, data.visible(), data.held_out() if admin else [])


def _when(iso: str | None) -> str | None:
    return iso[:19] if iso else None


def run_row(view: RunView, cols: Columns) -> dict:
    """One run as the tables show it, from the viewer's view of it (never from the ORM row)."""
    shown = [view.task, *[t for t in cols.visible if t != view.task]]
    row = {
        "run_id": view.id,
        "rank": getattr(view, "rank", None),
        "author": view.author,
        "submitted_by": view.submitted_by,
        "reproduction": view.reproduction,
        "commit": view.commit,
        "commit_short": view.commit if view.commit.startswith("builtin:") else view.commit[:10],
        "idea_path": view.idea_path,
        "task": view.task,
        "status": view.status,
        "error": view.error,
        "baseline": view.baseline,
        "review_state": view.review_state,
        "review_reason": view.review_reason,
        "created_at": _when(view.created_at),
        "finished_at": _when(view.finished_at),
        "released": {t: view.released[t] for t in shown if t in view.released},
    }
    if isinstance(view, AdminRun) and cols.admin:
        public, private = view.score("public"), view.score("private")
        home = view.result()
        row |= {
            "public": public,
            "private": private,
            "drop": (
                public.pgr - private.pgr
                if public is not None and private is not None and None not in (public.pgr, private.pgr)
                else None
            ),
            "visible": {t: view.result(t) for t in cols.visible if view.result(t) is not None},
            "held_out": {t: r.private for t, r in view.held_out().items() if t in cols.held_out},
            "vs_vanilla": dict(home.vs_vanilla) if home is not None else {},
        }
    return row


def _views(session: Session, runs: Iterable[Run], admin: bool) -> list[RunView]:
    who = views.names(session)
    return [views.run_view(r, who, admin=admin) for r in runs]


def leaderboard(db: Database, cols: Columns) -> list[dict]:
    """Done runs, ranked by the one rule on what this viewer sees (as GET /api/v1/leaderboard)."""
    with db.read() as session:
        runs = session.scalars(select(Run).where(Run.status == "done").order_by(Run.id)).all()
        rows = views.leaderboard(runs, views.names(session), admin=cols.admin)
    return [run_row(v, cols) for v in rows]


def researchers(db: Database, cols: Columns) -> list[dict]:
    """Every researcher (agents that are neither admins nor the baselines' pseudo-agent) with run
    stats and their best credited run by ``aar.contract.best`` on what this viewer sees."""
    with db.read() as session:
        agents = session.scalars(
            select(Agent).where(Agent.is_admin.is_(False), Agent.name != BASELINE_AGENT).order_by(Agent.name)
        ).all()
        runs = session.scalars(select(Run).where(Run.is_baseline.is_(False)).order_by(Run.id)).all()
        seen = _views(session, runs, cols.admin)
        pairs = [(r.agent_id, r.author_id or r.agent_id, v) for r, v in zip(runs, seen, strict=True)]
        out = []
        for agent in agents:
            mine = [v for submitter, _author, v in pairs if submitter == agent.id]
            top = best(v for _submitter, author, v in pairs if author == agent.id)
            out.append(
                {
                    "name": agent.name,
                    "runs_submitted": len(mine),
                    "runs_done": sum(v.status == "done" for v in mine),
                    "best": run_row(top, cols) if top is not None else None,
                }
            )
        return out


def progress(db: Database, names: list[str], admin: bool) -> dict:
    """Chart data: per researcher, the running maximum of home PGR over their done runs' finish times,
    as the viewer sees it: the released public PGR for researchers, the exact public one for admins.

    Runs with nothing to show (PGR undefined, or not released) are skipped; x is milliseconds since
    the epoch (UTC) so the browser needs no date parsing library.
    """
    with db.read() as session:
        runs = session.scalars(
            select(Run)
            .where(Run.status == "done", Run.is_baseline.is_(False), Run.finished_at.is_not(None))
            .order_by(Run.finished_at, Run.id)
        ).all()
        stamps = [r.finished_at for r in runs]
        seen = _views(session, runs, admin)
    series: dict[str, list[dict]] = {name: [] for name in names}
    for view, finished in zip(seen, stamps, strict=True):
        pgr, _ci = viewer_score(view)
        if pgr is None or view.author not in series:
            continue
        points = series[view.author]
        top = max(pgr, points[-1]["y"]) if points else pgr
        stamp = finished.replace(tzinfo=dt.UTC).timestamp() * 1000  # stored naive, in UTC
        points.append({"x": round(stamp), "y": top, "run": view.id, "pgr": pgr})
    label = "best public home PGR so far (exact)" if admin else "best released home PGR so far"
    return {"y_label": label, "datasets": [{"label": name, "points": pts} for name, pts in series.items()]}


def agent_id(db: Database, name: str) -> int:
    """The agent's id, or a 404: the only way a URL's name reaches a file path (checked, never trusted)."""
    with db.read() as session:
        found = session.scalar(select(Agent.id).where(Agent.name == name))
    if found is None:
        raise ApiError(404, f"no researcher {name[:64]!r}")
    return found


def agent_runs(db: Database, agent: int, cols: Columns) -> list[dict]:
    """The runs credited to the agent, newest first, as this viewer sees them."""
    with db.read() as session:
        runs = session.scalars(select(Run).where(views.credited_id() == agent).order_by(Run.id.desc())).all()
        return [run_row(v, cols) for v in _views(session, runs, cols.admin)]


def review_queue(db: Database, cols: Columns) -> tuple[list[dict], list[dict]]:
    """(done non-baseline unreviewed runs with their open flags, every open flag). Admins only."""
    with db.read() as session:
        runs = session.scalars(
            select(Run)
            .where(Run.status == "done", Run.is_baseline.is_(False), Run.review_state == "unreviewed")
            .order_by(Run.id)
        ).all()
        flags = session.execute(
            select(Flag, Agent.name)
            .outerjoin(Agent, Agent.id == Flag.agent_id)
            .where(Flag.state == "open")
            .order_by(Flag.id)
        ).all()
        open_flags = [flag_view(f, name) for f, name in flags]
        queue = []
        for view in _views(session, runs, admin=True):
            row = run_row(view, cols)
            row["flags"] = [
                f for f in open_flags if f["subject_type"] == "run" and f["subject_id"] == view.id
            ]
            queue.append(row)
    queue.sort(key=lambda r: (not r["flags"], r["run_id"]))  # flagged runs first
    return queue, open_flags
