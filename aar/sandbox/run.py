"""run_sandboxed: start a command under a policy, enforce limits and the wall clock, collect output."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO

from aar.sandbox import seccomp
from aar.sandbox.bwrap import (
    bubblewrap_problem,
    bwrap_argv,
    bwrap_supports_size,
    find_bwrap,
    find_prlimit,
    find_setpriv,
    seccomp_problem,
    setpriv_prefix,
)
from aar.sandbox.limits import (
    TAG_ENV,
    SandboxCgroup,
    Watchdog,
    cgroup_host,
    kill_checked,
    limits_mode,
    nice_for,
    process_tree,
    same_start,
)
from aar.sandbox.policy import SandboxPolicy, SandboxResult
from aar.sandbox.users import primary_gid

log = logging.getLogger("aar.sandbox")

BACKEND_ENV = "AAR_SANDBOX_BACKEND"  # "bubblewrap", "subprocess" or "auto" (default)

# stderr phrases -> violation. Limits are matched whatever the exit status (a fork bomb's parent
# exits 0); "access denied" only when the command failed, since tools probe and recover routinely.
_LIMIT_SIGNS: list[tuple[str, tuple[str, ...]]] = [
    ("memory limit", ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")),
    (
        "fork limit",
        (
            "fork: retry",
            "fork: Resource temporarily unavailable",
            "Cannot fork",
            "can't start new thread",
            "BlockingIOError: [Errno 11]",
        ),
    ),
    ("file size limit", ("File too large",)),
]
_FAILURE_SIGNS = [
    ("access denied", ("Permission denied", "Read-only file system", "Operation not permitted")),
]
_SIGNAL_VIOLATIONS = {
    signal.SIGXCPU: "cpu limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSYS: "forbidden syscall",
}  # seccomp: foreign arch / x32


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


def _rlimit_args(policy: SandboxPolicy) -> list[str]:
    """`prlimit` options for the per-process limits, set inside the sandbox after the uid drop.

    Values are capped at the current hard limits, which an unprivileged caller cannot raise.
    CPU gets a one-second grace between SIGXCPU (catchable, classifiable) and SIGKILL.
    """
    address_space = policy.address_space_bytes or policy.memory_bytes
    # a GPU run: CUDA needs a large virtual address space; memory_bytes still bounds the tree
    unlimited_as = policy.gpus and policy.address_space_bytes is None
    wanted = {
        "cpu": (resource.RLIMIT_CPU, policy.cpu_seconds, policy.cpu_seconds + 1),
        "as": (resource.RLIMIT_AS, address_space, address_space),
        "nproc": (resource.RLIMIT_NPROC, policy.max_processes, policy.max_processes),
        "fsize": (resource.RLIMIT_FSIZE, policy.max_file_bytes, policy.max_file_bytes),
        "core": (resource.RLIMIT_CORE, 0, 0),
    }
    args = []
    for name, (which, soft, hard) in wanted.items():
        current_hard = resource.getrlimit(which)[1]
        if name == "as" and unlimited_as:  # as much as the caller may give: all of it, usually
            top = "unlimited" if current_hard == resource.RLIM_INFINITY else str(current_hard)
            args.append(f"--as={top}:{top}")
            continue
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        args.append(f"--{name}={soft}:{hard}")
    return args


@functools.lru_cache(maxsize=1)
def _env_default_signal() -> str | None:
    """coreutils env if it has --default-signal (>= 9.0), else None."""
    env = shutil.which("env", path="/usr/bin:/bin")
    if env is None:
        return None
    try:
        proc = subprocess.run([env, "--default-signal", "true"], capture_output=True, timeout=10)
        ok = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        log.warning(
            "env --default-signal unavailable (coreutils < 9): sandboxed commands inherit "
            "ignored signals (e.g. SIGINT of a background job)"
        )
    return env if ok else None


def _inner_prefix(policy: SandboxPolicy, nice: int) -> list[str]:
    """What runs between the uid drop and the command, each step exec'ing the next: rlimits,
    default signal dispositions (a background job inherits SIGINT ignored), lower CPU priority."""
    prlimit = find_prlimit()
    if prlimit is None:
        raise RuntimeError("prlimit (util-linux) is needed to set the sandbox's rlimits")
    prefix = [prlimit, *_rlimit_args(policy), "--"]
    env = _env_default_signal()
    if env is not None:
        prefix += [env, "--default-signal"]
    nice_bin = shutil.which("nice", path="/usr/bin:/bin")
    if nice > 0 and nice_bin is not None:
        prefix += [nice_bin, "-n", str(nice), "--"]  # last: its exit status 126/127 = cannot run cmd
    elif env is not None:
        prefix += ["/bin/sh", "-c", 'exec "$@"', "sh"]  # env would take a leading NAME=VALUE as an assignment
    return prefix


def _make_tmp(policy: SandboxPolicy, owner: tuple[int, int] | None) -> Path:
    """A fresh, private directory on disk for the command's /tmp (bwrap binds it; the subprocess backend
    gets it as TMPDIR). Next to the workspace, whose parent the agent cannot write (SandboxPolicy), so
    nobody can swap it for a symlink before bwrap binds it; else a private dir in the host's temp."""
    parent = Path(os.path.abspath(policy.workspace)).parent
    path = parent / f".aar-tmp-{uuid.uuid4().hex[:16]}"
    try:
        if os.path.realpath(parent) != str(parent):
            raise OSError("symlink on the way")  # bwrap_argv refuses it anyway; don't write through it
        path.mkdir(mode=0o700)
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="aar-tmp-"))
    if owner is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, *owner)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    return path


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: symlinks inside are not followed
    if path.exists():  # an unprivileged caller meets directories the command made unwritable
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    if not os.path.islink(os.path.join(root, name)):
                        os.chmod(os.path.join(root, name), 0o700)
        shutil.rmtree(path, ignore_errors=True)


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


