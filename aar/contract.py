"""The one typed contract for what crosses the referee's boundary: runs, leaderboard rows, task cards.

The referee builds these models, its API sends them, and the agents' tools, the lab's report and the
dashboard read them; nobody reshapes a run by hand. Each comes in two *views*:

- the **researcher view** carries only what a researcher may see while a campaign runs: the task's
  released public score of a run (through the official Ladder: rounded, released only on a
  significant improvement, no exact counts, no seed spread), on the home task and on the campaign's
  visible tasks. It has no field that could hold a private or held-out number (``extra="forbid"``),
  so a leak is a validation error, not a silent payload.
- the **admin view** adds every exact number: the public and the private part of ``final`` on the
  home and visible tasks, the held-out tasks, and the paired comparisons against vanilla.

One ranking rule everywhere (:func:`rank_key`): "best" is the highest lower CI bound on the public
part of the home task *as the viewer sees it* (released for researchers, exact for admins); the
private part and the held-out tasks confirm a winner, they never select one.

This module sits below both the referee and the agents (it imports neither), so the two sides agree
on one schema and still meet only over HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["home", "visible", "held_out"]
Part = Literal["public", "private"]
CI = tuple[float | None, float | None]

_CLOSED = ConfigDict(extra="forbid")
_OPEN = ConfigDict(extra="allow")  # admin views carry every stored field


def finite(v: object) -> float | None:
    """A finite float or None (NaN, inf, None and non-numbers read as None, i.e. undefined)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def ci_pair(v: object) -> CI:
    if not isinstance(v, list | tuple) or len(v) != 2:
        return (None, None)
    return (finite(v[0]), finite(v[1]))


# -- scores ------------------------------------------------------------------------------------------


class PartScore(BaseModel):
    """Exact statistics of one run on one part of one task (admin only)."""

    model_config = _OPEN
    pgr: float | None = Field(description="null when undefined (ceiling-weak gap under 3 standard errors)")
    pgr_ci: CI = (None, None)
    transfer_acc: float
    transfer_acc_ci: CI = (None, None)
    weak_acc: float
    weak_acc_ci: CI = (None, None)
    ceiling_acc: float
    ceiling_acc_ci: CI = (None, None)
    gap: float
    gap_ci: CI = (None, None)
    gap_se: float | None = None
    transfer_seed_std: float = 0.0
    n_items: int
    n_seeds: int

    @property
    def half_width(self) -> float | None:
        lo, hi = self.pgr_ci
        return None if lo is None or hi is None else (hi - lo) / 2


class VsVanilla(BaseModel):
    """This run minus the vanilla baseline, paired on the same items and seeds (admin only)."""

    model_config = _OPEN
    acc_diff: float
    acc_diff_ci: CI = (None, None)
    pgr_diff: float | None = None
    pgr_diff_ci: CI = (None, None)
    p_value: float


class TaskResult(BaseModel):
    """A run's exact result on one task. Held-out tasks have no public part: all their final items
    are private."""

    model_config = _OPEN
    role: Role
    public: PartScore | None = None
    private: PartScore | None = None
    vs_vanilla: dict[Part, VsVanilla] = Field(default_factory=dict)


class Released(BaseModel):
    """What a researcher learns of a run's public score on one task (the official Ladder's answer)."""

    model_config = _CLOSED
    pgr: float | None = Field(
        description="the released public PGR of this run, rounded; null when this run did not "
        "significantly beat the task's best released one (or PGR is undefined on the task)"
    )
    pgr_ci: CI | None = Field(default=None, description="rounded 95% CI, only with a released pgr")
    improved: bool = Field(description="this run moved the task's released best")
    best_pgr: float | None = Field(description="the task's best released public PGR after this run")
    resolution: float = Field(description="PGR units the released numbers are rounded to")


# -- runs --------------------------------------------------------------------------------------------


# A run's status: queued -> running [-> waiting -> running] -> done | failed (or cancelled while queued).
# "waiting": it reached a held-out task the referee is still preparing in the background (first result first).
IN_FLIGHT: tuple[str, ...] = ("queued", "running", "waiting")


def has_result(run: dict) -> bool:
    """Has a run (a dict of either view) told its submitter what it will tell? Finished, or waiting for
    a held-out task with its released scores already out (researchers never learn held-out scores)."""
    status = run.get("status")
    return status not in IN_FLIGHT or (status == "waiting" and bool(run.get("released")))


