"""Official runs: the referee re-runs a committed idea itself, sandboxed, on ``final`` of the home task,
of the visible tasks and of every held-out task, over K seeds, and records PGR with CIs per task and
per part of final (public, private), each compared with vanilla (``aar.referee.release``). Researchers
learn only the released public scores; the exact ones are the admins'.

The untrusted code gets a label-free context file (``aar.w2s.idea_runner.save_context``) in a scratch
dir owned by a dedicated unprivileged uid, outside the private data dir, and runs under
``aar.sandbox`` (bubblewrap, no network, rlimits). The referee scores the returned predictions
itself. Per-seed predictions are stored for audit and never returned.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from aar.contract import IN_FLIGHT
from aar.referee import audit, credit, integrity, release
from aar.referee.auth import Identity
from aar.referee.codestore import CodeStore
from aar.referee.config import RefereeConfig
from aar.referee.datadir import DataStore
from aar.referee.db import Agent, Database, Flag, Run, RunPrediction, utcnow
from aar.referee.errors import ApiError
from aar.referee.scoring import today
from aar.referee.units import (
    Key,
    Unit,
    done_units,
    load_untrusted_npy,
    make_readable,
    pack_code,
    plan_units,
    record_unit,
    stack_units,
)
from aar.w2s.idea_runner import save_context
from aar.w2s.methods import IdeaError

log = logging.getLogger("aar.referee")
BASELINE_AGENT = "baselines"
WAIT_POLL_S = 0.5  # how often a run waiting for a task being prepared looks again


class RunService:
    def __init__(
        self,
        config: RefereeConfig,
        db: Database,
        data: DataStore,
        code: CodeStore,
        public: release.PublicRelease,
    ):
        self.config = config
        self.db = db
        self.data = data
        self.code = code
        self.public = public
        self._vanilla: dict[str, np.ndarray] = {}
        self.executor = None  # set by the app
        self.stopping = threading.Event()  # set by Referee.stop: runs waiting for a task give up their wait
        self.load_probe = os.getloadavg  # (1, 5, 15)-minute load; replaceable to simulate a busy host

    # -- API side ----------------------------------------------------------------------------------

    def create(self, who: Identity, commit: str, idea_path: str, task: str, path: str) -> Run:
        if task not in self.data.shown():
            raise ApiError(
                422, f"official runs are submitted for a task you can see: {', '.join(self.data.shown())}"
            )
        if idea_path.startswith("/") or ".." in idea_path.split("/") or not idea_path.endswith(".py"):
            raise ApiError(422, "idea_path must be a relative path to a .py file inside the commit")
        full = self.code.resolve(commit)
        if not self.code.has_file(full, idea_path):
            raise ApiError(422, f"commit {full[:12]} has no file {idea_path!r}")
        day = today()
        with self.db.write() as session:
            author_id = credit.author_of(session, full, who.id)
            self._check_quota(session, who, author_id, day)
            run = Run(
                agent_id=who.id,
                author_id=author_id,
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
                detail={"run_id": run.id, "commit": full, "task": task, "author_id": author_id},
            )
        if self.executor is not None:
            self.executor.submit(run.id)
        return run

    def _check_quota(self, session, who: Identity, author_id: int, day: str) -> None:
        """429 unless the submitter has runs and queue room left today and the idea's author has run
        time left (others' reproductions may use only ``reproduction_share`` of it)."""
        cfg = self.config
        mine = select(func.count()).select_from(Run).where(Run.agent_id == who.id, Run.is_baseline.is_(False))
        if (session.scalar(mine.where(Run.day == day)) or 0) >= cfg.run_budget_per_day:
            raise ApiError(429, f"official run budget spent: {cfg.run_budget_per_day} per day")
        if (session.scalar(mine.where(Run.status == "queued")) or 0) >= cfg.max_queued_runs:
            raise ApiError(
                429, f"{cfg.max_queued_runs} of your official runs are queued already; wait for one to start"
            )
        charged = select(func.coalesce(func.sum(Run.seconds), 0.0)).where(
            Run.author_id == author_id, Run.day == day
        )
        if float(session.scalar(charged) or 0.0) >= cfg.run_seconds_per_day:
            raise ApiError(
                429,
                f"the idea's author has spent its official run time today ({cfg.run_seconds_per_day:.0f} s)",
            )
        if author_id != who.id:
            by_others = float(session.scalar(charged.where(Run.agent_id != author_id)) or 0.0)
            if by_others >= cfg.reproduction_share * cfg.run_seconds_per_day:
                raise ApiError(
                    429, "reproductions of this author's ideas have used their share of its run time today"
                )

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
        """Runs to (re)start after a restart: queued ones, and running or waiting ones whose process died."""
        with self.db.write() as session:
            rows = session.scalars(select(Run).where(Run.status.in_(IN_FLIGHT))).all()
            for run in rows:
                run.status = "queued"
            return [r.id for r in rows]

    def claim_next(self) -> int | None:
        """Mark the next run ``running`` and return its id: one queue per submitter, served in turn
        (the submitter whose last run started longest ago goes first), oldest run first within it.
        So one researcher's slow runs delay another's by at most the run in progress per worker."""
        with self.db.write() as session:
            queued = session.execute(
                select(Run.id, Run.agent_id).where(Run.status == "queued").order_by(Run.id)
            ).all()
            if not queued:
                return None
            agents = {agent for _, agent in queued}
            last = dict(
                session.execute(
                    select(Run.agent_id, func.max(Run.started_at))
                    .where(Run.agent_id.in_(agents), Run.started_at.is_not(None), Run.status != "queued")
                    .group_by(Run.agent_id)
                ).all()
            )
            first = {}
            for run_id, agent in queued:
                first.setdefault(agent, run_id)
            agent = min(agents, key=lambda a: (last.get(a) is not None, last.get(a) or 0, first[a]))
            run = session.get(Run, first[agent])
            run.status = "running"
            run.started_at = utcnow()
            run.attempts = (run.attempts or 0) + 1
            return run.id

    # -- execution ---------------------------------------------------------------------------------

    def execute(self, run_id: int) -> None:
        """Drive an official run to completion: its units go to the executor task by task (a held-out
        task still being prepared is not dispatched until it is ready), the outputs are recorded unit
        by unit (a restarted run reuses them), and the referee alone scores. Nothing raises."""
        with self.db.write() as session:
            run = session.get(Run, run_id)
            if run is None or run.status not in IN_FLIGHT:
                return
            if run.status == "queued":  # not claimed through claim_next (direct call)
                run.status = "running"
                run.started_at = utcnow()
                run.attempts = (run.attempts or 0) + 1
            commit, idea_path, home, seeds, agent_id, attempts = (
                run.commit,
                run.idea_path,
                run.task,
                run.seeds,
                run.author_id or run.agent_id,  # flags and run time go to the idea's author
                run.attempts,
            )
        shown = [home, *[t for t in self.data.shown() if t != home]]
        tasks = shown + [t for t in self.data.official_tasks() if t not in shown]  # held-out ones last
        root = self.config.scratch_root / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
        sandbox_log: list[dict] = []
        try:
            root.mkdir(parents=True, exist_ok=False)
            root.chmod(0o711)
            root.parent.chmod(0o711)
            code_dir = root / "code"
            self.code.checkout(commit, code_dir)
            code = pack_code(code_dir)
            done = done_units(self.db, run_id)  # units of an earlier attempt of this run: never run again
            preds: dict[str, np.ndarray] = {}
            rerun = self.config.determinism_check
            todo = list(tasks)
            while todo:
                batch = [t for t in todo if self.scorable(t)]
                if not batch:
                    if all(t in preds for t in shown):
                        self._release_early(run_id, preds)  # first result first: researchers learn it now
                    if not self._await_task(run_id, todo[0]):
                        todo.pop(0)  # refused or failed while being prepared: not an official task any more
                    continue
                keys = plan_units(batch, seeds, rerun_of=home if rerun and home in batch else None)
                outcome = self._run_units(run_id, code, idea_path, keys, done, sandbox_log)
                if outcome is not None:
                    info = outcome
                    if info.get("lost"):  # the cluster lost a unit after its retries: not the author's fault
                        self._fail(run_id, agent_id, info, sandbox_log, flag=False)
                    elif info.get("timed_out") and self.overloaded():
                        if attempts <= self.config.load_retries:
                            self._requeue(run_id, info, sandbox_log)
                        else:  # the host's fault, not the author's: failed, not flagged
                            info["error"] = f"timed out {attempts} times while the referee was overloaded"
                            self._fail(run_id, agent_id, info, sandbox_log, flag=False)
                    else:
                        self._fail(run_id, agent_id, info, sandbox_log)
                    return
                preds.update(stack_units(done, batch, seeds))
                todo = [t for t in todo if t not in batch]
            tasks = [t for t in tasks if t in preds]
            determinism = None
            if rerun:
                again = done.get((home, 0, "rerun"))
                determinism = (
                    float("nan") if again is None else float(np.abs(again[0] - preds[home][0]).max())
                )
            self._finish(run_id, agent_id, home, tasks, preds, determinism, sandbox_log, attempts)
        except _Stopping:  # the referee is stopping: the run stays in flight, re-queued at the next start
            log.info("official run %s left in flight: the referee is stopping", run_id)
        except Exception as exc:  # a referee-side problem (disk, git): record it, keep serving
            if self.stopping.is_set():  # e.g. the executor shut down under us: resumed at the next start
                log.info("official run %s interrupted by the referee stopping: %s", run_id, exc)
                return
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

    def _run_units(
        self,
        run_id: int,
        code: bytes,
        idea_path: str,
        keys: list[Key],
        done: dict[Key, tuple[np.ndarray, dict]],
        sandbox_log: list[dict],
    ) -> dict | None:
        """Run the units in ``keys`` not yet in ``done`` through the executor; record each output as it
        comes (``done`` gains it). Returns the first failure's info in plan order, or None."""
        for key in keys:
            if key in done:
                sandbox_log.append(done[key][1])  # charged once, from the attempt that ran it
        units = [self._unit(run_id, idea_path, key) for key in keys if key not in done]
        if not units:
            return None
        if self.executor is None:
            raise RuntimeError("no executor to run units")
        failures: dict[Key, dict] = {}
        outputs = self.executor.run_units(code, units)
        try:
            for unit, out in outputs:
                if self.stopping.is_set():
                    raise _Stopping
                info = dict(out.info)
                arr = out.predictions
                if arr is not None:
                    problem = _check_predictions(arr, unit.n_items)
                    if problem:
                        info["error"] = problem
                        arr = None
                if arr is None:
                    info["violations"] = list(info.get("violations") or []) + self._attempts(
                        out.stderr, list(info.get("violations") or [])
                    )
                    sandbox_log.append(info)
                    failures[unit.key] = info
                    break  # the run fails on its first failed unit: the rest are abandoned
                done[unit.key] = record_unit(self.db, run_id, unit.key, arr, info)
                sandbox_log.append(done[unit.key][1])
        finally:
            outputs.close()
        if self.stopping.is_set():
            raise _Stopping
        return next(iter(failures.values()), None)

    def _unit(self, run_id: int, idea_path: str, key: Key) -> Unit:
        """A unit's inputs: the task's label-free ``final`` context for the seed and the sandbox it needs."""
        task, seed, tag = key
        td = self.data.task(task)
        with tempfile.TemporaryDirectory(dir=self.config.scratch_root) as tmp:
            save_context(td.context("final", seed), Path(tmp) / "context.npz")
            context = (Path(tmp) / "context.npz").read_bytes()
        student = _student_sandbox(td.student_spec)
        cfg = self.config
        text_tier = td.student_spec is not None and td.student_spec.reads_texts
        return Unit(
            run_id=run_id,
            task=task,
            seed=seed,
            tag=tag,
            idea_path=idea_path,
            context=context,
            n_items=len(td.ids["final"]),
            sandbox={
                "user": cfg.sandbox_user,
                "ro_paths": [str(p) for p in student["ro_paths"]],
                "address_space_bytes": student["address_space_bytes"],
                "env": student["env"],
                "gpus": cfg.sandbox_gpus,
                "cpu_seconds": cfg.sandbox_cpu_seconds,
                "memory_bytes": cfg.sandbox_memory_bytes,
                "max_processes": cfg.sandbox_max_processes,
                "max_file_bytes": cfg.sandbox_max_file_bytes,
                "wall_seconds": cfg.sandbox_wall_seconds,
            },
            gpus=1 if cfg.sandbox_gpus and text_tier else 0,
            memory_bytes=cfg.sandbox_memory_bytes,
        )

    def _finish(
        self,
        run_id: int,
        agent_id: int,
        home: str,
        tasks: list[str],
        preds: dict[str, np.ndarray],
        determinism: float | None,
        sandbox_log: list[dict],
        attempt: int,
    ) -> None:
        """Score and record a run whose units are all done, once: a run no longer in flight, or claimed
        again since this attempt began (a referee that restarted while this one still ran), is left."""
        results = {t: release.score_parts(self.data.task(t), preds[t], self.vanilla(t)) for t in tasks}
        findings = integrity.run_findings(
            results,
            preds,
            {t: self.data.task(t).weak("final") for t in tasks},
            home,
            self.config.gap_flag,
            determinism,
        )
        backend = sandbox_log[0].get("backend") if sandbox_log else None
        with self.db.write() as session:
            run = session.get(Run, run_id)
            if run.status not in IN_FLIGHT or run.attempts != attempt:  # another attempt owns it
                log.info("official run %s: attempt %s superseded, not scored again", run_id, attempt)
                return
            run.status = "done"
            run.results = results
            run.sandbox = {"backend": backend, "calls": sandbox_log}
            run.seconds = _seconds(sandbox_log)
            run.finished_at = utcnow()
            _store_predictions(session, run_id, preds)
            probe = integrity.official_probe(session, run_id, home, preds[home], self.public.rule)
            if probe is not None:
                findings.append(("official_probing", probe))
            if run.released is None:  # not already released while the run waited for a task
                run.released = self._release(session, run_id, preds)
            for kind, evidence in findings:
                _flag_run(session, kind, run_id, agent_id, evidence.get("task"), evidence)
            if backend is not None and backend != "bubblewrap":
                why = "bubblewrap unavailable: the score is not tamper-proof"
                _flag_run(session, "not_sandboxed", run_id, agent_id, None, {"backend": backend, "why": why})
            audit.record(
                session,
                agent_id=None,
                action="runs.finish",
                method="-",
                path=f"/runs/{run_id}",
                detail={"run_id": run_id, "status": "done", "flags": [k for k, _ in findings]},
            )

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

    def _release_early(self, run_id: int, preds: dict[str, np.ndarray]) -> None:
        """Release the shown tasks' public scores before the run waits for a held-out task still being
        prepared: what researchers learn of a run depends on the shown tasks only. Once per run."""
        with self.db.write() as session:
            run = session.get(Run, run_id)
            if run.released is not None:
                return
            run.released = self._release(session, run_id, preds)
            audit.record(
                session,
                agent_id=None,
                action="runs.release",
                method="-",
                path=f"/runs/{run_id}",
                detail={"run_id": run_id, "before": "held-out tasks still being prepared"},
            )

    def scorable(self, task: str) -> bool:
        """Can a run be scored on ``task`` now? Its data is ready and, where the built-in baselines
        exist, vanilla's predictions on it too (every run is compared with vanilla)."""
        if not self.data.ready(task):
            return False
        if self.vanilla(task) is not None:
            return True
        with self.db.read() as session:
            return session.scalar(select(Run.id).where(Run.is_baseline.is_(True)).limit(1)) is None

    def _await_task(self, run_id: int, task: str) -> bool:
        """Wait (status ``waiting``) while ``task`` is being prepared in the background (first result
        first); False if its preparation was refused or failed, so the run goes on without it."""
        if self.scorable(task):
            return True
        self._set_status(run_id, "waiting")
        try:
            while not self.scorable(task):
                if self.data.refused(task):
                    return False
                if self.stopping.wait(WAIT_POLL_S):
                    raise _Stopping
        finally:
            if not self.stopping.is_set():
                self._set_status(run_id, "running")
        return True

    def _set_status(self, run_id: int, status: str) -> None:
        with self.db.write() as session:
            session.get(Run, run_id).status = status

    def overloaded(self) -> bool:
        """Is the host busier than its cores (1-minute load average)? A time-out then is the load's."""
        return self.load_probe()[0] > (os.cpu_count() or 1)

    def _requeue(self, run_id: int, info: dict, sandbox_log: list[dict]) -> None:
        """Put a run timed out by load back in the queue (its author is not charged or flagged)."""
        with self.db.write() as session:
            run = session.get(Run, run_id)
            run.status = "queued"
            run.sandbox = {"backend": info.get("backend"), "calls": sandbox_log, "requeued": "load"}
            audit.record(
                session,
                agent_id=None,
                action="runs.requeue",
                method="-",
                path=f"/runs/{run_id}",
                detail={"run_id": run_id, "why": "timed out while the host was overloaded"},
            )
        if self.executor is not None:
            self.executor.submit(run_id)

    def _fail(
        self, run_id: int, agent_id: int, info: dict, sandbox_log: list[dict], flag: bool = True
    ) -> None:
        violations = info.get("violations") or []
        task = info.get("task")
        # the first line is what researchers read (views.run_view): it never names a held-out task
        where = task if task is None or task in self.data.shown() else "a held-out task"
        msg = info.get("error") or (
            f"idea failed on {where} seed {info.get('seed')}: "
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
            run.seconds = _seconds(sandbox_log)
            run.finished_at = utcnow()
            if flag:
                kind = "sandbox_violation" if violations or info.get("timed_out") else "run_failed"
                keys = ("task", "seed", "returncode", "timed_out", "violations", "stderr_tail")
                _flag_run(session, kind, run_id, agent_id, info.get("task"), {k: info.get(k) for k in keys})
            audit.record(
                session,
                agent_id=None,
                action="runs.finish",
                method="-",
                path=f"/runs/{run_id}",
                detail={"run_id": run_id, "status": "failed"},
            )

    # -- baselines ---------------------------------------------------------------------------------

    def _release(self, session, run_id: int, preds: dict[str, np.ndarray]) -> dict:  # noqa: ANN001
        """What researchers learn of a run: the official Ladder's answer per shown task."""
        return {
            t: self.public.release(session, self.data.task(t), run_id, preds[t]) for t in self.data.shown()
        }

    def vanilla(self, task: str) -> np.ndarray | None:
        """The vanilla baseline's stored predictions on ``task`` (what every run is compared with)."""
        if task not in self._vanilla:
            with self.db.read() as session:
                run_id = session.scalar(
                    select(Run.id).where(Run.is_baseline.is_(True), Run.commit == "builtin:vanilla")
                )
                found = None if run_id is None else release.run_predictions(session, run_id, task)
            if found is None:
                return None
            self._vanilla[task] = found
        return self._vanilla[task]

    def ensure_baselines(self, methods: list[str] | None = None, *, add: bool = True) -> int:
        """Score the built-in methods (trusted code, in process) once; they join the leaderboard
        verified, vanilla first (every later run is compared with it), and pass through the official
        Ladder like any run, so their released public scores set the bar researchers see.

        Scored on the tasks that are ready; a task prepared later in the background (first result
        first) is added to every existing baseline by calling this again (``add=False``: only that).
        Returns how many baselines were scored or extended."""
        from aar.w2s.methods import builtin_methods

        names = methods or [m for m in builtin_methods() if m != "ceiling"]
        names = sorted(names, key=lambda m: m != "vanilla")
        ready = [t for t in self.data.official_tasks() if self.data.ready(t)]  # home first
        with self.db.read() as session:
            have = {
                r.commit: (r.id, set(r.results or {}))
                for r in session.scalars(select(Run).where(Run.is_baseline.is_(True))).all()
            }
        todo = [m for m in names if f"builtin:{m}" not in have]
        extend = sorted(
            (commit.removeprefix("builtin:"), run_id, [t for t in ready if t not in done])
            for commit, (run_id, done) in have.items()
            if any(t not in done for t in ready)
        )
        extend.sort(key=lambda e: e[0] != "vanilla")
        for method, run_id, tasks in extend:
            preds = self._baseline_predictions(method, tasks)
            results = self._baseline_results(method, preds)
            with self.db.write() as session:
                run = session.get(Run, run_id)
                run.results = {**(run.results or {}), **results}
                _store_predictions(session, run_id, preds)
                audit.record(
                    session,
                    agent_id=None,
                    action="baselines.extend",
                    method="-",
                    path="-",
                    detail={"method": method, "run_id": run_id, "tasks": tasks},
                )
        if not todo or not add:
            return len(extend)
        skipped = 0
        home = self.data.home
        with self.db.write() as session:
            agent = session.scalar(select(Agent).where(Agent.name == BASELINE_AGENT))
            if agent is None:
                agent = Agent(name=BASELINE_AGENT, token_hash=f"!disabled-{uuid.uuid4().hex}", is_admin=False)
                session.add(agent)
                session.flush()
            baseline_agent = agent.id
        for method in todo:
            try:
                preds = self._baseline_predictions(method, ready)
            except IdeaError as exc:  # e.g. a feature-only method on a text tier (LoRA): not a baseline here
                log.warning("baseline %s skipped: %s", method, exc)
                skipped += 1
                continue
            results = self._baseline_results(method, preds)
            with self.db.write() as session:
                run = Run(
                    agent_id=baseline_agent,
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
                session.add(run)
                session.flush()
                _store_predictions(session, run.id, preds)
                run.released = self._release(session, run.id, preds)
                audit.record(
                    session,
                    agent_id=None,
                    action="baselines.add",
                    method="-",
                    path="-",
                    detail={"methods": [method], "run_id": run.id},
                )
        return len(todo) - skipped + len(extend)

    def baselines_behind(self) -> bool:
        """Does a built-in baseline lack a task that is ready (stored by a referee that then stopped)?"""
        ready = set(self.data.ready_tasks()) - {t for t in self.data.task_names if self.data.refused(t)}
        with self.db.read() as session:
            scored = session.scalars(select(Run.results).where(Run.is_baseline.is_(True))).all()
        return any(not ready <= set(results or {}) for results in scored)

    def _baseline_predictions(self, method: str, tasks: list[str]) -> dict[str, np.ndarray]:
        """A built-in method's predictions on ``final`` of each task, one row per seed (in process)."""
        from aar.w2s.methods import resolve_method, validate_predictions

        fn = resolve_method(method)
        done: dict[Key, tuple[np.ndarray, dict]] = {}
        for task, seed, _tag in plan_units(tasks, self.config.seeds):  # the runs' units, run in process
            td = self.data.task(task)
            row = validate_predictions(fn(td.context("final", seed)), td.ids["final"])
            done[(task, seed, "")] = (np.asarray(row, dtype=np.float64), {})
        return stack_units(done, tasks, self.config.seeds)

    def _baseline_results(self, method: str, preds: dict[str, np.ndarray]) -> dict:
        """Scores per task and part, compared with vanilla (vanilla itself with nothing)."""
        return {
            t: release.score_parts(self.data.task(t), p, None if method == "vanilla" else self.vanilla(t))
            for t, p in preds.items()
        }


def _flag_run(session, kind: str, run_id: int, agent_id: int, task: str | None, evidence: dict) -> None:  # noqa: ANN001
    """Open a review item on an official run, charged to the idea's author."""
    integrity.open_flag(
        session,
        kind=kind,
        subject_type="run",
        subject_id=run_id,
        agent_id=agent_id,
        task=task,
        evidence=evidence,
    )


class _Stopping(Exception):
    """The referee is stopping while a run waits for a task being prepared."""


def _store_predictions(session, run_id: int, preds: dict[str, np.ndarray]) -> None:  # noqa: ANN001
    for task, mat in preds.items():
        for seed, row in enumerate(mat):
            session.add(
                RunPrediction(
                    run_id=run_id, task=task, seed=seed, predictions=row.astype(np.float64).tobytes()
                )
            )


def _is_root() -> bool:
    return os.geteuid() == 0


def _seconds(sandbox_log: list[dict]) -> float:
    return round(sum(float(c.get("seconds") or 0.0) for c in sandbox_log), 3)


def _student_sandbox(spec) -> dict:  # noqa: ANN001 (aar.w2s.students.StudentSpec | None)
    """What a text tier's official run needs besides the feature tiers' sandbox: its model's folder,
    read-only (weights, never labels; found through ``$AAR_MODELS``, not the cache root that holds task
    rows), and room for torch's address-space reservations (resident memory stays bounded)."""
    if spec is None or not spec.reads_texts:
        return {"ro_paths": [], "address_space_bytes": None, "env": {}}
    from aar.w2s.model_access import readable_model_dir
    from aar.w2s.paths import models_dir

    source = readable_model_dir(spec.model)  # converts a packaged model once, here, not per run
    env = {"AAR_MODELS": str(models_dir()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return {"ro_paths": [source] if source is not None else [], "address_space_bytes": 64 << 30, "env": env}


def _check_predictions(arr: np.ndarray, n_items: int) -> str | None:
    """The referee's check of a unit's returned predictions (a worker's word is not trusted)."""
    if arr.ndim != 1 or len(arr) != n_items or not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        return "predictions are not one probability per final item"
    return None


_make_readable = make_readable  # the names runs.py had before units moved out
_load_untrusted_npy = load_untrusted_npy


def dumps(obj) -> str:
    return json.dumps(obj, default=str)
