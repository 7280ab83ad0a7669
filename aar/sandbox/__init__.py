"""Running untrusted code: researchers' shell commands and the referee's official runs of their ideas.

The code we run is written by agents whose incentive is a higher score, so the sandbox assumes it
will try to read labels, probe the scorer and exhaust the machine. Under bubblewrap a command sees:
a read-only /usr (and the /lib*, /bin symlinks), a handful of /etc files Python needs (not /etc
wholesale), a private /proc, /dev and /tmp, its writable workspace (+ scratch), the deployer's
read-only paths (venv, source tree) and at most one Unix socket (the referee's). /root, /home, other
agents' workspaces and the referee's data are simply absent. No network unless asked (own network
namespace). rlimits (CPU, address space, processes per uid, file size) and a wall clock that kills the
whole process group / pid namespace. The environment is built from scratch: API keys never leak.

Usage::

    uid = ensure_user("aar-agent-1")                     # root; idempotent
    ws = make_workspace(Path("/var/lib/aar/ws/agent-1"), uid)
    policy = SandboxPolicy(workspace=ws, uid=uid, ro_paths=python_binds() + [SOURCE_TREE])
    result = run_sandboxed([sys.executable, "-m", "aar", ...], policy)

Deployment notes (read these):

* Install bubblewrap: `scripts/install-system-deps.sh` (Debian/Ubuntu; no-op without apt or root).
  Without it, or where it cannot run, `run_sandboxed` falls back to a plain subprocess (same rlimits,
  uid drop and clean env; NO filesystem or network isolation), logs a warning, and reports
  `backend == "subprocess"`: such scores are not tamper-proof. `AAR_SANDBOX_BACKEND=subprocess`
  forces the fallback, `=bubblewrap` makes its absence an error.
* Run the referee/lab as root and give each agent its own uid (`ensure_user`): the uid drop needs
  root, and RLIMIT_NPROC is per uid. As root, bubblewrap builds the mount tree with root's eyes and
  `setpriv` drops to the agent's uid inside (see aar.sandbox.bwrap for why not `bwrap --uid`).
  Consequence: a venv whose base Python lives under /root (pyenv: /root is 0700) works in the
  bubblewrap sandbox unchanged; `python_binds()` returns the venv and the base prefix to bind.
  The fallback backend cannot do that: there a dropped uid cannot execute a Python under /root;
  build the venv from a Python outside /root (e.g. /usr/bin/python3 or /opt/python) if you need it.
* Called as a non-root user, bubblewrap uses an unprivileged user namespace instead (the kernel must
  allow it) and the command keeps the caller's uid; paths the caller cannot read cannot be bound.
* The referee's Unix socket must be connectable by agent uids (e.g. mode 0666, its directory can stay
  private: only the socket itself is bound). Identify peers with SO_PEERCRED: they carry their real
  uid. Everything under a bound ro path is visible to the agent (subject to file modes): keep referee
  data and secrets outside the source tree you bind.
* Limits: RLIMIT_AS counts virtual memory, so libraries that reserve big address ranges (torch, CUDA,
  many BLAS threads) need a larger `memory_bytes` than their resident size. No cgroup limit is set
  (this kernel's memory controller is cgroup v1; not worth the plumbing). Workspace parents must not
  be writable by the agent, and symlinks in workspace/scratch/socket paths are refused.
* rlimits are set in a `preexec_fn` (only setrlimit calls), which CPython documents as unsafe in
  heavily threaded parents; keep the call sites simple or run them from a process pool.
"""

from aar.sandbox.bwrap import bubblewrap_available, bubblewrap_problem, bwrap_argv
from aar.sandbox.paths import python_binds
from aar.sandbox.policy import SandboxPolicy, SandboxResult
from aar.sandbox.run import BACKEND_ENV, base_env, run_sandboxed
from aar.sandbox.users import ensure_user, make_workspace, primary_gid

__all__ = [
    "BACKEND_ENV",
    "SandboxPolicy",
    "SandboxResult",
    "base_env",
    "bubblewrap_available",
    "bubblewrap_problem",
    "bwrap_argv",
    "ensure_user",
    "make_workspace",
    "primary_gid",
    "python_binds",
    "run_sandboxed",
]
