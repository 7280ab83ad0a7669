"""What a sandboxed command may do (SandboxPolicy) and what came of it (SandboxResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SandboxPolicy:
    """Everything the sandbox lets a command see and use; anything not named here is hidden or denied.

    Paths are host paths and appear at the same path inside the sandbox, so code and logs need no
    translation. `workspace`, `scratch` and `unix_socket` must not contain symlinks (checked at run
    time): their parents may be writable by the agent, and a planted symlink would otherwise redirect
    a bind made with root's eyes. `ro_paths` are the deployer's own (venv, source tree) and are
    resolved before binding.
    """

    workspace: Path
    scratch: Path | None = None
    ro_paths: list[Path] = field(default_factory=list)
    uid: int | None = None
    gid: int | None = None  # None: the uid's primary group (from /etc/passwd), else gid == uid
    network: bool = False
    unix_socket: Path | None = None
    cpu_seconds: int = 600
    memory_bytes: int = 4 << 30
    max_processes: int = 256
    max_file_bytes: int = 1 << 30
    wall_timeout: float = 600.0
    # Extra variables, layered over a minimal base (PATH, HOME=workspace, LANG, TMPDIR). The caller's
    # own environment is never inherited: it may hold API keys.
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class SandboxResult:
    """Outcome of one sandboxed command. `violations` is a best-effort classification, not proof."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    violations: list[str]
    backend: str  # "bubblewrap" or "subprocess" (the latter is NOT tamper-proof)
