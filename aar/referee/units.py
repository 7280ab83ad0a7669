"""Units of an official run: one task x one seed (or the determinism re-run) of one run's idea.

A unit is pure: the idea's commit (a tar of its checkout) and the unit's label-free inputs go in,
predictions come out. ``run_unit`` runs one in a sandbox on whatever host calls it (a referee thread,
a Ray worker on another node); it never sees a label, the referee's database or its data dir. Only the
referee validates and scores what comes back, and it records each unit's output once, keyed by
(run, task, seed, tag) in ``run_units``: a unit that ran is never run again for that run, so a run
interrupted by a referee restart or a dead worker resumes where it stopped and is scored exactly once.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import JSON, DateTime, ForeignKey, Integer, LargeBinary, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

import aar
from aar.referee.db import Base, BigId, utcnow


class RunUnit(Base):
    """The output of one unit of an official run, stored once (the first to finish wins)."""

    __tablename__ = "run_units"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    task: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    tag: Mapped[str] = mapped_column(String(16), default="")
    predictions: Mapped[bytes] = mapped_column(LargeBinary)
    info: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the sandbox call, for the run's log
    finished_at = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("run_id", "task", "seed", "tag", name="uq_run_units_key"),)


Key = tuple[str, int, str]  # (task, seed, tag)


def plan_units(tasks: list[str], seeds: int, rerun_of: str | None = None) -> list[Key]:
    """The units of a run (or of a built-in baseline, run in process) on ``tasks``: each task x seed,
    task by task, and the determinism re-run of seed 0 on ``rerun_of``."""
    keys = [(t, s, "") for t in tasks for s in range(seeds)]
    return keys + ([(rerun_of, 0, "rerun")] if rerun_of is not None else [])


def stack_units(
    done: dict[Key, tuple[np.ndarray, dict]], tasks: list[str], seeds: int
) -> dict[str, np.ndarray]:
    """Per task, the units' predictions as one row per seed (what the referee scores)."""
    return {t: np.stack([done[(t, s, "")][0] for s in range(seeds)]) for t in tasks}


@dataclass(frozen=True)
class Unit:
    """What a worker needs to run one unit: no label, no path into the referee's data dir."""

    run_id: int
    task: str
    seed: int
    idea_path: str
    context: bytes  # aar.w2s.idea_runner.save_context of the task's label-free ``final`` context
    n_items: int  # predictions expected (one probability per final item)
    sandbox: dict = field(default_factory=dict)  # SandboxPolicy settings (limits, uid name, extra ro paths)
    tag: str = ""  # "" or "rerun" (the determinism check)
    gpus: int = 0  # what the tier needs from the host that runs it
    cpus: float = 1.0
    memory_bytes: int = 0

    @property
    def key(self) -> Key:
        return (self.task, self.seed, self.tag)


@dataclass
class UnitOutput:
    predictions: np.ndarray | None  # None: the idea failed (info says how)
    info: dict
    stderr: str = ""  # the tail the referee reads for attempts at the network or at its data