def _classify(rc: int, stderr: str, killed: bool, backend: str, truncated: bool) -> list[str]:
    """Violations read from the exit status and stderr. `killed`: we SIGKILLed it (timeout, watchdog)."""
    violations = []
    sig = -rc if rc < 0 else (rc - 128 if backend == "bubblewrap" and 128 < rc < 128 + 65 else 0)
    if sig and not (killed and sig == signal.SIGKILL):
        violations.append(_SIGNAL_VIOLATIONS.get(sig, f"killed by signal {sig}"))
    signs = _LIMIT_SIGNS + (_FAILURE_SIGNS if rc != 0 or killed else [])
    violations += [
        name for name, phrases in signs if name not in violations and any(p in stderr for p in phrases)
    ]
    if truncated:
        violations.append("output limit")
    return violations


_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def run_sandboxed(
    cmd: list[str],
    policy: SandboxPolicy,
    *,
    input: str | None = None,
    max_output: int = 1_000_000,
    backend: str | None = None,
    limits: str | None = None,
) -> SandboxResult:
    """Run `cmd` under `policy`; never raises for anything the command itself does.

    backend: "bubblewrap", "subprocess" or None/"auto" (default: $AAR_SANDBOX_BACKEND, else bubblewrap
    when it works here, else subprocess with a loud warning). Forcing "bubblewrap" where it does not
    work raises RuntimeError. limits: "cgroup", "watchdog" or None/"auto" ($AAR_SANDBOX_LIMITS; see
    aar.sandbox.limits); forcing "cgroup" where none is usable raises RuntimeError. max_output caps
    each of stdout and stderr (bytes kept).
    """
    chosen = _choose_backend(backend)
    mode = limits_mode(limits)
    drop_to = _identity(policy)
    if (drop_to is None and os.geteuid() == 0) and policy.uid != 0:
        log.warning("sandboxed command runs as root: give SandboxPolicy.uid a dedicated unprivileged uid")
    if chosen == "subprocess":
        log.warning(
            "SANDBOX BACKEND IS A PLAIN SUBPROCESS: no filesystem or network isolation; "
            "scores produced this way are NOT tamper-proof (install bubblewrap)"
        )
    tag = uuid.uuid4().hex
    tmp = _make_tmp(policy, drop_to)
    cgroup: SandboxCgroup | None = None
    seccomp_fd: int | None = None
    try:
        if mode != "watchdog":
            host, _ = cgroup_host()
            assert host is not None  # limits_mode checked
            try:
                cgroup = SandboxCgroup(
                    host,
                    f"aar-sandbox-{tag}",
                    memory_bytes=policy.memory_bytes,
                    max_processes=policy.max_processes,
                    cpu_weight=policy.cpu_weight,
                )
            except OSError as exc:
                log.warning("cannot create the sandbox cgroup (%s): watchdog limits for this command", exc)
                mode = "watchdog"
        nice = 0 if cgroup is not None and cgroup.cpu is not None else nice_for(policy.cpu_weight)
        inner = _inner_prefix(policy, nice) + list(cmd)
        env = base_env(policy)
        env[TAG_ENV] = tag
        popen_identity: dict = {}
        if chosen == "bubblewrap":
            bwrap = find_bwrap()
            assert bwrap is not None  # _choose_backend checked
            problem = seccomp_problem(os.geteuid())
            if problem is None:
                seccomp_fd = seccomp.seccomp_fd()
            else:
                _warn_once(
                    "seccomp", "sandbox without seccomp filter (new user namespaces allowed): %s", problem
                )
            shm = policy.shm_bytes if policy.shm_bytes is not None else policy.memory_bytes
            if not bwrap_supports_size(os.geteuid()):
                _warn_once("size", "bwrap < 0.7: /dev/shm is not size-bounded (still counted as memory)")
                shm = None
            argv = bwrap_argv(
                inner,
                policy,
                bwrap=bwrap,
                privileged=os.geteuid() == 0,
                drop_to=drop_to,
                setpriv=find_setpriv(),
                tmp=str(tmp),
                shm_bytes=shm,
                seccomp_fd=seccomp_fd,
            )
        else:
            env["TMPDIR"] = str(tmp)  # no private /tmp without a mount namespace: at least not tmpfs
            argv = inner
            if drop_to is not None and cgroup is not None:  # join as root first, then drop
                argv = setpriv_prefix(find_setpriv(), *drop_to) + argv
            elif drop_to is not None:
                popen_identity = {"user": drop_to[0], "group": drop_to[1], "extra_groups": []}
        if cgroup is not None:
            sh = shutil.which("sh", path="/usr/bin:/bin") or "/bin/sh"
            argv = cgroup.join_prefix(sh) + argv
        return _supervise(
            argv,
            policy,
            env,
            popen_identity,
            chosen,
            mode,
            cgroup,
            tmp,
            tag,
            drop_to,
            input=input,
            max_output=max_output,
            pass_fds=(seccomp_fd,) if seccomp_fd is not None else (),
        )
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        if cgroup is not None:
            cgroup.remove()
        _remove_tree(tmp)


