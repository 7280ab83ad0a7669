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
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from aar.sandbox.policy import SandboxPolicy

# Read-only system pieces Python and ordinary tools need. Not /etc wholesale (shadow, ssh keys, the
# machine's configs), never /root or /home.
_ETC = [
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "hosts",
    "resolv.conf", "host.conf", "gai.conf", "localtime", "timezone", "ssl", "ca-certificates",
    "alternatives", "mime.types", "protocols", "services", "magic",
]
_TOP_LEVEL = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]  # symlinks into /usr on merged-/usr systems
_SYS = ["/sys/devices/system/cpu"]  # os.cpu_count(), torch and BLAS read CPU topology here
_SYSTEM_MOUNTS = ["/usr", "/etc", "/proc", "/dev", "/sys", "/tmp"] + [f"/{d}" for d in _TOP_LEVEL]


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


def find_setpriv() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin")


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


def _system_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL:
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in _SYS:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    return args + ["--perms", "1777", "--tmpfs", "/dev/shm"]  # POSIX semaphores: multiprocessing, joblib


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
) -> list[str]:
    """The full argv: bwrap options, then (root caller dropping privileges) setpriv, then `cmd`.

    `privileged`: we run as root (no user namespace, see module docstring). `drop_to`: (uid, gid) to
    become inside the sandbox; only meaningful when privileged.
    """
    args = [bwrap] + _system_args()
    binds = _policy_binds(policy)
    for parent in _parent_dirs([b[2] for b in binds]):
        args += ["--perms", "0755", "--dir", parent]
    for option, source, dest in binds:
        args += [option, source, dest]
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
        "--hostname", "sandbox", "--die-with-parent", "--new-session",
        "--chdir", os.path.abspath(policy.workspace), "--",
    ]
    if privileged and drop_to is not None:
        if setpriv is None:
            raise RuntimeError("setpriv (util-linux) is needed to drop privileges inside bubblewrap")
        uid, gid = drop_to
        args += [
            setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--",
        ]
    return args + list(cmd)


@functools.lru_cache(maxsize=4)
def _probe(euid: int) -> str | None:
    """Why bubblewrap cannot sandbox for this caller, or None if it can (tried for real, once)."""
    bwrap = find_bwrap()
    if bwrap is None:
        return "bwrap is not installed (scripts/install-system-deps.sh)"
    privileged = euid == 0
    if privileged and find_setpriv() is None:
        return "setpriv (util-linux) is not installed"
    mode = ["--cap-drop", "ALL"] if privileged else ["--unshare-user", "--disable-userns"]
    true = shutil.which("true", path="/usr/bin:/bin") or "/bin/true"
    argv = [bwrap] + _system_args() + ["--unshare-pid", "--unshare-net", *mode, "--die-with-parent", true]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start: {exc}"
    if proc.returncode != 0:
        hint = "" if privileged else " (unprivileged user namespaces may be disabled)"
        return f"bwrap does not work here{hint}: {proc.stderr.strip()}"
    return None


def bubblewrap_problem() -> str | None:
    """Why bubblewrap is unusable for the current user, or None when it works."""
    return _probe(os.geteuid())


def bubblewrap_available() -> bool:
    """True when bwrap is installed and a trial sandbox runs for the current user."""
    return bubblewrap_problem() is None
