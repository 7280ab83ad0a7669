"""Dev scoring: validation, the per-agent budget, the Ladder, and storage of every query.

What leaves this module is ``{task, pgr, improved, queries_left}``: a released PGR that changes only
when the Ladder's paired test says the agent significantly beat its own best (rounded to the test's
resolution). Every agent's ladder starts at the weak teacher (PGR 0 by definition), so random or
label-probing submissions, which are far below the teacher, never release anything.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from aar.referee import audit, integrity
from aar.referee.auth import Identity
from aar.referee.datadir import DataStore, TaskData
from aar.referee.db import Database, DevQuery, LadderState
from aar.referee.errors import ApiError
from aar.referee.ladder import ladder_step, zero_one_loss

RECENT = 20  # queries compared against for the probing detector


@dataclass(frozen=True)
class DevAnswer:
    task: str
    pgr: float | None
    improved: bool
    queries_left: int


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def to_pgr(acc: float, weak_acc: float, ceiling_acc: float, defined: bool) -> float | None:
    if not defined or ceiling_acc <= weak_acc:
        return None
    return round((acc - weak_acc) / (ceiling_acc - weak_acc), 4)


class DevScorer:
    def __init__(self, db: Database, data: DataStore, *, budget_per_day: int, z: float):
        self.db = db
        self.data = data
        self.budget = budget_per_day
        self.z = z
        self._best_cache: dict[tuple[int, str], tuple[int, np.ndarray]] = {}
        self._cache_lock = threading.Lock()

    def validate(self, task: str, predictions: Mapping[str, float]) -> tuple[TaskData, np.ndarray]:
        """Predictions in dev id order, or a 422 naming the first problem."""
        if not self.data.has(task):
            raise ApiError(422, f"unknown task {task!r}; tasks: {', '.join(self.data.task_names)}")
        data = self.data.task(task)
        index = data.dev_index
        out = np.full(len(index), np.nan)
        for row_id, value in predictions.items():
            i = index.get(row_id)
            if i is None:
                raise ApiError(422, f"unknown dev id {row_id[:64]!r} for task {task!r}")
            if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ApiError(422, f"prediction for {row_id[:64]!r} must be a probability in [0, 1]")
            out[i] = value
        if len(predictions) != len(index):
            missing = len(index) - int(np.isfinite(out).sum())
            raise ApiError(
                422, f"predictions must cover every dev id of {task!r} exactly once; {missing} missing"
            )
        return data, out

    def evaluate(self, who: Identity, task: str, predictions: Mapping[str, float], path: str) -> DevAnswer:
        data, probs = self.validate(task, predictions)
        labels = data.labels("dev")
        weak_acc, ceiling_acc, defined = data.dev_reference
        new_loss = zero_one_loss(probs, labels)
        hard = probs >= 0.5
        weak_agreement = float((hard == (data.weak("dev") >= 0.5)).mean())
        day = today()
        with self.db.write() as session:
            used = integrity.dev_query_count(session, who.id, task, day)
            if used >= self.budget:
                raise ApiError(
                    429, f"dev query budget spent: {self.budget} per task per day; resets at 00:00 UTC"
                )
            state = session.get(LadderState, (who.id, task))
            if state is None:
                state = LadderState(
                    agent_id=who.id,
                    task=task,
                    best_query_id=None,
                    released_accuracy=weak_acc,
                    released_pgr=to_pgr(weak_acc, weak_acc, ceiling_acc, defined),
                )
                session.add(state)
            best_loss = self._best_loss(session, who.id, task, state, data)
            decision = ladder_step(new_loss, best_loss, state.released_accuracy, z_threshold=self.z)
            recent = session.scalars(
                select(DevQuery.hard_bits)
                .where(DevQuery.agent_id == who.id, DevQuery.task == task)
                .order_by(DevQuery.id.desc())
                .limit(RECENT)
            ).all()
            released_pgr = (
                to_pgr(decision.released_accuracy, weak_acc, ceiling_acc, defined)
                if decision.improved
                else state.released_pgr
            )
            query = DevQuery(
                agent_id=who.id,
                task=task,
                day=day,
                predictions=probs.astype(np.float64).tobytes(),
                hard_bits=np.packbits(hard.astype(np.uint8)).tobytes(),
                accuracy=1.0 - float(new_loss.mean()),
                z=decision.z if math.isfinite(decision.z) else 1e9,
                released_pgr=released_pgr,
                improved=decision.improved,
                min_diff_rows=integrity.min_diff_rows(hard, list(recent), len(hard)),
                weak_agreement=weak_agreement,
            )
            session.add(query)
            session.flush()
            if decision.improved:
                state.best_query_id = query.id
                state.released_accuracy = decision.released_accuracy
                state.released_pgr = released_pgr
            integrity.check_dev_probing(session, who.id, task)
            audit.record(
                session,
                agent_id=who.id,
                action="dev.evaluate",
                method="POST",
                path=path,
                detail={"task": task, "query_id": query.id, "improved": decision.improved},
            )
        if decision.improved:
            with self._cache_lock:
                self._best_cache[(who.id, task)] = (query.id, new_loss)
        return DevAnswer(task, released_pgr, decision.improved, self.budget - used - 1)

    def _best_loss(self, session, agent_id: int, task: str, state: LadderState, data: TaskData) -> np.ndarray:
        """Per-item loss of the agent's best released submission (the weak teacher at the start)."""
        labels = data.labels("dev")
        if state.best_query_id is None:
            return zero_one_loss(data.weak("dev"), labels)
        cached = self._best_cache.get((agent_id, task))
        if cached and cached[0] == state.best_query_id:
            return cached[1]
        blob = session.scalar(select(DevQuery.predictions).where(DevQuery.id == state.best_query_id))
        loss = zero_one_loss(np.frombuffer(blob, dtype=np.float64), labels)
        with self._cache_lock:
            self._best_cache[(agent_id, task)] = (state.best_query_id, loss)
        return loss

    def history(self, agent_id: int, task: str | None, limit: int, offset: int) -> list[dict]:
        with self.db.read() as session:
            q = select(DevQuery).where(DevQuery.agent_id == agent_id)
            if task:
                q = q.where(DevQuery.task == task)
            rows = session.scalars(q.order_by(DevQuery.id.desc()).limit(limit).offset(offset)).all()
            return [
                {
                    "id": r.id,
                    "task": r.task,
                    "created_at": r.created_at.isoformat(),
                    "pgr": r.released_pgr,
                    "improved": r.improved,
                }
                for r in rows
            ]