def _supervise(
    argv: list[str],
    policy: SandboxPolicy,
    env: dict[str, str],
    popen_identity: dict,
    chosen: str,
    mode: str,
    cgroup: SandboxCgroup | None,
    tmp: Path,
    tag: str,
    drop_to: tuple[int, int] | None,
    *,
    input: str | None,
    max_output: int,
    pass_fds: tuple[int, ...],
) -> SandboxResult:
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
            close_fds=True,
            pass_fds=pass_fds,
            **popen_identity,
        )
    except OSError as exc:  # the first program (sh, prlimit, bwrap) is missing or not executable
        return SandboxResult(
            127 if isinstance(exc, FileNotFoundError) else 126,
            "",
            f"{exc}\n",
            False,
            time.monotonic() - start,
            [],
            chosen,
            mode,
        )
    readers = [_Reader(proc.stdout, max_output), _Reader(proc.stderr, max_output)]  # type: ignore[arg-type]
    for reader in readers:
        reader.start()
    if input is not None:
        threading.Thread(target=_feed, args=(proc.stdin, input.encode()), daemon=True).start()

    # The bubblewrap tree is complete through ppid links (orphans go to the sandbox's pid 1); a plain
    # subprocess's daemonized children are found by the tag in their environment.
    tag_scan = tag if chosen == "subprocess" and cgroup is None else None
    scan_uid = drop_to[0] if drop_to is not None else os.geteuid()

    def kill_all(tree: dict[int, int]) -> None:
        _killpg(proc.pid)  # bwrap: its pid-1 child dies with it (--die-with-parent), and the pid namespace
        if cgroup is not None:
            cgroup.kill()
            return
        for _ in range(20):
            found = process_tree(proc.pid, tag=tag_scan, uid=scan_uid)
            tree = {**tree, **found}
            alive = [pid for pid in found if pid != proc.pid]
            if not alive:
                return
            for pid in alive:
                kill_checked(pid, same_start(tree))
            time.sleep(0.005)

    disk_paths = [Path(os.path.abspath(policy.workspace)), tmp]
    if policy.scratch is not None:
        disk_paths.append(Path(os.path.abspath(policy.scratch)))
    watchdog = Watchdog(
        root=proc.pid,
        mode=mode,
        cgroup=cgroup,
        memory_bytes=policy.memory_bytes,
        disk_bytes=policy.disk_bytes,
        disk_paths=disk_paths,
        tag=tag_scan,
        uid=scan_uid,
        kill=kill_all,
    )
    watchdog.start()

    timed_out = not _exited(proc.pid, start + policy.wall_timeout)
    if timed_out:
        kill_all(watchdog.tree)
        _exited(proc.pid, time.monotonic() + 10)
    watchdog.stop()
    kill_all(watchdog.tree)  # stragglers (background jobs, a plain subprocess's daemons) go with the leader
    rc = proc.wait()
    for reader in readers:
        reader.join(timeout=5)
    stray = any(reader.is_alive() for reader in readers)  # someone outside the group holds the pipe
    stdout, stderr = readers[0].text(), readers[1].text()
    watchdog.final_check()
    oom = cgroup is not None and cgroup.oom_kills() > 0
    killed = timed_out or bool(watchdog.violations) or oom
    violations = ["timeout"] if timed_out else []
    violations += [v for v in watchdog.violations if v not in violations]
    if oom and "memory limit" not in violations:
        violations.append("memory limit")
    violations += [
        v
        for v in _classify(rc, stderr, killed, chosen, any(r.total > r.limit for r in readers))
        if v not in violations
    ]
    if stray:
        violations.append("escaped process kept output open")
    if cgroup is not None and rc == 125 and "aar-sandbox-cgroup:" in stderr:
        log.error("could not join the sandbox cgroup: %s", stderr.strip()[-300:])
    peak = cgroup.peak_memory() if cgroup is not None else watchdog.peak_memory or None
    return SandboxResult(
        rc, stdout, stderr, timed_out, time.monotonic() - start, violations, chosen, mode, peak
    )
