"""The bubblewrap command line: which host paths a sandboxed command sees, and as whom it runs.

Two modes, chosen by who calls us:

* **root caller** (the referee, the lab): bwrap runs as real root *without* a user namespace, builds
  the sandbox's mount tree with root's eyes (so it can bind e.g. a Python under /root, which is
  0700), and `setpriv` inside the sandbox then drops to the agent's uid/gid for real: that uid in the
  init user namespace, no supplementary groups, no capabilities, no_new_privs. We deliberately do not
  use `bwrap --unshare-user --uid N` as root: its uid map sends N back to host root, and the
  "unprivileged" command could read root's 0600 files.
* **unprivileged caller**: bwrap creates a user namespace itself (needs unprivileged user namespaces,
  which this kernel allows) and the command keeps the caller's uid. Paths the caller cannot reach
  cannot be bound in this mode.

`--unshare-all` is not used: it implies `--unshare-user-try`, which as root would map only uid 0 and
make the uid drop impossible. The namespaces are listed one by one instead (same set).

Both modes get the seccomp filter (`--seccomp FD`, aar.sandbox.seccomp; the unprivileged mode also
keeps `--disable-userns`). /tmp is a bind of a host directory on disk (not a tmpfs: RAM), /dev/shm a
tmpfs bounded with `--size` (bwrap >= 0.7; `--perms`/`--size` must precede the `--tmpfs` they
modify), and `/` and `/dev` are remounted read-only after setup: unprivileged, they are tmpfs owned
by the caller, i.e. RAM the command could otherwise fill.
"""

from __future__ import annotations

import functools
import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

from aar.sandbox import seccomp
from aar.sandbox.policy import SandboxPolicy

# Read-only system pieces Python and ordinary tools need. Not /etc wholesale (shadow, ssh keys, the
# machine's configs), never /root or /home.
_ETC = [
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "resolv.conf",
    "host.conf",
    "gai.conf",
    "localtime",
    "timezone",
    "ssl",
    "ca-certificates",
    "alternatives",
    "mime.types",
    "protocols",
    "services",
    "magic",
]
_TOP_LEVEL = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]  # symlinks into /usr on merged-/usr systems
_SYS = ["/sys/devices/system/cpu"]  # os.cpu_count(), torch and BLAS read CPU topology here
_SYSTEM_MOUNTS = ["/usr", "/etc", "/proc", "/dev", "/sys", "/tmp"] + [f"/{d}" for d in _TOP_LEVEL]


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


def find_setpriv() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin")


def find_prlimit() -> str | None:
    return shutil.which("prlimit", path="/usr/bin:/bin")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _depth(path: str) -> int:
    return len(Path(path).parts)


def _no_symlinks(path: Path, what: str) -> str:
    """Absolute path of `path`, refusing any symlink on the way (see SandboxPolicy)."""
    absolute = os.path.abspath(path)
    if os.path.realpath(absolute) != absolute:
        raise ValueError(f"sandbox {what} {absolute} contains a symlink ({os.path.realpath(absolute)})")
    if not os.path.exists(absolute):
        raise FileNotFoundError(f"sandbox {what} {absolute} does not exist")
    return absolute


