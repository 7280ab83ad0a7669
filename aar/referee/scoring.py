"""Dev scoring: validation, the budgets, the task's shared Ladder, and storage of every query.

What leaves this module is ``{task, pgr, improved, queries_left}``: the task's released PGR, which
changes only when a submission significantly beats the best released one (``aar.referee.ladder``),
and whether this submission was the one that moved it. The Ladder state and a daily budget are per
task across all researchers (colluding tokens share one ladder and one budget), on top of each
researcher's own daily budget. Only the home task (and tasks the campaign makes visible) is
dev-scored: held-out tasks never answer a dev query.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from aar.atomic import atomic_write
from aar.referee import audit, integrity
from aar.referee.auth import Identity
from aar.referee.datadir import DataStore, TaskData
from aar.referee.db import Database, DevQuery, TaskLadder
from aar.referee.errors import ApiError
from aar.referee.ladder import LadderRule, jitter_u, ladder_step, zero_one_loss
from aar.referee.release import ladder_state, to_pgr

RECENT = 20  # queries (of every researcher on the task) compared against for the flip detector
KEY_FILE = "ladder.key"


@dataclass(frozen=True)
class DevAnswer:
    task: str
    pgr: float | None
    improved: bool
    queries_left: int


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def ladder_key(data_dir: Path) -> bytes:
    """The referee's secret for the Ladder's keyed jitter, created once (0600) in the private data dir."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        atomic_write(path, secrets.token_hex(32), mode=0o600)
    key = path.read_text().strip()
    os.chmod(path, 0o600)
    return bytes.fromhex(key)


class DevScorer:
    def __init__(
        self,
        db: Database,
        data: DataStore,
        *,
        budget_per_day: int,
        task_budget_per_day: int,
        rule: LadderRule,
        key: bytes,
    ):
        self.db = db
        self.data = data
        self.budget = budget_per_day
        self.task_budget = task_budget_per_day
        self.rule = rule
        self.key = key
        self._best_cache: dict[str, tuple[int, np.ndarray]] = {}
        self._cache_lock = threading.Lock()

    def validate(self, task: str, predictions: Mapping[str, float]) -> tuple[TaskData, np.ndarray]:
        """Predictions in dev id order, or a 4xx naming the first problem."""
        if not self.data.has(task):
            raise ApiError(422, f"unknown task {task!r}; tasks: {', '.join(self.data.shown())}")
        if task not in self.data.shown():  # before loading it: a held-out task may still be being prepared
            raise ApiError(403, f"{task!r} is a held-out task: it is never dev-scored")
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
        bits = np.packbits(hard.astype(np.uint8)).tobytes()
        weak_agreement = float((hard == (data.weak("dev") >= 0.5)).mean())
        day = today()
        with self.db.write() as session:
            used = integrity.dev_query_count(session, who.id, task, day)
            if used >= self.budget:
                raise ApiError(
                    429, f"dev query budget spent: {self.budget} per task per day; resets at 00:00 UTC"
                )
            task_used = integrity.task_query_count(session, task, day)
            if task_used >= self.task_budget:
                raise ApiError(
                    429,
                    f"the dev budget of {task!r} for all researchers together is spent "
                    f"({self.task_budget} per day); resets at 00:00 UTC",
                )
            state = ladder_state(session, TaskLadder, task, weak_acc, ceiling_acc, defined)
            best_hard = self._best_hard(session, state, data)
            query_index = state.queries_since_release + 1
            decision = ladder_step(
                new_loss,
                zero_one_loss(best_hard, labels),
                state.released_accuracy,
                query_index=query_index,
                u=jitter_u(self.key, task, state.best_query_id or 0, bits),
                rule=self.rule,
            )
            recent = session.scalars(
                select(DevQuery.hard_bits)
                .where(DevQuery.task == task)
                .order_by(DevQuery.id.desc())
                .limit(RECENT)
            ).all()
            changed = hard != best_hard
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
                hard_bits=bits,
                accuracy=1.0 - float(new_loss.mean()),
                z=decision.z,
                released_pgr=released_pgr,
                improved=decision.improved,
                min_diff_rows=integrity.min_diff_rows(hard, list(recent), len(hard)),
                weak_agreement=weak_agreement,
                threshold=decision.threshold,
                changed_rows=decision.changed_rows,
                released_rows=np.packbits(changed.astype(np.uint8)).tobytes() if decision.improved else None,
                probes_released=integrity.probes_released_rows(session, who.id, task, changed),
            )
            session.add(query)
            session.flush()
            if decision.improved:
                state.best_query_id = query.id
                state.released_accuracy = decision.released_accuracy
                state.released_pgr = released_pgr
                state.queries_since_release = 0
                state.releases += 1
            else:
                state.queries_since_release = query_index
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
                self._best_cache[task] = (query.id, hard)
        left = min(self.budget - used, self.task_budget - task_used) - 1
        return DevAnswer(task, released_pgr, decision.improved, left)

    def _best_hard(self, session, state: TaskLadder, data: TaskData) -> np.ndarray:
        """Thresholded predictions of the task's best released submission (the weak teacher at first)."""
        if state.best_query_id is None:
            return data.weak("dev") >= 0.5
        cached = self._best_cache.get(state.task)
        if cached and cached[0] == state.best_query_id:
            return cached[1]
        blob = session.scalar(select(DevQuery.predictions).where(DevQuery.id == state.best_query_id))
        hard = np.frombuffer(blob, dtype=np.float64) >= 0.5
        with self._cache_lock:
            self._best_cache[state.task] = (state.best_query_id, hard)
        return hard

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
