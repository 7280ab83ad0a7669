"""Request and response bodies of /api/v1. Inputs are strict (no coercion) and closed (no extra keys).

Runs, leaderboard rows and task cards are in ``aar.contract`` (one contract, two views)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from aar.contract import Released

Strict = ConfigDict(strict=True, extra="forbid")
TaskName = Field(min_length=1, max_length=64)
RunId = Annotated[int, Field(ge=1, le=2**62)]


class Message(BaseModel):
    detail: str


class DevEvaluateIn(BaseModel):
    model_config = Strict
    task: str = TaskName
    predictions: dict[str, float] = Field(
        description="row id -> P(label=1), every dev id exactly once", max_length=200_000
    )


class DevEvaluateOut(BaseModel):
    task: str
    pgr: float | None = Field(description="released PGR (rounded; null when undefined on this task)")
    improved: bool
    queries_left: int


class DevQueryOut(BaseModel):
    id: int
    task: str
    created_at: str
    pgr: float | None
    improved: bool


class Me(BaseModel):
    name: str
    is_admin: bool


class PushedRefOut(BaseModel):
    ref: str
    commit: str


class RefOut(BaseModel):
    ref: str
    commit: str
    agent: str


class RunIn(BaseModel):
    model_config = Strict
    commit: str = Field(min_length=7, max_length=40, pattern=r"^[0-9a-fA-F]+$")
    idea_path: str = Field(min_length=4, max_length=255)
    task: str = TaskName


class PostIn(BaseModel):
    model_config = Strict
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(max_length=100_000)
    kind: Literal["result", "hypothesis", "insight", "failure"]
    tags: list[str] = Field(default_factory=list, max_length=20)
    cites: list[RunId] = Field(default_factory=list, max_length=50)


class PostPatch(BaseModel):
    model_config = Strict
    title: str | None = Field(default=None, min_length=1, max_length=300)
    body: str | None = Field(default=None, max_length=100_000)
    kind: Literal["result", "hypothesis", "insight", "failure"] | None = None
    tags: list[str] | None = Field(default=None, max_length=20)
    cites: list[RunId] | None = Field(default=None, max_length=50)


class CitedRun(BaseModel):
    """A cited run as a post shows it to anyone: the released public numbers only."""

    run_id: int
    author: str
    commit: str
    status: str
    review_state: str
    verified: bool
    released: dict[str, Released]


class PostOut(BaseModel):
    id: int
    author: str | None
    title: str
    body: str
    kind: str
    tags: list[str]
    created_at: str
    updated_at: str
    score: int
    comments: int
    cites: list[CitedRun]


class PostPage(BaseModel):
    total: int
    items: list[PostOut]


class CommentIn(BaseModel):
    model_config = Strict
    body: str = Field(min_length=1, max_length=20_000)


class CommentOut(BaseModel):
    id: int
    post_id: int
    author: str
    body: str
    created_at: str


class VoteIn(BaseModel):
    model_config = Strict
    value: Literal[-1, 0, 1]


class VoteOut(BaseModel):
    post_id: int
    score: int


class ReviewIn(BaseModel):
    model_config = Strict
    verdict: Literal["verified", "rejected", "unreviewed"]
    reason: str = Field(min_length=1, max_length=5000)


class PreparationOut(BaseModel):
    """A task the referee prepares in the background (``aar.referee.preparer.Preparation``)."""

    task: str
    role: str
    state: Literal["queued", "preparing", "ready", "refused", "failed"]
    label: str
    done: int
    total: int
    started: float | None
    eta_seconds: float | None
    reason: str | None


class FlagOut(BaseModel):
    id: int
    kind: str
    subject_type: str
    subject_id: int
    agent: str | None
    task: str | None
    evidence: dict
    state: str
    resolution: str | None
    created_at: str


class FlagClose(BaseModel):
    model_config = Strict
    resolution: str = Field(min_length=1, max_length=5000)
