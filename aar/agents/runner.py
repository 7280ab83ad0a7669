"""Where a tool's commands run: through the researcher's sandbox (host side), or directly (already
inside it: the in-sandbox ``aar`` client CLI). Both return ``aar.sandbox.SandboxResult``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from aar.agents.home import AgentHome
from aar.sandbox import SandboxResult


class Runner(Protocol):
    workspace: Path
    scratch: Path

    def __call__(
        self, cmd: list[str], *, timeout: float, input: str | None = None, max_output: int = 1_000_000
    ) -> SandboxResult: ...


class HomeRunner:
    """Every command goes through ``AgentHome.exec`` (bubblewrap as the agent's uid)."""

    def __init__(self, home: AgentHome):
        self.home = home
        self.workspace, self.scratch = home.workspace, home.scratch

    def __call__(self, cmd, *, timeout, input=None, max_output=1_000_000) -> SandboxResult:
        return self.home.exec(cmd, timeout=timeout, input=input, max_output=max_output)


class LocalRunner:
    """Inside the sandbox already: a plain subprocess in its own process group, killed whole on timeout."""

    def __init__(self, workspace: Path | None = None, scratch: Path | None = None):
        self.workspace = Path(workspace or os.environ.get("AAR_WORKSPACE") or os.getcwd())
        self.scratch = Path(scratch or os.environ.get("AAR_SCRATCH") or self.workspace)

    def __call__(self, cmd, *, timeout, input=None, max_output=1_000_000) -> SandboxResult:
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=self.workspace,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, err = proc.communicate(input.encode() if input is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        except BaseException:  # interrupted (Ctrl-C, SIGTERM, a stop): the command goes with us
            _kill_group(proc)
            proc.wait()
            raise
        text = [b[:max_output].decode("utf-8", errors="replace") for b in (out, err)]
        return SandboxResult(
            proc.returncode,
            text[0],
            text[1],
            timed_out,
            time.monotonic() - start,
            ["timeout"] if timed_out else [],
            "local",
        )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # unreaped, so the group id is still the command's
    except (ProcessLookupError, PermissionError):
        pass


PYTHON = sys.executable