class RunBase(BaseModel):
    id: int
    author: str = Field(description="credited: who pushed the commit first")
    submitted_by: str
    reproduction: bool = Field(description="submitted by someone other than the author")
    commit: str
    idea_path: str
    task: str = Field(description="the home task")
    seeds: int
    status: str = Field(
        description="queued, running, waiting (for a task being prepared), done, failed, cancelled"
    )
    error: str | None = None
    baseline: bool
    review_state: str
    review_reason: str | None = None
    created_at: str
    finished_at: str | None = None
    sandbox_backend: str | None = None
    released: dict[str, Released] = Field(
        default_factory=dict, description="the released public score per home/visible task"
    )


class ResearcherRun(RunBase):
    """A run as a researcher sees it: no private part, no held-out task, no exact number."""

    model_config = _CLOSED
    view: Literal["researcher"] = "researcher"


class AdminRun(RunBase):
    """A run with everything the referee knows of it (admins, and the report at the end)."""

    model_config = _OPEN
    view: Literal["admin"] = "admin"
    results: dict[str, TaskResult] | None = None

    def result(self, task: str | None = None) -> TaskResult | None:
        return (self.results or {}).get(task or self.task)

    def score(self, part: Part, task: str | None = None) -> PartScore | None:
        res = self.result(task)
        return None if res is None else getattr(res, part)

    def held_out(self) -> dict[str, TaskResult]:
        return {t: r for t, r in (self.results or {}).items() if r.role == "held_out"}


RunView = ResearcherRun | AdminRun


class ResearcherLeaderboardRow(ResearcherRun):
    rank: int


class AdminLeaderboardRow(AdminRun):
    rank: int


LeaderboardRow = ResearcherLeaderboardRow | AdminLeaderboardRow


# -- tasks -------------------------------------------------------------------------------------------


class ResearcherTaskCard(BaseModel):
    """What a researcher may know of a task: no labels, no label counts or rates, no private size."""

    model_config = _CLOSED
    name: str
    domain: str
    role: Literal["home", "visible"]
    description: str
    weak_model: str
    strong_model: str
    protocol_c: float
    student: dict | None = Field(
        None, description="a text tier's fixed student (aar.w2s.students.StudentSpec); None: the feature head"
    )
    sizes: dict[str, int] = Field(description="rows of student_train and dev (the exported files)")
    files: dict[str, str]
    idea_contract: str


class AdminTaskCard(BaseModel):
    model_config = _OPEN
    name: str
    domain: str
    role: Role
    description: str
    weak_model: str
    strong_model: str
    protocol_c: float
    student: dict | None = None
    sizes: dict[str, int] = Field(description="every split and both parts of final")
    files: dict[str, str] = Field(default_factory=dict)
    idea_contract: str = ""


# -- the one ranking rule ----------------------------------------------------------------------------


def viewer_score(run: RunView) -> tuple[float | None, CI]:
    """(PGR, CI) of the run's home task as the viewer sees it: exact public for admins, released
    public for researchers. (None, (None, None)) when there is nothing to see."""
    if isinstance(run, AdminRun):
        score = run.score("public")
        return (None, (None, None)) if score is None else (score.pgr, score.pgr_ci)
    rel = run.released.get(run.task)
    if rel is None or rel.pgr is None:
        return None, (None, None)
    return rel.pgr, rel.pgr_ci or (None, None)


def rank_key(run: RunView) -> tuple[float, float, int]:
    """Sort key, ascending = better: highest lower CI bound first (a wide lucky interval should not
    win), then the point value, then the earlier run. Runs with nothing to see sort last."""
    pgr, (lo, _hi) = viewer_score(run)
    return (-(lo if lo is not None else -math.inf), -(pgr if pgr is not None else -math.inf), run.id)


R = TypeVar("R", bound=RunBase)


def ranked(runs: Iterable[R]) -> list[R]:
    """Done runs, best first by :func:`rank_key` (the leaderboard's order)."""
    return sorted((r for r in runs if r.status == "done"), key=rank_key)  # type: ignore[arg-type]


def eligible(run: RunView) -> bool:
    """May this run be called "best"? Done, not a baseline, not rejected, something to rank by."""
    return (
        run.status == "done"
        and not run.baseline
        and run.review_state != "rejected"
        and viewer_score(run)[0] is not None
    )


def best(runs: Iterable[R]) -> R | None:
    """The one rule for "best" (leaderboard, tools, report, dashboard): the eligible run first by
    :func:`rank_key`."""
    pool = [r for r in runs if eligible(r)]  # type: ignore[arg-type]
    return min(pool, key=rank_key, default=None)  # type: ignore[arg-type]


def top(runs: Sequence[R], k: int) -> list[R]:
    """The k eligible runs first by :func:`rank_key` (the report's confirmation candidates)."""
    return sorted((r for r in runs if eligible(r)), key=rank_key)[:k]  # type: ignore[arg-type]