def pack_code(code_dir: Path) -> bytes:
    """The checkout as a tar: what travels to a worker instead of the code store."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(code_dir, arcname="code")
    return buf.getvalue()


def run_unit(unit: Unit, code: bytes, scratch_root: str | None = None) -> UnitOutput:
    """Run one unit in a sandbox on this host; never raises for the idea's faults (they are outputs)."""
    from aar.sandbox import SandboxPolicy, ensure_user, make_workspace, python_binds, run_sandboxed

    root = Path(scratch_root or Path(tempfile.gettempdir()) / f"aar-units-{os.getuid()}")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    here = root / f"run-{unit.run_id}-{unit.task}-s{unit.seed}{unit.tag}-{uuid.uuid4().hex[:8]}"
    here.mkdir(mode=0o711)
    try:
        with tarfile.open(fileobj=io.BytesIO(code), mode="r:gz") as tar:
            tar.extractall(here, filter="data")  # no links out, no absolute paths, no devices
        code_dir = here / "code"
        make_readable(code_dir)
        sb = unit.sandbox
        uid = ensure_user(sb.get("user", "aar-referee-run")) if os.geteuid() == 0 else None
        work = make_workspace(here / "work", uid)
        ctx_path = work / "context.npz"
        ctx_path.write_bytes(unit.context)
        ctx_path.chmod(0o644)
        out = work / "predictions.npy"
        policy = SandboxPolicy(
            workspace=work,
            uid=uid,
            network=False,
            ro_paths=[
                *python_binds(),
                Path(aar.__file__).resolve().parent,
                code_dir,
                *[Path(p) for p in sb.get("ro_paths", [])],
            ],
            address_space_bytes=sb.get("address_space_bytes"),
            gpus=bool(sb.get("gpus", False)),
            cpu_seconds=sb.get("cpu_seconds", 600),
            memory_bytes=sb.get("memory_bytes", 3 * 1024**3),
            max_processes=sb.get("max_processes", 64),
            max_file_bytes=sb.get("max_file_bytes", 256 * 1024 * 1024),
            wall_timeout=sb.get("wall_seconds", 900.0),
            cpu_weight=100,  # a normal share: researchers' commands (weight 10) cannot starve official runs
            env={
                "PYTHONDONTWRITEBYTECODE": "1",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "PYTHONPATH": str(Path(aar.__file__).resolve().parent.parent),
                **sb.get("env", {}),
            },
        )
        cmd = [
            sys.executable,
            "-m",
            "aar.w2s.idea_runner",
            str(ctx_path),
            str(code_dir / unit.idea_path),
            str(out),
        ]
        res = run_sandboxed(cmd, policy)
        info = {
            "task": unit.task,
            "seed": unit.seed,
            "returncode": res.returncode,
            "timed_out": res.timed_out,
            "seconds": round(res.seconds, 3),
            "violations": list(res.violations),
            "backend": res.backend,
            "host": os.uname().nodename,
            "stderr_tail": res.stderr[-1500:],
        }
        if unit.tag:
            info["tag"] = unit.tag
        if res.returncode != 0 or res.timed_out or not out.is_file():
            return UnitOutput(None, info, res.stderr[-65536:])
        try:
            arr = np.asarray(load_untrusted_npy(out, 8 * unit.n_items + 4096), dtype=np.float64).reshape(-1)
        except Exception as exc:  # noqa: BLE001 (any unreadable output is the idea's failure)
            info["error"] = f"unreadable predictions: {type(exc).__name__}"
            return UnitOutput(None, info, res.stderr[-65536:])
        return UnitOutput(arr, info, res.stderr[-65536:])
    finally:
        shutil.rmtree(here, ignore_errors=True)


def make_readable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_symlink():
            continue
        p.chmod(0o755 if p.is_dir() else 0o644)


def load_untrusted_npy(path: Path, max_bytes: int) -> np.ndarray:
    """np.load of a file the idea wrote, never following a symlink (O_NOFOLLOW: the idea could point
    it at private data) and never reading more than ``max_bytes``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("predictions are not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError("predictions file too large")
    return np.load(io.BytesIO(data), allow_pickle=False)


# -- the referee's record of units (its database is the queue and the one source of truth) ---------


def done_units(db, run_id: int) -> dict[Key, tuple[np.ndarray, dict]]:  # noqa: ANN001 (aar.referee.db.Database)
    """The outputs already recorded for a run: these units are not run again."""
    with db.read() as session:
        rows = session.scalars(select(RunUnit).where(RunUnit.run_id == run_id)).all()
        return {
            (r.task, r.seed, r.tag): (np.frombuffer(r.predictions, dtype=np.float64).copy(), r.info or {})
            for r in rows
        }


def record_unit(db, run_id: int, key: Key, preds: np.ndarray, info: dict) -> tuple[np.ndarray, dict]:  # noqa: ANN001
    """Store a unit's output once; if another attempt stored it first, keep (and return) that one."""
    task, seed, tag = key
    try:
        with db.write() as session:
            found = session.scalar(
                select(RunUnit).where(
                    RunUnit.run_id == run_id, RunUnit.task == task, RunUnit.seed == seed, RunUnit.tag == tag
                )
            )
            if found is not None:
                return np.frombuffer(found.predictions, dtype=np.float64).copy(), found.info or {}
            session.add(
                RunUnit(
                    run_id=run_id,
                    task=task,
                    seed=seed,
                    tag=tag,
                    predictions=np.asarray(preds, dtype=np.float64).tobytes(),
                    info=info,
                )
            )
    except IntegrityError:  # a concurrent writer won the (run, task, seed, tag) key: theirs stands
        return done_units(db, run_id)[key]
    return preds, info
