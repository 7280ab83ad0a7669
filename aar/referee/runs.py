"""Official runs: the referee re-runs a committed idea itself, sandboxed, on ``final`` of the home task
and of every held-out task, over K seeds, and records transfer accuracy and PGR with CIs per task.

The untrusted code gets a label-free context file (``aar.w2s.idea_runner.save_context``) in a scratch
dir owned by a dedicated unprivileged uid, outside the private data dir, and runs under
``aar.sandbox`` (bubblewrap, no network, rlimits). The referee scores the returned predictions
itself. Per-seed predictions are stored for audit and never returned.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

import aar
from aar.referee import audit, integrity
from aar.referee.auth import Identity
from aar.referee.codestore import CodeStore
from aar.referee.config import RefereeConfig
from aar.referee.datadir import DataStore
from aar.referee.db import Agent, Database, Flag, Run, RunPrediction, utcnow
from aar.referee.errors import ApiError
from aar.referee.scoring import today
from aar.w2s.idea_runner import save_context
from aar.w2s.pgr import pgr_stats

log = logging.getLogger("aar.referee")
BASELINE_AGENT = "baselines"


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def score_task(
    labels: np.ndarray, weak: np.ndarray, ceiling: np.ndarray, preds: np.ndarray, role: str
) -> dict:
    stats = pgr_stats(labels, weak, ceiling, preds)
    d = {k: _clean(v) for k, v in stats.to_dict().items()}
    d["role"] = role
    return d


class RunService:
    def __init__(self, config: RefereeConfig, db: Database, data: DataStore, code: CodeStore):
        self.config = config
        self.db = db
        self.data = data
        self.code = code
        self.executor = None  # set by the app

    # -- API side ----------------------------------------------------------------------------------

    def create(self, who: Identity, commit: str, idea_path: str, task: str, path: str) -> Run:
        if not self.data.has(task):
            raise ApiError(422, f"unknown task {task!r}; tasks: {', '.join(self.data.task_names)}")
        if idea_path.startswith("/") or ".." in idea_path.split("/") or not idea_path.endswith(".py"):
            raise ApiError(422, "idea_path must be a relative path to a .py file inside the commit")
        full = self.code.resolve(commit)
        if not self.code.has_file(full, idea_path):
            raise ApiError(422, f"commit {full[:12]} has no file {idea_path!r}")
        day = today()
        with self.db.write() as session:
            used = (
                session.scalar(
                    select(func.count())
                    .select_from(Run)
                    .where(Run.agent_id == who.id, Run.day == day, Run.is_baseline.is_(False))
                )
                or 0
            )
            if used >= self.config.run_budget_per_day:
                raise ApiError(429, f"official run budget spent: {self.config.run_budget_per_day} per day")
            run = Run(
                agent_id=who.id,
                commit=full,
                idea_path=idea_path,
                task=task,
                seeds=self.config.seeds,
                day=day,
                status="queued",
            )
            session.add(run)
            session.flush()
            audit.record(
                session,
                agent_id=who.id,
                action="runs.create",
                method="POST",
                path=path,
                detail={"run_id": run.id, "commit": full, "task": task},
            )
        if self.executor is not None:
            self.executor.submit(run.id)
        return run

    def cancel(self, who: Identity, run_id: int, path: str) -> Run:
        with self.db.write() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise ApiError(404, f"no run {run_id}")
            if run.agent_id != who.id and not who.is_admin:
                raise ApiError(403, "only the run's author (or an admin) may cancel it")
            if run.status != "queued":
                raise ApiError(409, f"run {run_id} is {run.status}; only queued runs can be cancelled")
            run.status = "cancelled"
            run.finished_at = utcnow()
            audit.record(
                session,
                agent_id=who.id,
                action="runs.cancel",
                method="DELETE",
                path=path,
                detail={"run_id": run_id},
            )
            return run

    def review(self, reviewer_id: int | None, run_id: int, verdict: str, reason: str, path: str) -> Run:
        if verdict not in ("verified", "rejected", "unreviewed"):
            raise ApiError(422, "verdict must be verified, rejected or unreviewed")
        with self.db.write() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise ApiError(404, f"no run {run_id}")
            run.review_state = verdict
            run.review_reason = reason
            run.reviewer_id = reviewer_id
            for flag in session.scalars(
                select(Flag).where(
                    Flag.subject_type == "run", Flag.subject_id == run_id, Flag.state == "open"
                )
            ):
                flag.state = "closed"
                flag.resolution = f"{verdict}: {reason}"
                flag.updated_at = utcnow()
            audit.record(
                session,
                agent_id=reviewer_id,
                action="runs.review",
                method="POST",
                path=path,
                detail={"run_id": run_id, "verdict": verdict, "reason": reason},
            )
            return run

    def pending(self) -> list[int]:
        """Runs to (re)start after a restart: queued ones, and running ones whose process died."""
        with self.db.write() as session:
            rows = session.scalars(select(Run).where(Run.status.in_(("queued", "running")))).all()
            for run in rows:
                run.status = "queued"
            return [r.id for r in rows]

    # -- execution ---------------------------------------------------------------------------------

    def execute(self, run_id: int) -> None:
        """Run an official run to completion; every outcome is recorded, nothing raises."""
        with self.db.write() as session:
            run = session.get(Run, run_id)
            if run is None or run.status != "queued":
                return
            run.status = "running"
            run.started_at = utcnow()
            commit, idea_path, home, seeds, agent_id = (
                run.commit,
                run.idea_path,
                run.task,
                run.seeds,
                run.agent_id,
            )
        tasks = [home] + [t for t in self.data.held_out() if t != home]
        root = self.config.scratch_root / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
        sandbox_log: list[dict] = []
        try:
            root.mkdir(parents=True, exist_ok=False)
            root.chmod(0o711)
            root.parent.chmod(0o711)
            code_dir = root / "code"
            self.code.checkout(commit, code_dir)
            _make_readable(code_dir)
            preds: dict[str, np.ndarray] = {}
            for task in tasks:
                rows = []
                for seed in range(seeds):
                    out, info = self._one(root, code_dir, idea_path, task, seed)
                    sandbox_log.append(info)
                    if out is None:
                        self._fail(run_id, agent_id, info, sandbox_log)
                        return
                    rows.append(out)
                preds[task] = np.stack(rows)
            determinism = None
            if self.config.determinism_check:
                again, info = self._one(root, code_dir, idea_path, home, 0, tag="rerun")
                sandbox_log.append(info)
                determinism = float("nan") if again is None else float(np.abs(again - preds[home][0]).max())
            results = {}
            for task in tasks:
                td = self.data.task(task)
                results[task] = score_task(
                    td.labels("final"),
                    td.weak("final"),
                    td.ceiling("final"),
                    preds[task],
                    "home" if task == home else "held_out",
                )
            findings = integrity.run_findings(
                results,
                preds,
                {t: self.data.task(t).weak("final") for t in tasks},
                home,
                self.config.gap_flag,
                determinism,
            )
            with self.db.write() as session:
                run = session.get(Run, run_id)
                run.status = "done"
                run.results = results
                run.sandbox = {"backend": sandbox_log[0]["backend"], "calls": sandbox_log}
                run.finished_at = utcnow()
                for task, mat in preds.items():
                    for seed, row in enumerate(mat):
                        session.add(
                            RunPrediction(
                                run_id=run_id,
                                task=task,
                                seed=seed,
                                predictions=row.astype(np.float64).tobytes(),
                            )
                        )
                for kind, evidence in findings:
                    integrity.open_flag(
                        session,
                        kind=kind,
                        subject_type="run",
                        subject_id=run_id,
                        agent_id=agent_id,
                        task=evidence.get("task"),
                        evidence=evidence,
                    )
                if sandbox_log and sandbox_log[0]["backend"] != "bubblewrap":
                    integrity.open_flag(
                        session,
                        kind="not_sandboxed",
                        subject_type="run",
                        subject_id=run_id,
                        agent_id=agent_id,
                        task=None,
                        evidence={
                            "backend": sandbox_log[0]["backend"],
                            "why": "bubblewrap unavailable: the score is not tamper-proof",
                        },
                    )
                audit.record(
                    session,
                    agent_id=None,
                    action="runs.finish",
                    method="-",
                    path=f"/runs/{run_id}",
                    detail={"run_id": run_id, "status": "done", "flags": [k for k, _ in findings]},
                )
        except Exception as exc:  # a referee-side problem (disk, git): record it, keep serving
            log.exception("official run %s failed on the referee side", run_id)
            self._fail(
                run_id,
                agent_id,
                {"error": f"referee error: {type(exc).__name__}: {exc}"},
                sandbox_log,
                flag=False,
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _one(
        self, root: Path, code_dir: Path, idea_path: str, task: str, seed: int, tag: str = ""
    ) -> tuple[np.ndarray | None, dict]:
        from aar.sandbox import SandboxPolicy, ensure_user, make_workspace, python_binds, run_sandboxed

        td = self.data.task(task)
        uid = ensure_user(self.config.sandbox_user) if _is_root() else None
        work = make_workspace(root / f"{task}-s{seed}{tag}", uid)
        ctx_path = work / "context.npz"
        save_context(td.context("final", seed), ctx_path)
        ctx_path.chmod(0o644)
        out = work / "predictions.npy"
        policy = SandboxPolicy(
            workspace=work,
            uid=uid,
            network=False,
            ro_paths=[*python_binds(), Path(aar.__file__).resolve().parent, code_dir],
            cpu_seconds=self.config.sandbox_cpu_seconds,
            memory_bytes=self.config.sandbox_memory_bytes,
            max_processes=self.config.sandbox_max_processes,
            max_file_bytes=self.config.sandbox_max_file_bytes,
            wall_timeout=self.config.sandbox_wall_seconds,
            env={
                "PYTHONDONTWRITEBYTECODE": "1",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "PYTHONPATH": str(Path(aar.__file__).resolve().parent.parent),
            },
        )
        cmd = [
            sys.executable,
            "-m",
            "aar.w2s.idea_runner",
            str(ctx_path),
            str(code_dir / idea_path),
            str(out),
        ]
        res = run_sandboxed(cmd, policy)
        info = {
            "task": task,
            "seed": seed,
            "returncode": res.returncode,
            "timed_out": res.timed_out,
            "seconds": round(res.seconds, 3),
            "violations": res.violations,
            "backend": res.backend,
            "stderr_tail": res.stderr[-1500:],
        }
        if res.returncode != 0 or res.timed_out or not out.is_file():
            info["violations"] = res.violations + self._attempts(res.stderr, info["violations"])
            return None, info
        try:
            arr = np.load(out, allow_pickle=False)
            arr = np.asarray(arr, dtype=np.float64).reshape(-1)
        except Exception as exc:  # noqa: BLE001 (any unreadable output is the idea's failure)
            info["error"] = f"unreadable predictions: {type(exc).__name__}"
            return None, info
        if len(arr) != len(td.ids["final"]) or not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            info["error"] = "predictions are not one probability per final item"
            return None, info
        return arr, info

    def _attempts(self, stderr: str, known: list[str]) -> list[str]:
        """Referee-side reading of a failed idea's stderr: reaching for the network or for our data."""
        out = []
        if (
            any(
                s in stderr
                for s in (
                    "Network is unreachable",
                    "Connection refused",
                    "socket.gaierror",
                    "Name or service not known",
                )
            )
            and "network access" not in known
        ):
            out.append("network access")
        private = [str(self.config.data_dir.resolve()), ".cache/aar", "arrays.npz", "labels_"]
        if any(p in stderr for p in private):
            out.append("reached for the referee's private data")
        return out

    def _fail(
        self, run_id: int, agent_id: int, info: dict, sandbox_log: list[dict], flag: bool = True
    ) -> None:
        violations = info.get("violations") or []
        msg = info.get("error") or (
            f"idea failed on {info.get('task')} seed {info.get('seed')}: "
            f"exit {info.get('returncode')}"
            + (" (timed out)" if info.get("timed_out") else "")
            + (f"; sandbox: {', '.join(violations)}" if violations else "")
        )
        tail = info.get("stderr_tail") or ""
        with self.db.write() as session:
            run = session.get(Run, run_id)
            run.status = "failed"
            run.error = msg + ("\n" + tail[-1000:] if tail else "")
            run.sandbox = {"backend": info.get("backend"), "calls": sandbox_log}
            run.finished_at = utcnow()
            if flag:
                kind = "sandbox_violation" if violations or info.get("timed_out") else "run_failed"
                integrity.open_flag(
                    session,
                    kind=kind,
                    subject_type="run",
                    subject_id=run_id,
                    agent_id=agent_id,
                    task=info.get("task"),
                    evidence={
                        k: info.get(k)
                        for k in ("task", "seed", "returncode", "timed_out", "violations", "stderr_tail")
                    },
                )
            audit.record(
                session,
                agent_id=None,
                action="runs.finish",
                method="-",
                path=f"/runs/{run_id}",
                detail={"run_id": run_id, "status": "failed"},
            )

    # -- baselines ---------------------------------------------------------------------------------

    def ensure_baselines(self, methods: list[str] | None = None) -> int:
        """Score the built-in methods (trusted code, in process) once; they join the leaderboard verified."""
        from aar.w2s.methods import builtin_methods, resolve_method, validate_predictions

        names = methods or [m for m in builtin_methods() if m != "ceiling"]
        with self.db.read() as session:
            have = set(session.scalars(select(Run.commit).where(Run.is_baseline.is_(True))).all())
        todo = [m for m in names if f"builtin:{m}" not in have]
        if not todo:
            return 0
        home = self.data.home
        tasks = [home] + [t for t in self.data.held_out() if t != home]
        computed = []
        for method in todo:
            fn = resolve_method(method)
            results = {}
            for task in tasks:
                td = self.data.task(task)
                preds = np.stack(
                    [
                        validate_predictions(fn(td.context("final", s)), td.ids["final"])
                        for s in range(self.config.seeds)
                    ]
                )
                results[task] = score_task(
                    td.labels("final"),
                    td.weak("final"),
                    td.ceiling("final"),
                    preds,
                    "home" if task == home else "held_out",
                )
            computed.append((method, results))
        with self.db.write() as session:
            agent = session.scalar(select(Agent).where(Agent.name == BASELINE_AGENT))
            if agent is None:
                agent = Agent(name=BASELINE_AGENT, token_hash=f"!disabled-{uuid.uuid4().hex}", is_admin=False)
                session.add(agent)
                session.flush()
            for method, results in computed:
                session.add(
                    Run(
                        agent_id=agent.id,
                        commit=f"builtin:{method}",
                        idea_path=method,
                        task=home,
                        seeds=self.config.seeds,
                        day=today(),
                        status="done",
                        results=results,
                        is_baseline=True,
                        review_state="verified",
                        review_reason="built-in baseline",
                        started_at=utcnow(),
                        finished_at=utcnow(),
                        sandbox={"backend": "in-process (trusted built-in)"},
                    )
                )
            audit.record(
                session,
                agent_id=None,
                action="baselines.add",
                method="-",
                path="-",
                detail={"methods": [m for m, _ in computed]},
            )
        return len(computed)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def _make_readable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_symlink():
            continue
        p.chmod(0o755 if p.is_dir() else 0o644)


def run_view(run: Run, author: str) -> dict:
    """What anyone may see of a run: never the per-seed predictions."""
    return {
        "id": run.id,
        "author": author,
        "commit": run.commit,
        "idea_path": run.idea_path,
        "task": run.task,
        "seeds": run.seeds,
        "status": run.status,
        "error": run.error,
        "baseline": run.is_baseline,
        "review_state": run.review_state,
        "review_reason": run.review_reason,
        "results": run.results,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "sandbox_backend": (run.sandbox or {}).get("backend"),
    }


def dumps(obj) -> str:
    return json.dumps(obj, default=str)
