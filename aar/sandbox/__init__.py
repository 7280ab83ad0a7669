"""Running untrusted code: researchers' shell commands and the referee's official runs of their ideas.

The code we run is written by agents whose incentive is a higher score, so the sandbox assumes it
will try to read labels, probe the scorer and exhaust the machine. Under bubblewrap a command sees:
a read-only /usr (and the /lib*, /bin symlinks), a handful of /etc files Python needs (not /etc
wholesale), a private /proc and read-only /dev, a size-bounded private /dev/shm, a private /tmp *on
disk* (a fresh directory next to the workspace, removed afterwards), its writable workspace
(+ scratch), the deployer's read-only paths (venv, source tree) and at most one Unix socket (the
referee's). /root, /home, other agents' workspaces and the referee's data are simply absent. No
network unless asked (own network namespace). The environment is built from scratch: API keys never
leak.

Limits, and why each exists:

* Whole tree (aar.sandbox.limits): rlimits are per process, so many processes (or RAM-backed
  /dev/shm) could take the host's memory. Each command gets its own cgroup (v2, else v1 memory+pids,
  + cpu weight) where the host lets us write one; else a watchdog thread sums the tree's memory and
  the /dev/shm in use and kills the sandbox past `memory_bytes` ("memory limit"). Which one is in
  force: `limits_mode()`, `SandboxResult.limits`, one log warning; `AAR_SANDBOX_LIMITS=cgroup|
  watchdog|auto` forces it. A cgroup is joined by a root-run `sh` prefix before any privilege drop:
  no race, no preexec_fn (unsafe in our threaded parents).
* Disk: `disk_bytes` over workspace + scratch + /tmp (+ unlinked open files), polled ("disk quota").
* CPU: cgroup cpu weight, else `nice` (`cpu_weight`, default 10 ~ nice 10): the host stays responsive.
* Per process, set by `prlimit` inside the sandbox after the uid drop: CPU seconds (SIGXCPU), address
  space, processes per uid, file size, no core dumps; a wall clock kills the whole process group /
  pid namespace. `env --default-signal` resets signal dispositions (a background job's ignored SIGINT).
* seccomp (aar.sandbox.seccomp, both bwrap modes): no new user namespaces (they hand out every
  capability inside, a large kernel attack surface), no io_uring/bpf/userfaultfd/keyrings.

Usage::

    uid = ensure_user("aar-agent-1")                     # root; idempotent
    ws = make_workspace(Path("/var/lib/aar/ws/agent-1"), uid)
    policy = SandboxPolicy(workspace=ws, uid=uid, ro_paths=python_binds() + [SOURCE_TREE])
    result = run_sandboxed([sys.executable, "-m", "aar", ...], policy)

Deployment notes (read these):

* Install bubblewrap (>= 0.7 for a bounded /dev/shm) and util-linux (setpriv, prlimit):
  `scripts/install-system-deps.sh` (Debian/Ubuntu; no-op without apt or root). Without bubblewrap,
  or where it cannot run, `run_sandboxed` falls back to a plain subprocess (same rlimits, tree limits,
  uid drop and clean env, /tmp via TMPDIR; NO filesystem or network isolation, no seccomp), logs a
  warning, and reports `backend == "subprocess"`: such scores are not tamper-proof.
  `AAR_SANDBOX_BACKEND=subprocess` forces the fallback, `=bubblewrap` makes its absence an error.
* Run the referee/lab as root and give each agent its own uid (`ensure_user`): the uid drop needs
  root, and RLIMIT_NPROC is per uid. As root, bubblewrap builds the mount tree with root's eyes and
  `setpriv` drops to the agent's uid inside (see aar.sandbox.bwrap for why not `bwrap --uid`).
  Consequence: a venv whose base Python lives under /root (pyenv: /root is 0700) works in the
  bubblewrap sandbox unchanged; `python_binds()` returns the venv and the base prefix to bind.
  The fallback backend cannot do that: there a dropped uid cannot execute a Python under /root;
  build the venv from a Python outside /root (e.g. /usr/bin/python3 or /opt/python) if you need it.
* Called as a non-root user, bubblewrap uses an unprivileged user namespace instead (the kernel must
  allow it) and the command keeps the caller's uid; paths the caller cannot read cannot be bound.
  Cgroups are then usually not writable: the watchdog applies.
* cgroups: as root on cgroup v1 (memory and pids hierarchies) this works as is. On cgroup v2 our own
  cgroup normally holds our processes, so controllers cannot be enabled for its children: delegate
  an empty cgroup with memory+pids enabled for children and point `AAR_SANDBOX_CGROUP` at it.
* The referee's Unix socket must be connectable by agent uids (e.g. mode 0666, its directory can stay
  private: only the socket itself is bound). Identify peers with SO_PEERCRED: they carry their real
  uid. Everything under a bound ro path is visible to the agent (subject to file modes): keep referee
  data and secrets outside the source tree you bind.
* Memory: RLIMIT_AS counts virtual memory, so libraries that reserve big address ranges (torch, CUDA,
  many BLAS threads) need a larger `address_space_bytes`; `memory_bytes` still bounds what the tree
  holds. The watchdog is weaker than a cgroup (it can overshoot by one poll's allocations, ignores
  page cache, and a fallback-backend daemon that clears its environment escapes it). Workspace
  parents must not be writable by the agent (the private /tmp is created there), and symlinks in
  workspace/scratch/socket paths are refused.
"""

from aar.sandbox.bwrap import bubblewrap_available, bubblewrap_problem, bwrap_argv
from aar.sandbox.limits import CGROUP_ENV, LIMITS_ENV, cgroup_host, limits_mode
from aar.sandbox.paths import python_binds
from aar.sandbox.policy import SandboxPolicy, SandboxResult
from aar.sandbox.run import BACKEND_ENV, base_env, run_sandboxed
from aar.sandbox.seccomp import seccomp_program
from aar.sandbox.users import ensure_user, make_workspace, primary_gid

__all__ = [
    "BACKEND_ENV",
    "CGROUP_ENV",
    "LIMITS_ENV",
    "SandboxPolicy",
    "SandboxResult",
    "base_env",
    "bubblewrap_available",
    "bubblewrap_problem",
    "bwrap_argv",
    "cgroup_host",
    "ensure_user",
    "limits_mode",
    "make_workspace",
    "primary_gid",
    "python_binds",
    "run_sandboxed",
    "seccomp_program",
]
