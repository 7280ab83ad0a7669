"""run_sandboxed: start a command under a policy, enforce limits and the wall clock, collect output."""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO

from aar.sandbox.bwrap import bubblewrap_problem, bwrap_argv, find_bwrap, find_setpriv
from aar.sandbox.policy import SandboxPolicy, SandboxResult
from aar.sandbox.users import primary_gid

log = logging.getLogger("aar.sandbox")

BACKEND_ENV = "AAR_SANDBOX_BACKEND"  # "bubblewrap", "subprocess" or "auto" (default)

# stderr phrases -> violation. Limits are matched whatever the exit status (a fork bomb's parent
# exits 0); "access denied" only when the command failed, since tools probe and recover routinely.
_LIMIT_SIGNS: list[tuple[str, tuple[str, ...]]] = [
    ("memory limit", ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")),
    ("fork limit", ("fork: retry", "fork: Resource temporarily unavailable", "Cannot fork",
                    "can't start new thread", "BlockingIOError: [Errno 11]")),
    ("file size limit", ("File too large",)),
]
_FAILURE_SIGNS = [
    ("access denied", ("Permission denied", "Read-only file system", "Operation not permitted")),
]
_SIGNAL_VIOLATIONS = {signal.SIGXCPU: "cpu limit", signal.SIGXFSZ: "file size limit"}


def base_env(policy: SandboxPolicy) -> dict[str, str]:
    """The whole environment of a sandboxed command: a minimal base plus policy.env, nothing inherited."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.path.abspath(policy.workspace),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",  # the system and venv are read-only anyway
    }
    env.update(policy.env)
    return env


def _rlimits(policy: SandboxPolicy) -> Callable[[], None]:
    """A preexec_fn that only calls setrlimit (kept tiny: it runs between fork and exec).

    Values are capped at the current hard limits, which an unprivileged caller cannot raise.
    CPU gets a one-second grace between SIGXCPU (catchable, classifiable) and SIGKILL.
    """
    wanted = {
        resource.RLIMIT_CPU: (policy.cpu_seconds, policy.cpu_seconds + 1),
        resource.RLIMIT_AS: (policy.memory_bytes, policy.memory_bytes),
        resource.RLIMIT_NPROC: (policy.max_processes, policy.max_processes),
        resource.RLIMIT_FSIZE: (policy.max_file_bytes, policy.max_file_bytes),
        resource.RLIMIT_CORE: (0, 0),
    }
    limits = []
    for which, (soft, hard) in wanted.items():
        current_hard = resource.getrlimit(which)[1]
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        limits.append((which, (soft, hard)))

    def apply() -> None:
        for which, value in limits:
            resource.setrlimit(which, value)

    return apply


def _identity(policy: SandboxPolicy) -> tuple[int, int] | None:
    """(uid, gid) to switch to, or None to keep ours. Switching needs root."""
    if policy.uid is None or policy.uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise PermissionError(f"running as uid {policy.uid} needs root (we are uid {os.geteuid()})")
    gid = policy.gid if policy.gid is not None else primary_gid(policy.uid)
    return policy.uid, gid


def _choose_backend(requested: str | None) -> str:
    name = (requested or os.environ.get(BACKEND_ENV) or "auto").lower()
    if name == "bwrap":
        name = "bubblewrap"
    if name not in ("auto", "bubblewrap", "subprocess"):
        raise ValueError(f"unknown sandbox backend {name!r}")
    if name == "subprocess":
        return name
    problem = bubblewrap_problem()
    if problem is None:
        return "bubblewrap"
    if name == "bubblewrap":
        raise RuntimeError(f"bubblewrap sandbox requested but unusable: {problem}")
    log.warning("bubblewrap unusable (%s): falling back to a plain subprocess", problem)
    return "subprocess"


class _Reader(threading.Thread):
    """Drains a pipe to EOF, keeping the first `limit` bytes (draining the rest so the child never
    blocks on a full pipe)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.limit = stream, limit
        self.data = bytearray()
        self.total = 0

    def run(self) -> None:
        fd = self.stream.fileno()
        while chunk := os.read(fd, 1 << 16):
            self.total += len(chunk)
            if len(self.data) < self.limit:
                self.data += chunk[: self.limit - len(self.data)]
        self.stream.close()

    def text(self) -> str:
        out = self.data.decode("utf-8", errors="replace")
        if self.total > len(self.data):
            out += f"\n[... {self.total - len(self.data)} more bytes not kept]"
        return out


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except (BrokenPipeError, OSError):
        pass


def _exited(pid: int, deadline: float | None) -> bool:
    """Wait until `pid` exits (or `deadline`) WITHOUT reaping it: while it is an unreaped zombie its
    pid, hence our process-group id, cannot be reused, so a later killpg hits only our processes."""
    pause = 0.001
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(rc: int, stderr: str, timed_out: bool, backend: str, truncated: bool) -> list[str]:
    violations = ["timeout"] if timed_out else []
    sig = -rc if rc < 0 else (rc - 128 if backend == "bubblewrap" and 128 < rc < 128 + 65 else 0)
    if sig and not (timed_out and sig == signal.SIGKILL):
        violations.append(_SIGNAL_VIOLATIONS.get(sig, f"killed by signal {sig}"))
    signs = _LIMIT_SIGNS + (_FAILURE_SIGNS if rc != 0 or timed_out else [])
    violations += [name for name, phrases in signs
                   if name not in violations and any(p in stderr for p in phrases)]
    if truncated:
        violations.append("output limit")
    return violations


def run_sandboxed(
    cmd: list[str],
    policy: SandboxPolicy,
    *,
    input: str | None = None,
    max_output: int = 1_000_000,
    backend: str | None = None,
) -> SandboxResult:
    """Run `cmd` under `policy`; never raises for anything the command itself does.

    backend: "bubblewrap", "subprocess" or None/"auto" (default: $AAR_SANDBOX_BACKEND, else bubblewrap
    when it works here, else subprocess with a loud warning). Forcing "bubblewrap" where it does not
    work raises RuntimeError. max_output caps each of stdout and stderr (bytes kept).
    """
    chosen = _choose_backend(backend)
    drop_to = _identity(policy)
    env = base_env(policy)
    if chosen == "bubblewrap":
        bwrap = find_bwrap()
        assert bwrap is not None  # _choose_backend checked
        argv = bwrap_argv(cmd, policy, bwrap=bwrap, privileged=os.geteuid() == 0, drop_to=drop_to,
                          setpriv=find_setpriv())
        popen_identity: dict = {}  # bwrap+setpriv switch identity inside the sandbox
    else:
        log.warning(
            "SANDBOX BACKEND IS A PLAIN SUBPROCESS: no filesystem or network isolation; "
            "scores produced this way are NOT tamper-proof (install bubblewrap)"
        )
        argv = list(cmd)
        popen_identity = {}
        if drop_to is not None:
            popen_identity = {"user": drop_to[0], "group": drop_to[1], "extra_groups": []}
    if (drop_to is None and os.geteuid() == 0) and policy.uid != 0:
        log.warning("sandboxed command runs as root: give SandboxPolicy.uid a dedicated unprivileged uid")

    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=os.path.abspath(policy.workspace),
            env=env,
            start_new_session=True,  # its own process group: the unit we kill
            preexec_fn=_rlimits(policy),
            close_fds=True,
            **popen_identity,
        )
    except OSError as exc:  # only reachable for the subprocess backend (missing program, no access)
        return SandboxResult(127 if isinstance(exc, FileNotFoundError) else 126, "", f"{exc}\n", False,
                             time.monotonic() - start, [], chosen)
    readers = [_Reader(proc.stdout, max_output), _Reader(proc.stderr, max_output)]  # type: ignore[arg-type]
    for reader in readers:
        reader.start()
    if input is not None:
        threading.Thread(target=_feed, args=(proc.stdin, input.encode()), daemon=True).start()

    timed_out = not _exited(proc.pid, start + policy.wall_timeout)
    if timed_out:
        _killpg(proc.pid)
        _exited(proc.pid, time.monotonic() + 10)
    _killpg(proc.pid)  # stragglers left in the group (background jobs) go with the leader
    rc = proc.wait()
    for reader in readers:
        reader.join(timeout=5)
    stray = any(reader.is_alive() for reader in readers)  # someone outside the group holds the pipe
    stdout, stderr = readers[0].text(), readers[1].text()
    violations = _classify(rc, stderr, timed_out, chosen, any(r.total > r.limit for r in readers))
    if stray:
        violations.append("escaped process kept output open")
    return SandboxResult(rc, stdout, stderr, timed_out, time.monotonic() - start, violations, chosen)
