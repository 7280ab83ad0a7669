"""Official scores, exact for the referee and released for researchers.

Every official run is scored exactly on each part of ``final`` of every task (:func:`score_parts`),
and those numbers stay with the referee (admins, the report at the end). What researchers learn is
decided by :class:`PublicRelease`: the same Ladder as dev scoring (``aar.referee.ladder``), on the
public part of each home or visible task, with one state per task shared by everyone. Why: an idea
that flips a few final predictions between runs (or between seeds) would otherwise read a few exact
labels from each run's exact accuracies; under the Ladder a run's public score is released only when
it beats the task's best released run significantly, on at least ``min_changed`` items, rounded to
the binomial resolution, and seed spread is never shown.

Per-item losses are averaged over the run's seeds (a fraction in [0, 1] per item), so the paired test
compares the runs as the PGR does: all seeds on the same items.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.contract import Released
from aar.referee.datadir import TaskData
from aar.referee.db import PublicLadder, RunPrediction
from aar.referee.ladder import LadderRule, jitter_u, ladder_step, zero_one_loss
from aar.w2s.pgr import compare_methods, pgr_stats


def _clean(v):  # noqa: ANN001, ANN202
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def part_score(labels: np.ndarray, weak: np.ndarray, ceiling: np.ndarray, preds: np.ndarray) -> dict:
    """PGR statistics as stored (``aar.contract.PartScore``): NaN written as null."""
    return {k: _clean(v) for k, v in pgr_stats(labels, weak, ceiling, preds).to_dict().items()}


def score_parts(td: TaskData, preds: np.ndarray, vanilla: np.ndarray | None) -> dict:
    """A run's exact result on one task (``aar.contract.TaskResult``): each part of final, and the
    paired comparison against vanilla's predictions (``None``: this is vanilla, or it is missing)."""
    out: dict = {"role": td.role, "public": None, "private": None, "vs_vanilla": {}}
    labels, weak, ceiling = td.labels("final"), td.weak("final"), td.ceiling("final")
    for part in td.parts:
        i = td.part_index(part)
        out[part] = part_score(labels[i], weak[i], ceiling[i], preds[:, i])
        if vanilla is not None:
            cmp = compare_methods(labels[i], weak[i], ceiling[i], preds[:, i], vanilla[:, i])
            out["vs_vanilla"][part] = {
                "acc_diff": cmp.acc_diff,
                "acc_diff_ci": _clean(list(cmp.acc_diff_ci)),
                "pgr_diff": _clean(cmp.pgr_diff),
                "pgr_diff_ci": _clean(list(cmp.pgr_diff_ci)),
                "p_value": cmp.p_value,
            }
    return out


def to_pgr(acc: float, weak_acc: float, ceiling_acc: float, defined: bool) -> float | None:
    if not defined or ceiling_acc <= weak_acc:
        return None
    return round((acc - weak_acc) / (ceiling_acc - weak_acc), 4)


def ladder_state(
    session: Session, table: type, task: str, weak_acc: float, ceiling_acc: float, defined: bool
):  # noqa: ANN201
    """The task's Ladder state in ``table`` (``TaskLadder`` for dev, ``PublicLadder`` for official
    public scores), created at the weak teacher's score the first time it is asked for."""
    state = session.get(table, task)
    if state is None:
        state = table(
            task=task,
            released_accuracy=weak_acc,
            released_pgr=to_pgr(weak_acc, weak_acc, ceiling_acc, defined),
            queries_since_release=0,
            releases=0,
        )
        session.add(state)
    return state


def run_predictions(session: Session, run_id: int, task: str) -> np.ndarray | None:
    """A stored run's (seeds x final items) predictions on one task, or None."""
    rows = session.execute(
        select(RunPrediction.seed, RunPrediction.predictions)
        .where(RunPrediction.run_id == run_id, RunPrediction.task == task)
        .order_by(RunPrediction.seed)
    ).all()
    if not rows:
        return None
    return np.stack([np.frombuffer(blob, dtype=np.float64) for _, blob in rows])


class PublicRelease:
    """The official Ladder of each shown task's public part (state in ``public_ladder``)."""

    def __init__(self, rule: LadderRule, key: bytes):
        self.rule = rule
        self.key = key
        self._best: dict[str, tuple[int, np.ndarray]] = {}
        self._lock = threading.Lock()

    def release(self, session: Session, td: TaskData, run_id: int, preds: np.ndarray) -> dict:
        """Decide what researchers learn of this run on ``td``'s public part; updates the task's
        state in ``session`` (the caller's transaction, which also stores the run)."""
        i = td.part_index("public")
        labels = td.labels("final")[i]
        mine = preds[:, i]
        new_loss = zero_one_loss(mine, labels).mean(axis=0)
        weak_acc, ceiling_acc, defined = td.public_reference
        state = ladder_state(session, PublicLadder, td.name, weak_acc, ceiling_acc, defined)
        best_loss = self._best_loss(session, state, td, labels)
        bits = np.packbits(mine >= 0.5).tobytes()
        query_index = (state.queries_since_release or 0) + 1
        decision = ladder_step(
            new_loss,
            best_loss,
            state.released_accuracy,
            query_index=query_index,
            u=jitter_u(self.key, "public", td.name, state.best_run_id or 0, bits),
            rule=self.rule,
        )
        gap = ceiling_acc - weak_acc
        resolution = round(decision.resolution / gap, 4) if defined and gap > 0 else 0.0
        pgr, ci = None, None
        if decision.improved:
            pgr = to_pgr(decision.released_accuracy, weak_acc, ceiling_acc, defined)
            if pgr is not None and resolution > 0:
                ci = _outward(
                    pgr_stats(labels, td.weak("final")[i], td.ceiling("final")[i], mine).pgr_ci,
                    pgr,
                    resolution,
                )
            state.best_run_id = run_id
            state.released_accuracy = decision.released_accuracy
            state.released_pgr = pgr
            state.queries_since_release = 0
            state.releases = (state.releases or 0) + 1
            with self._lock:
                self._best[td.name] = (run_id, new_loss)
        else:
            state.queries_since_release = query_index
        return Released(
            pgr=pgr, pgr_ci=ci, improved=decision.improved, best_pgr=state.released_pgr, resolution=resolution
        ).model_dump(mode="json")

    def _best_loss(
        self, session: Session, state: PublicLadder, td: TaskData, labels: np.ndarray
    ) -> np.ndarray:
        """Per-item loss of the task's best released run on public (the weak teacher at first)."""
        i = td.part_index("public")
        if state.best_run_id is None:
            return zero_one_loss(td.weak("final")[i], labels)
        with self._lock:
            cached = self._best.get(td.name)
        if cached and cached[0] == state.best_run_id:
            return cached[1]
        stored = run_predictions(session, state.best_run_id, td.name)
        loss = zero_one_loss(stored[:, i], labels).mean(axis=0)  # type: ignore[index]
        with self._lock:
            self._best[td.name] = (state.best_run_id, loss)
        return loss


def _outward(ci: tuple[float, float], pgr: float, step: float) -> tuple[float | None, float | None]:
    """A CI rounded outward to the release grid (so rounding never narrows it), containing ``pgr``."""
    lo, hi = ci
    lo_r = None if lo is None or not math.isfinite(lo) else round(math.floor(lo / step) * step, 4)
    hi_r = None if hi is None or not math.isfinite(hi) else round(math.ceil(hi / step) * step, 4)
    if lo_r is not None:
        lo_r = min(lo_r, pgr)
    if hi_r is not None:
        hi_r = max(hi_r, pgr)
    return (lo_r, hi_r)