def _system_args(tmp: str | None = None, shm_bytes: int | None = None) -> list[str]:
    """System mounts. `tmp`: a host directory bound as /tmp (on disk, not RAM); None: /tmp is an
    empty read-only directory. `shm_bytes`: size of the private /dev/shm tmpfs (None: tmpfs default,
    only for bwrap < 0.7, which lacks --size)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL:
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    # As root, bwrap creates missing parents 0700: the dropped uid could not read what is bound below.
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in _SYS:
        for parent in reversed(Path(path).parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--bind", tmp, "/tmp"] if tmp is not None else ["--perms", "0755", "--dir", "/tmp"]
    size = ["--size", str(max(shm_bytes, 4096))] if shm_bytes is not None else []  # size 0 = unbounded
    return args + ["--perms", "1777", *size, "--tmpfs", "/dev/shm"]  # POSIX semaphores: multiprocessing


DEV_ROOT = "/dev"  # where gpu_device_nodes looks (a test points it at a folder of stand-in nodes)


def gpu_device_nodes(dev: str | None = None) -> list[str]:
    """The NVIDIA device nodes a CUDA process opens: the per-GPU nodes, nvidiactl, nvidia-uvm(-tools),
    nvidia-modeset and the capability nodes under nvidia-caps (MIG). Only those that exist."""
    dev = DEV_ROOT if dev is None else dev
    found = sorted(glob.glob(os.path.join(dev, "nvidia*")))
    found += sorted(glob.glob(os.path.join(dev, "nvidia-caps", "*")))
    return [p for p in found if not os.path.isdir(p)]


def _policy_binds(policy: SandboxPolicy) -> list[tuple[str, str, str]]:
    """(bwrap option, host source, sandbox destination), parents before children."""
    binds: list[tuple[str, str, str]] = []
    for path in policy.ro_paths:
        dest = os.path.abspath(path)
        if not os.path.exists(dest):
            raise FileNotFoundError(f"sandbox ro_path {dest} does not exist")
        binds.append(("--ro-bind", os.path.realpath(dest), dest))
    workspace = _no_symlinks(policy.workspace, "workspace")
    binds.append(("--bind", workspace, workspace))
    if policy.scratch is not None:
        scratch = _no_symlinks(policy.scratch, "scratch")
        binds.append(("--bind", scratch, scratch))
    if policy.unix_socket is not None:
        sock = _no_symlinks(policy.unix_socket, "unix_socket")
        binds.append(("--ro-bind", sock, sock))  # connect() ignores read-only mounts; rename/unlink can't
    return sorted(binds, key=lambda b: _depth(b[2]))


def _parent_dirs(dests: list[str]) -> list[str]:
    """Ancestors of bind destinations that bwrap would otherwise create 0700 (as root) in its empty
    root or /tmp: the dropped uid could not traverse them. Those inside another bind already exist."""
    mounted = dests + [m for m in _SYSTEM_MOUNTS if m != "/tmp"]
    parents: set[str] = set()
    for dest in dests:
        for parent in Path(dest).parents:
            p = str(parent)
            if p in ("/", "/tmp") or any(_under(p, m) for m in mounted):
                continue
            parents.add(p)
    return sorted(parents, key=_depth)


def bwrap_argv(
    cmd: list[str],
    policy: SandboxPolicy,
    *,
    bwrap: str,
    privileged: bool,
    drop_to: tuple[int, int] | None,
    setpriv: str | None = None,
    tmp: str | None = None,
    shm_bytes: int | None = None,
    seccomp_fd: int | None = None,
) -> list[str]:
    """The full argv: bwrap options, then (root caller dropping privileges) setpriv, then `cmd`.

    `privileged`: we run as root (no user namespace, see module docstring). `drop_to`: (uid, gid) to
    become inside the sandbox; only meaningful when privileged. `tmp`: host directory to bind as
    /tmp. `shm_bytes`: /dev/shm size. `seccomp_fd`: an fd holding a BPF program (aar.sandbox.seccomp)
    that the caller passes to bwrap (pass_fds).
    """
    args = [bwrap] + _system_args(tmp, shm_bytes)
    binds = _policy_binds(policy)
    for parent in _parent_dirs([b[2] for b in binds]):
        args += ["--perms", "0755", "--dir", parent]
    for option, source, dest in binds:
        args += [option, source, dest]
    if policy.gpus:  # into the private /dev, before it turns read-only (device nodes stay usable)
        for node in gpu_device_nodes():
            args += ["--dev-bind", node, node]
    # Unprivileged, bwrap's root and /dev are tmpfs owned by the caller: RAM it could fill. Read-only
    # after setup (device nodes stay usable; /dev/shm, /dev/pts and /tmp are separate mounts).
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    if not policy.network:
        args.append("--unshare-net")  # a fresh network namespace: loopback only, nothing to reach
    if privileged:
        # The reaper (pid 1) stays root; keep only what setpriv needs to drop (and DAC_OVERRIDE for
        # bwrap's --chdir into the agent's 0700 workspace), or nothing at all.
        args += ["--cap-drop", "ALL"]
        if drop_to is not None:
            for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_OVERRIDE"):
                args += ["--cap-add", cap]
    else:
        args += ["--unshare-user", "--disable-userns"]
    args += [
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--chdir",
        os.path.abspath(policy.workspace),
        "--",
    ]
    if privileged and drop_to is not None:
        args += setpriv_prefix(setpriv, *drop_to)
    return args + list(cmd)


def setpriv_prefix(setpriv: str | None, uid: int, gid: int) -> list[str]:
    """argv prefix that becomes uid/gid for good: no groups, no capabilities, no_new_privs."""
    if setpriv is None:
        raise RuntimeError("setpriv (util-linux) is needed to drop privileges")
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def _trial(euid: int, extra: list[str], pass_fds: tuple[int, ...] = ()) -> str | None:
    """Run `true` in a minimal sandbox for this caller; the error text, or None if it worked."""
    bwrap = find_bwrap()
    assert bwrap is not None
    mode = ["--cap-drop", "ALL"] if euid == 0 else ["--unshare-user", "--disable-userns"]
    true = shutil.which("true", path="/usr/bin:/bin") or "/bin/true"
    argv = [
        bwrap,
        *_system_args(),
        *extra,
        "--unshare-pid",
        "--unshare-net",
        *mode,
        "--die-with-parent",
        true,
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={}, pass_fds=pass_fds)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start: {exc}"
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit status {proc.returncode}")


@functools.lru_cache(maxsize=4)
def _probe(euid: int) -> str | None:
    """Why bubblewrap cannot sandbox for this caller, or None if it can (tried for real, once)."""
    if find_bwrap() is None:
        return "bwrap is not installed (scripts/install-system-deps.sh)"
    if euid == 0 and find_setpriv() is None:
        return "setpriv (util-linux) is not installed"
    if find_prlimit() is None:
        return "prlimit (util-linux) is not installed"
    problem = _trial(euid, ["--remount-ro", "/"])
    if problem is not None:
        hint = "" if euid == 0 else " (unprivileged user namespaces may be disabled)"
        return f"bwrap does not work here{hint}: {problem}"
    return None


@functools.lru_cache(maxsize=4)
def bwrap_supports_size(euid: int) -> bool:
    """bwrap >= 0.7 understands `--size` (a bounded /dev/shm)."""
    return _trial(euid, ["--size", "1048576", "--tmpfs", "/mnt"]) is None


@functools.lru_cache(maxsize=4)
def seccomp_problem(euid: int) -> str | None:
    """Why the seccomp filter cannot be installed here, or None (tried for real, once)."""
    fd = seccomp.seccomp_fd()
    if fd is None:
        return f"no seccomp program for this architecture ({platform.machine()})"
    try:
        problem = _trial(euid, ["--seccomp", str(fd)], pass_fds=(fd,))
    finally:
        os.close(fd)
    return None if problem is None else f"bwrap --seccomp failed: {problem}"


def bubblewrap_problem() -> str | None:
    """Why bubblewrap is unusable for the current user, or None when it works."""
    return _probe(os.geteuid())


def bubblewrap_available() -> bool:
    """True when bwrap is installed and a trial sandbox runs for the current user."""
    return bubblewrap_problem() is None
