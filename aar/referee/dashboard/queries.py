"""Read models for the dashboard pages: plain dicts built from the referee's tables.

Kept apart from the routes so each page's numbers come from one testable function, and so the
dashboard shows exactly what the API would (the same sort order as GET /api/v1/leaderboard, the
same flag views as GET /api/v1/admin/flags).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from aar.referee.db import Agent, Database, Flag, Run
from aar.referee.errors import ApiError
from aar.referee.flags import flag_view
from aar.referee.runs import BASELINE_AGENT, credited_id


def home_pgr(run: Run) -> float | None:
    return ((run.results or {}).get(run.task) or {}).get("pgr")


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def run_row(run: Run, author: str) -> dict:
    """One run as the tables show it: home numbers up front, held-out PGRs by task."""
    results = run.results or {}
    home = results.get(run.task) or {}
    return {
        "run_id": run.id,
        "author": author,
        "commit": run.commit,
        "commit_short": run.commit if run.commit.startswith("builtin:") else run.commit[:10],
        "idea_path": run.idea_path,
        "task": run.task,
        "status": run.status,
        "error": run.error,
        "baseline": run.is_baseline,
        "review_state": run.review_state,
        "review_reason": run.review_reason,
        "pgr": home.get("pgr"),
        "pgr_ci": home.get("pgr_ci"),
        "transfer_acc": home.get("transfer_acc"),
        "transfer_acc_ci": home.get("transfer_acc_ci"),
        "held_out": {t: r for t, r in results.items() if t != run.task},
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
    }


def _pgr_key(row: dict) -> float:
    return -(row["pgr"] if row["pgr"] is not None else -1e9)


def leaderboard(db: Database) -> tuple[list[dict], list[str]]:
    """Done runs by home PGR (undefined last), ranked; plus the held-out task columns in first-seen order."""
    with db.read() as session:
        rows = session.execute(
            select(Run, Agent.name).join(Agent, Agent.id == credited_id()).where(Run.status == "done")
        ).all()
        out = [run_row(run, name) for run, name in rows]
    out.sort(key=_pgr_key)
    tasks: dict[str, None] = {}
    for rank, row in enumerate(out, start=1):
        row["rank"] = rank
        tasks.update(dict.fromkeys(row["held_out"]))
    return out, list(tasks)


def researchers(db: Database) -> list[dict]:
    """Every researcher (agents that are neither admins nor the baselines' pseudo-agent) with run stats."""
    with db.read() as session:
        agents = session.scalars(
            select(Agent).where(Agent.is_admin.is_(False), Agent.name != BASELINE_AGENT).order_by(Agent.name)
        ).all()
        runs = session.scalars(select(Run).where(Run.is_baseline.is_(False)).order_by(Run.id)).all()
        out = []
        for agent in agents:
            mine = [r for r in runs if r.agent_id == agent.id]
            done = [r for r in mine if r.status == "done"]
            scored = [r for r in done if home_pgr(r) is not None]
            best = max(scored, key=home_pgr, default=None)
            out.append(
                {
                    "name": agent.name,
                    "runs_submitted": len(mine),
                    "runs_done": len(done),
                    "best": run_row(best, agent.name) if best is not None else None,
                }
            )
        return out


def progress(db: Database, names: list[str]) -> dict:
    """Chart data: per researcher, the running maximum of home PGR over their done runs' finish times.

    Runs whose home PGR is undefined are skipped; x is milliseconds since the epoch (UTC) so the
    browser needs no date parsing library.
    """
    with db.read() as session:
        rows = session.execute(
            select(Run, Agent.name)
            .join(Agent, Agent.id == credited_id())
            .where(Run.status == "done", Run.is_baseline.is_(False), Run.finished_at.is_not(None))
            .order_by(Run.finished_at, Run.id)
        ).all()
    series: dict[str, list[dict]] = {name: [] for name in names}
    for run, name in rows:
        pgr = home_pgr(run)
        if pgr is None or name not in series:
            continue
        points = series[name]
        best = max(pgr, points[-1]["y"]) if points else pgr
        stamp = run.finished_at.replace(tzinfo=dt.UTC).timestamp() * 1000
        points.append({"x": round(stamp), "y": best, "run": run.id, "pgr": pgr})
    return {"datasets": [{"label": name, "points": pts} for name, pts in series.items()]}


def agent_id(db: Database, name: str) -> int:
    """The agent's id, or a 404: the only way a URL's name reaches a file path (checked, never trusted)."""
    with db.read() as session:
        found = session.scalar(select(Agent.id).where(Agent.name == name))
    if found is None:
        raise ApiError(404, f"no researcher {name[:64]!r}")
    return found


def agent_runs(db: Database, agent: int, name: str) -> list[dict]:
    with db.read() as session:
        runs = session.scalars(select(Run).where(credited_id() == agent).order_by(Run.id.desc())).all()
        return [run_row(r, name) for r in runs]


def review_queue(db: Database) -> tuple[list[dict], list[dict]]:
    """(done non-baseline unreviewed runs with their open flags, every open flag)."""
    with db.read() as session:
        runs = session.execute(
            select(Run, Agent.name)
            .join(Agent, Agent.id == credited_id())
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
        for run, name in runs:
            row = run_row(run, name)
            row["flags"] = [f for f in open_flags if f["subject_type"] == "run" and f["subject_id"] == run.id]
            queue.append(row)
    queue.sort(key=lambda r: (not r["flags"], r["run_id"]))  # flagged runs first
    return queue, open_flags
