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
    cpu_seconds: int = 600  # per process (RLIMIT_CPU; SIGXCPU, then SIGKILL a second later)
    # The whole command's memory (its process tree plus /dev/shm: a cgroup, else the watchdog) and,
    # unless address_space_bytes is set, each process's RLIMIT_AS.
    memory_bytes: int = 4 << 30
    # Per-process RLIMIT_AS (virtual). None: memory_bytes. Raise it for libraries that reserve big
    # address ranges (torch, CUDA, many BLAS threads): the tree's resident memory stays memory_bytes.
    address_space_bytes: int | None = None
    # GPU runs (the LoRA student tier on CUDA): the GPU device nodes (/dev/nvidia*) are bound in and,
    # unless address_space_bytes is set, RLIMIT_AS is lifted (CUDA reserves tens of GB of virtual
    # address space at init). Memory stays bounded by memory_bytes (cgroup/watchdog); still no network
    # unless `network`, and nothing of the referee's data.
    gpus: bool = False
    max_processes: int = 256  # RLIMIT_NPROC (per uid) and the cgroup's pids.max
    max_file_bytes: int = 1 << 30  # RLIMIT_FSIZE (per file)
    # Disk quota over workspace + scratch + the private /tmp (and unlinked files held open), polled
    # by the watchdog: past it the command is killed ("disk quota"). None: no quota.
    disk_bytes: int | None = 16 << 30
    shm_bytes: int | None = None  # size of the private /dev/shm (counted as memory). None: memory_bytes
    # CPU share relative to a normal process (100; cgroup v2 cpu.weight scale 1..10000). Without a
    # cgroup cpu controller it becomes a nice value (10 ~ nice 10). It only matters under contention.
    cpu_weight: int = 10
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
    limits: str = ""  # what bounded the whole tree: "cgroup-v2", "cgroup-v1" or "watchdog"
    peak_memory_bytes: int | None = None  # the tree's peak as the cgroup (or the watchdog) saw it
