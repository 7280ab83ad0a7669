"""A researcher's home on disk and its sandbox: one uid, one git workspace, one set of limits.

Layout of a home (``aar agent run/exec --workspace DIR``)::

    DIR/            root-owned 0755: the agent cannot replace what is below (SandboxPolicy's symlink rule)
      work/         the agent's git checkout, 0700, owned by its uid: writable inside the sandbox
      scratch/      0700, owned by its uid: writable scratch (bundles, predictions, caches)
      public/       root-owned, read-only: task cards, student_train/dev inputs, weak labels, features
      state/        root-only 0700: transcript, notebook, logs; never bound into the sandbox

Every command of the researcher (its ``shell`` tool, file tools, git for ``code_push``, local dev runs)
goes through ``AgentHome.exec``: bubblewrap as the agent's own uid (``aar.sandbox``), read-only system,
no network namespace, the referee reachable only through its bind-mounted Unix socket, rlimits, a wall
clock that kills the whole process group. Without bubblewrap the sandbox falls back to a plain
subprocess and says loudly that scores are not tamper-proof.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aar
from aar.agents.public import student_model_dirs
from aar.sandbox import (
    SandboxPolicy,
    SandboxResult,
    bubblewrap_problem,
    ensure_user,
    make_workspace,
    python_binds,
    run_sandboxed,
)

log = logging.getLogger("aar.agents")
AAR_SOURCE = Path(aar.__file__).resolve().parent  # the aar package, bound read-only
UID_BOUND_ENV = "AAR_REFEREE_UID_BOUND"  # "1": the referee binds this researcher's token to its uid
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "aar-researcher",
    "GIT_AUTHOR_EMAIL": "researcher@aar.invalid",
    "GIT_COMMITTER_NAME": "aar-researcher",
    "GIT_COMMITTER_EMAIL": "researcher@aar.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def default_user(root: Path) -> str:
    """A stable, valid user name per home: 'aar-a-<name>-<hash>' (<= 32 chars)."""
    name = re.sub(r"[^a-z0-9_-]", "-", Path(root).resolve().name.lower())[:14].strip("-") or "agent"
    tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:6]
    return f"aar-a-{name}-{tag}"


@dataclass
class Limits:
    """Per-command limits (the sandbox's rlimits and wall clock)."""

    timeout: float = 600.0
    cpu_seconds: int = 1800
    memory_bytes: int = 4 << 30
    max_processes: int = 256
    max_file_bytes: int = 1 << 30
    # the GPU device nodes bound in and no address-space limit (CUDA reserves a large one), e.g. for
    # local runs on the LoRA tier; still no network, no labels, memory still bounded
    gpus: bool = False


@dataclass
class AgentHome:
    root: Path
    uid: int | None = None
    referee_socket: Path | None = None
    referee_token: str | None = None
    limits: Limits = field(default_factory=Limits)
    backend: str | None = None  # sandbox backend override (None: $AAR_SANDBOX_BACKEND or auto)

    @property
    def workspace(self) -> Path:
        return self.root / "work"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @classmethod
    def open(
        cls,
        root: Path,
        *,
        user: str | None = None,
        referee_socket: Path | None = None,
        referee_token: str | None = None,
        limits: Limits | None = None,
        backend: str | None = None,
    ) -> AgentHome:
        """Create (idempotently) the home, the agent's uid (as root) and its git workspace."""
        root = Path(os.path.abspath(root))
        is_root = os.geteuid() == 0
        uid = ensure_user(user or default_user(root)) if is_root else None
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755 if is_root else 0o700)
        home = cls(
            root,
            uid,
            Path(os.path.abspath(referee_socket)) if referee_socket else None,
            referee_token,
            limits or Limits(),
            backend,
        )
        make_workspace(home.workspace, uid)
        make_workspace(home.scratch, uid)
        home.state.mkdir(mode=0o700, exist_ok=True)
        os.chmod(home.state, 0o700)
        home.public.mkdir(mode=0o755, exist_ok=True)
        if (
            bubblewrap_problem() is not None
            and (backend or os.environ.get("AAR_SANDBOX_BACKEND")) != "subprocess"
        ):
            log.warning(
                "SANDBOX: bubblewrap unusable (%s); researcher commands run as plain subprocesses: "
                "NO isolation, scores are NOT tamper-proof",
                bubblewrap_problem(),
            )
        if not (home.workspace / ".git").exists():
            r = home.exec(["git", "init", "-q", "-b", "main"], timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"git init in the workspace failed: {r.stderr.strip()}")
        return home

    def env(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(AAR_SOURCE.parent),
            "AAR_WORKSPACE": str(self.workspace),
            "AAR_SCRATCH": str(self.scratch),
            "AAR_PUBLIC": str(self.public),
            "AAR_CACHE": str(self.scratch / ".aar-cache"),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            **GIT_IDENTITY,
        }
        if self.public.exists() and student_model_dirs(self.public):
            from aar.w2s.paths import models_dir

            env["AAR_MODELS"] = str(models_dir())  # where a packaged model's converted folder is found
        if self.referee_socket is not None:
            env["AAR_REFEREE"] = str(self.referee_socket)
            bound = self.uid is not None and os.environ.get(UID_BOUND_ENV) == "1"
            if self.referee_token and not bound:
                # the agent's own identity, nothing more; where the referee knows this sandbox's uid
                # (the lab binds it), the socket identifies the sandbox and no token is handed in
                env["AAR_REFEREE_TOKEN"] = self.referee_token
        return env

    def policy(self, timeout: float | None = None) -> SandboxPolicy:
        ro = [*python_binds(), AAR_SOURCE]
        if self.public.exists():
            ro.append(self.public)
            ro += student_model_dirs(self.public)  # a text tier's model (weights only), read-only
        lim = self.limits
        return SandboxPolicy(
            workspace=self.workspace,
            scratch=self.scratch,
            ro_paths=ro,
            uid=self.uid,
            network=False,
            unix_socket=self.referee_socket if self.referee_socket and self.referee_socket.exists() else None,
            cpu_seconds=lim.cpu_seconds,
            memory_bytes=lim.memory_bytes,
            max_processes=lim.max_processes,
            max_file_bytes=lim.max_file_bytes,
            gpus=lim.gpus,
            wall_timeout=lim.timeout if timeout is None else timeout,
            env=self.env(),
        )

    def exec(
        self,
        cmd: list[str],
        *,
        timeout: float | None = None,
        input: str | None = None,
        max_output: int = 1_000_000,
    ) -> SandboxResult:
        """Run ``cmd`` in the workspace, sandboxed as the agent. Never raises for what ``cmd`` does."""
        return run_sandboxed(
            cmd, self.policy(timeout), input=input, max_output=max_output, backend=self.backend
        )

    def python(
        self,
        module: str,
        *args: str,
        timeout: float | None = None,
        input: str | None = None,
        max_output: int = 1_000_000,
    ) -> SandboxResult:
        return self.exec(
            [sys.executable, "-m", module, *args], timeout=timeout, input=input, max_output=max_output
        )


def install_public(home: AgentHome, source: Path) -> list[str]:
    """Copy a prepared public pack (``aar.agents.public.prepare_public``) into the home, read-only."""
    tasks = []
    for task_dir in sorted(Path(source).iterdir()):
        if not (task_dir / "card.json").exists():
            continue
        dest = home.public / task_dir.name
        dest.mkdir(mode=0o755, parents=True, exist_ok=True)
        for f in task_dir.iterdir():
            if f.is_file():
                target = dest / f.name
                if not target.exists() or target.stat().st_mtime < f.stat().st_mtime:
                    shutil.copy2(f, target)
                    os.chmod(target, 0o644)
        tasks.append(task_dir.name)
    return tasks
