"""Reproduce a leaderboard: run finished official runs again from their commits and compare.

Why: a score is only as good as its reproducibility. A lab that moves official runs to another
executor (Ray, other hosts, another GPU), upgrades a dependency, or doubts a surprising run wants to
know that the same commit gives the same predictions and therefore the same scores. This re-runs each
chosen ``done`` run's units (every task x seed it was scored on) through any executor, exactly as
:meth:`RunService.execute` would, and compares (1) each unit's predictions with the ones the referee
recorded, bit for bit, and (2) the scores recomputed from them with the stored results. The built-in
baselines are recomputed in process (they never go through an executor), through the same units.

Read-only: nothing is written to the database, so it can run beside a serving referee; the released
(public) scores are not recomputed, since they depend on the order runs reached the Ladder.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from sqlalchemy import select

from aar.referee import release
from aar.referee.db import Agent, Run
from aar.referee.executors import Executor
from aar.referee.runs import RunService
from aar.referee.units import Key, RunUnit, pack_code, plan_units, stack_units


@dataclass
class RunCheck:
    """One run reproduced: what differed (empty lists and ``error`` None mean identical)."""

    run_id: int
    label: str  # "author:idea_path" or "baseline:method"
    tasks: list[str]
    units: int = 0
    max_abs_diff: float = 0.0  # over every prediction of every unit
    units_differ: list[str] = field(default_factory=list)  # "task/seed/tag" whose predictions changed
    results_differ: list[str] = field(default_factory=list)  # "task/part" whose scores changed
    error: str | None = None  # the run could not be reproduced at all (a unit failed, no stored units)
    ran_on: list[str] = field(default_factory=list)  # where the units ran again (Ray node ids or hosts)

    @property
    def identical(self) -> bool:
        return self.error is None and not self.units_differ and not self.results_differ


def _canonical(obj: object) -> object:
    """Scores as stored (JSON, NaN as null), so a recomputed dict compares equal to the stored one."""
    return json.loads(json.dumps(obj, allow_nan=False, default=float)) if obj is not None else None


def _clean_nan(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_nan(v) for v in obj]
    return obj


def _diff_results(stored: dict, again: dict) -> list[str]:
    out = []
    for task in sorted(set(stored) | set(again)):
        s, a = stored.get(task) or {}, again.get(task) or {}
        for part in sorted(set(s) | set(a)):
            if _canonical(_clean_nan(s.get(part))) != _canonical(_clean_nan(a.get(part))):
                out.append(f"{task}/{part}")
    return out


def _stored_units(runs: RunService, run_id: int) -> dict[Key, np.ndarray]:
    with runs.db.read() as session:
        rows = session.scalars(select(RunUnit).where(RunUnit.run_id == run_id)).all()
        return {(r.task, r.seed, r.tag): np.frombuffer(r.predictions, dtype=np.float64).copy() for r in rows}


def _compare_units(check: RunCheck, stored: dict[tuple, np.ndarray], again: dict[tuple, np.ndarray]) -> None:
    """Record in ``check`` every key whose arrays differ (missing on one side, another shape, or another
    value) and the largest absolute difference among those of equal shape."""
    for key in sorted(set(stored) | set(again)):
        s, a = stored.get(key), again.get(key)
        name = "/".join(str(k) for k in key if k != "") or "?"
        if s is None or a is None or s.shape != a.shape:
            check.units_differ.append(name)
            continue
        diff = float(np.max(np.abs(s - a))) if s.size else 0.0
        check.max_abs_diff = max(check.max_abs_diff, diff)
        if not np.array_equal(s, a):
            check.units_differ.append(name)


def reproduce_run(runs: RunService, executor: Executor, run: Run, author: str = "?") -> RunCheck:
    """Re-run one done user run through ``executor`` and compare it with its record."""
    tasks = list(run.results or {})
    check = RunCheck(run.id, f"{author}:{run.idea_path}", tasks)
    stored = _stored_units(runs, run.id)
    if not stored:
        check.error = "no recorded units (a run scored before units were recorded cannot be compared)"
        return check
    keys = [k for k in plan_units(tasks, run.seeds) if k in stored] + [k for k in stored if k[2]]
    keys = list(dict.fromkeys(keys))  # the determinism re-run too, when it was recorded
    root = runs.config.scratch_root / f"reproduce-{run.id}-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir(parents=True, exist_ok=False)
        root.chmod(0o711)
        runs.code.checkout(run.commit, root / "code")
        code = pack_code(root / "code")
        units = [runs._unit(run.id, run.idea_path, k) for k in keys]  # the inputs execute() builds
        again: dict[Key, np.ndarray] = {}
        outputs = executor.run_units(code, units)
        try:
            for unit, out in outputs:
                if out.predictions is None:
                    why = out.info.get("error") or out.info
                    check.error = f"unit {unit.task}/{unit.seed}{unit.tag} failed: {why}"
                    break
                again[unit.key] = np.asarray(out.predictions, dtype=np.float64)
                where = out.info.get("ray_node") or out.info.get("host")
                if where and where not in check.ran_on:
                    check.ran_on.append(where)
        finally:
            outputs.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    check.units = len(again)
    if check.error:
        return check
    _compare_units(check, stored, again)
    preds = stack_units({k: (v, {}) for k, v in again.items()}, tasks, run.seeds)
    results = {t: release.score_parts(runs.data.task(t), preds[t], runs.vanilla(t)) for t in tasks}
    check.results_differ = _diff_results(run.results or {}, results)
    return check


def reproduce_baseline(runs: RunService, run: Run) -> RunCheck:
    """Recompute a built-in baseline in process (its units, as ``ensure_baselines`` runs them)."""
    method = run.commit.removeprefix("builtin:")
    tasks = list(run.results or {})
    check = RunCheck(run.id, f"baseline:{method}", tasks, units=len(tasks) * run.seeds)
    preds = runs._baseline_predictions(method, tasks)
    with runs.db.read() as session:
        stored = {(t,): release.run_predictions(session, run.id, t) for t in tasks}
    _compare_units(check, {k: v for k, v in stored.items() if v is not None}, {(t,): preds[t] for t in tasks})
    check.results_differ = _diff_results(run.results or {}, runs._baseline_results(method, preds))
    return check


def reproduce(
    runs: RunService,
    executor: Executor,
    run_ids: list[int] | None = None,
    *,
    baselines: bool = True,
    on_run: Callable[[RunCheck], None] | None = None,
) -> list[RunCheck]:
    """Reproduce the ``done`` runs (all, or ``run_ids``) in id order; baselines first (vanilla, which
    every run's comparison uses, is recomputed before anything is compared with it)."""
    with runs.db.read() as session:
        q = select(Run).where(Run.status == "done").order_by(Run.is_baseline.desc(), Run.id)
        if run_ids:
            q = q.where(Run.id.in_(run_ids))
        chosen = session.scalars(q).all()
        for r in chosen:
            session.expunge(r)
        names = dict(session.execute(select(Agent.id, Agent.name)).all())
    checks = []
    for run in chosen:
        if run.is_baseline and not baselines:
            continue
        if run.is_baseline:
            check = reproduce_baseline(runs, run)
        else:
            check = reproduce_run(runs, executor, run, names.get(run.author_id or run.agent_id, "?"))
        checks.append(check)
        if on_run is not None:
            on_run(check)
    return checks


def summary(checks: list[RunCheck]) -> dict:
    """JSON-ready: counts, the largest prediction difference, and every run that differed."""
    return {
        "runs": len(checks),
        "baselines": sum(c.label.startswith("baseline:") for c in checks),
        "units": sum(c.units for c in checks),
        "identical": sum(c.identical for c in checks),
        "differ": [asdict(c) for c in checks if not c.identical],
        "max_abs_diff": max((c.max_abs_diff for c in checks), default=0.0),
        "ran_on": sorted({w for c in checks for w in c.ran_on}),
    }
