"""The sandbox against an adversarial agent: real processes, real uids, real sockets.

Each test attempts something an agent might try and checks both that it fails and (where it matters)
that the same probe succeeds without the barrier, so a broken barrier makes the test fail.
Most tests need root (they create agent users and drop to their uid); CI runs as root with
bubblewrap installed by scripts/install-system-deps.sh.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aar.sandbox import (
    BACKEND_ENV,
    SandboxPolicy,
    bwrap_argv,
    ensure_user,
    make_workspace,
    python_binds,
    run_sandboxed,
)
from tests.sandbox.helpers import (
    BACKENDS,
    LIMIT_MODES,
    PY,
    gone,
    needs_bwrap,
    needs_cgroup,
    needs_root,
    py,
    sh,
)


@needs_bwrap
def test_runs_as_agent_uid_without_privileges(policy: SandboxPolicy, agent: int) -> None:
    code = (
        "import os; s = open('/proc/self/status').read();"
        "caps = [l.split()[1] for l in s.splitlines() if l.startswith(('CapEff', 'CapPrm', 'CapBnd'))];"
        "nnp = [l.split()[1] for l in s.splitlines() if l.startswith('NoNewPrivs')];"
        "print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), caps, nnp);"
        "import multiprocessing; multiprocessing.Lock()"
    )  # needs a writable /dev/shm
    r = run_sandboxed(py(code), policy)
    assert r.backend == "bubblewrap" and r.returncode == 0, r.stderr
    gid = pwd.getpwuid(agent).pw_gid
    zero = "0000000000000000"
    assert r.stdout.split("\n")[0] == f"{agent} {agent} {gid} [] {[zero] * 3} ['1']"


@needs_bwrap
def test_bound_system_files_are_readable_by_the_agent(policy: SandboxPolicy, agent: int) -> None:
    """bwrap (as root) creates missing parents such as /etc 0700: the agent could read nothing below."""
    script = "id -un; test -r /etc/passwd && echo readable; ls /sys/devices/system/cpu | grep -c cpu"
    r = run_sandboxed(sh(script), policy)
    assert r.stdout.split()[:2] == [pwd.getpwuid(agent).pw_name, "readable"], r.stdout + r.stderr
    assert int(r.stdout.split()[2]) >= 1, r.stderr  # CPU topology (torch, BLAS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_root_only_file_is_unreadable(policy: SandboxPolicy, base: Path, backend: str) -> None:
    data = base / "data"
    data.mkdir(mode=0o755)
    (data / "public.txt").write_text("PUBLIC\n")
    (data / "labels.txt").write_text("SECRET-LABELS\n")
    (data / "labels.txt").chmod(0o600)
    policy.ro_paths.append(data)
    r = run_sandboxed(sh(f"cat {data}/public.txt; cat {data}/labels.txt"), policy, backend=backend)
    assert "PUBLIC" in r.stdout  # the file is there and the command ran...
    assert "SECRET" not in r.stdout  # ...but root's 0600 file stays closed
    assert "Permission denied" in r.stderr and r.returncode != 0
    assert "access denied" in r.violations


@needs_bwrap
def test_unbound_directory_is_invisible(policy: SandboxPolicy, base: Path) -> None:
    referee = base / "referee-data"
    referee.mkdir(mode=0o755)
    (referee / "final.jsonl").write_text("LABELS\n")  # world-readable: only invisibility protects it
    probe = sh(f"cat {referee}/final.jsonl; ls /root /home /var/lib 2>&1; cat /etc/shadow")
    r = run_sandboxed(probe, policy)
    assert "LABELS" not in r.stdout and "No such file" in r.stderr
    assert "shadow" in r.stderr and r.returncode != 0
    assert ".bashrc" not in r.stdout  # /root holds only what was bound (the pyenv interpreter)
    policy.ro_paths.append(referee)
    assert "LABELS" in run_sandboxed(probe, policy).stdout  # control: bound, it is readable


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_agents_workspace_is_unreadable(
    policy: SandboxPolicy, base: Path, agent_b: int, backend: str
) -> None:
    other = make_workspace(base / "ws-b", agent_b)
    (other / "notes.txt").write_text("B-SECRET-IDEA\n")
    os.chown(other / "notes.txt", agent_b, -1)
    policy.ro_paths.append(base)  # worst case: both workspaces under a bound directory
    r = run_sandboxed(sh(f"ls {other}; cat {other}/notes.txt"), policy, backend=backend)
    assert "B-SECRET" not in r.stdout and "notes.txt" not in r.stdout
    assert "Permission denied" in r.stderr


@needs_bwrap
def test_no_network(policy: SandboxPolicy) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    port = server.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    code = (
        f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        " print('connected')\nexcept OSError as e:\n print('refused', e)"
    )
    try:
        r = run_sandboxed(py(code), policy)
        assert r.stdout.startswith("refused") and accepted == []
        policy.network = True  # control: with the host's network the same probe gets through
        r = run_sandboxed(py(code), policy)
        assert r.stdout.startswith("connected") and len(accepted) == 1
    finally:
        stop.set()
        thread.join()
        server.close()


@needs_bwrap
def test_cannot_write_outside_workspace(policy: SandboxPolicy, base: Path, agent: int) -> None:
    mine_ro = make_workspace(base / "code", agent, mode=0o755)  # owned by the agent: only the mount stops it
    scratch = make_workspace(base / "out", agent)
    policy.ro_paths.append(mine_ro)
    policy.scratch = scratch
    leak = f"aar-sbx-leak-{os.getpid()}"
    script = (
        f"echo x > {mine_ro}/f; echo x > /usr/f; echo x > /etc/f; echo x > /{leak}; "
        f"echo x > /tmp/{leak}; echo ok > $HOME/w; echo ok > {scratch}/w"
    )
    r = run_sandboxed(sh(script), policy)
    assert r.stderr.count("Read-only file system") + r.stderr.count("Permission denied") >= 4, r.stderr
    assert not (mine_ro / "f").exists() and not Path("/usr/f").exists() and not Path("/etc/f").exists()
    assert not Path(f"/{leak}").exists() and not Path(f"/tmp/{leak}").exists()  # /tmp is private
    assert (policy.workspace / "w").read_text() == "ok\n" and (scratch / "w").read_text() == "ok\n"


@pytest.mark.parametrize(
    "backend, limits",
    [
        pytest.param("bubblewrap", "cgroup", marks=[needs_bwrap, needs_cgroup]),
        pytest.param("bubblewrap", "watchdog", marks=needs_bwrap),
        ("subprocess", None),
    ],
)
def test_fork_bomb_is_contained(policy: SandboxPolicy, agent: int, backend: str, limits: str | None) -> None:
    policy.max_processes, policy.wall_timeout = 32, 3
    marker = f"bomb-{os.getpid()}-{backend}-{limits}"  # bash $0: in every forked copy's cmdline
    bomb = ["/bin/bash", "-c", "b() { b | b & }; b; sleep 5", marker]
    r = run_sandboxed(bomb, policy, backend=backend, max_output=20_000, limits=limits)
    assert r.timed_out and r.seconds < 10
    assert "fork limit" in r.violations, (r.violations, r.stderr[-500:])
    assert gone(lambda uid, cmd: uid == agent and marker in cmd), "fork bomb processes survived the sandbox"
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


@needs_bwrap
def test_memory_bomb_fails_cleanly(policy: SandboxPolicy) -> None:
    policy.memory_bytes = 512 << 20
    r = run_sandboxed(py(f"b = bytearray({10 * policy.memory_bytes}); print('allocated')"), policy)
    assert "allocated" not in r.stdout and r.returncode != 0 and not r.timed_out
    assert "memory limit" in r.violations, r.stderr
    ok = run_sandboxed(py(f"b = bytearray({policy.memory_bytes // 4}); print('allocated')"), policy)
    assert ok.stdout == "allocated\n"  # control: within the limit it works


@pytest.mark.parametrize("backend", BACKENDS)
def test_wall_timeout_kills_the_whole_group(policy: SandboxPolicy, backend: str) -> None:
    marker = f"{4000 + os.getpid() % 1000}.{'12' if backend == 'subprocess' else '34'}"
    policy.wall_timeout = 1.0
    script = f"sleep {marker} & sleep {marker}"
    if backend == "bubblewrap":  # a new session escapes the process group, not the pid namespace
        script = f"setsid sleep {marker} & " + script
    r = run_sandboxed(sh(script), policy, backend=backend)
    assert r.timed_out and "timeout" in r.violations
    assert 1.0 <= r.seconds < 5
    assert gone(lambda _, cmd: marker in cmd), "a grandchild outlived the timeout"


@needs_bwrap
def test_bound_unix_socket_works(policy: SandboxPolicy, base: Path, agent: int) -> None:
    private = base / "referee"
    private.mkdir(mode=0o700)
    (private / "labels.jsonl").write_text("LABELS\n")
    path = private / "referee.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o666)
    server.listen(1)
    server.settimeout(20)
    peers: list[int] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            peers.append(int.from_bytes(creds[4:8], sys.byteorder))
            conn.sendall(b"pong " + conn.recv(100) + f" uid={peers[0]}".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    policy.unix_socket = path
    code = (
        "import socket\ns = socket.socket(socket.AF_UNIX); s.connect(%r); s.sendall(b'ping')\n"
        "print(s.recv(100).decode())\ntry: open(%r)\nexcept OSError as e: print(type(e).__name__)"
    )
    r = run_sandboxed(py(code % (str(path), str(private / "labels.jsonl"))), policy)
    thread.join(timeout=5)
    server.close()
    assert r.stdout.splitlines() == [f"pong ping uid={agent}", "FileNotFoundError"], r.stderr
    assert stat.S_ISSOCK(path.stat().st_mode)  # the sandbox could not replace it


@needs_root
@pytest.mark.parametrize("limits", LIMIT_MODES)  # cgroup: joined as root, then setpriv; else Popen(user=)
def test_fallback_backend_when_forced(
    policy: SandboxPolicy,
    agent: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    limits: str,
) -> None:
    monkeypatch.setenv(BACKEND_ENV, "subprocess")
    with caplog.at_level(logging.WARNING, logger="aar.sandbox"):
        r = run_sandboxed(
            ["/bin/bash", "-c", "id -u; id -G; ulimit -v; ulimit -u; pwd; echo $HOME"], policy, limits=limits
        )
    assert r.backend == "subprocess" and r.limits.startswith(limits), r.stderr
    assert r.stdout.split() == [
        str(agent),
        str(pwd.getpwuid(agent).pw_gid),
        str(policy.memory_bytes // 1024),
        str(policy.max_processes),
        str(policy.workspace),
        str(policy.workspace),
    ]
    assert "NOT tamper-proof" in caplog.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_environment_does_not_leak(
    policy: SandboxPolicy, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-LEAKED")
    policy.env = {"AAR_REFEREE_SOCKET": "/run/aar.sock"}
    r = run_sandboxed(["/usr/bin/env"], policy, backend=backend)
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert "LEAKED" not in r.stdout and "ANTHROPIC_API_KEY" not in env
    assert env["HOME"] == str(policy.workspace) and env["AAR_REFEREE_SOCKET"] == "/run/aar.sock"


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_limit(policy: SandboxPolicy, backend: str) -> None:
    policy.cpu_seconds = 1
    r = run_sandboxed(sh("while :; do :; done"), policy, backend=backend)
    assert not r.timed_out and "cpu limit" in r.violations, (r.returncode, r.violations)


@needs_root
def test_stdin_and_output_cap(policy: SandboxPolicy) -> None:
    r = run_sandboxed(["cat"], policy, input="x" * 5000, max_output=1000)
    assert r.stdout.startswith("x" * 1000 + "\n[... 4000 more bytes")
    assert r.returncode == 0 and r.violations == ["output limit"]


@needs_root
def test_ensure_user_is_idempotent(agent: int) -> None:
    assert ensure_user("aar-sbxtest-a") == agent
    entry = pwd.getpwuid(agent)
    assert entry.pw_shell in ("/usr/sbin/nologin", "/bin/false") and entry.pw_uid != 0
    with pytest.raises(ValueError):
        ensure_user("bad name; rm -rf /")


def test_bwrap_argv_isolates_by_default(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    argv = bwrap_argv(
        ["cmd"],
        SandboxPolicy(workspace=ws),
        bwrap="bwrap",
        privileged=True,
        drop_to=(1234, 1234),
        setpriv="/usr/bin/setpriv",
    )
    assert "--unshare-net" in argv and "--die-with-parent" in argv and "--new-session" in argv
    assert "--uid" not in argv and "--unshare-user" not in argv  # as root, no uid map back to root
    assert argv[argv.index("/usr/bin/setpriv") + 1] == "--reuid=1234" and argv[-1] == "cmd"
    sources = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try")}
    assert not sources & {"/", "/root", "/home", "/etc", "/var"}
    networked = bwrap_argv(
        ["cmd"], SandboxPolicy(workspace=ws, network=True), bwrap="bwrap", privileged=False, drop_to=None
    )
    assert "--unshare-net" not in networked and "--disable-userns" in networked
    (tmp_path / "link").symlink_to(ws)
    with pytest.raises(ValueError, match="symlink"):
        bwrap_argv(
            ["cmd"], SandboxPolicy(workspace=tmp_path / "link"), bwrap="bwrap", privileged=True, drop_to=None
        )


def test_python_binds_cover_the_interpreter() -> None:
    binds = python_binds(PY)
    assert Path(sys.prefix) in binds or sys.prefix == sys.base_prefix
    base = Path(sys.base_prefix).resolve()
    assert base in binds or str(base).startswith("/usr")


REPO = Path(__file__).resolve().parents[2]
SYSTEM_PY = Path("/usr/bin/python3")


def _others_can_import_repo() -> bool:
    return SYSTEM_PY.exists() and all(p.stat().st_mode & 0o001 for p in [REPO, *REPO.parents])


@needs_bwrap
@pytest.mark.skipif(
    not _others_can_import_repo(), reason="needs /usr/bin/python3 and a repo path other users can enter"
)
def test_unprivileged_caller_uses_a_user_namespace(policy: SandboxPolicy, agent: int) -> None:
    """A non-root caller (here: the agent uid itself, via the fallback backend) still gets bubblewrap."""
    inner = (
        "import os, pathlib; from aar.sandbox import SandboxPolicy, run_sandboxed\n"
        "ws = pathlib.Path(os.environ['HOME'])\n"
        "r = run_sandboxed(['/bin/sh', '-c', 'id -u; ls /'], SandboxPolicy(workspace=ws))\n"
        "print(r.backend, r.returncode, r.stdout.split(), r.stderr)"
    )
    policy.env = {"PYTHONPATH": str(REPO)}
    r = run_sandboxed([str(SYSTEM_PY), "-c", inner], policy, backend="subprocess")
    backend, rc, rest = r.stdout.split(" ", 2)
    assert (backend, rc) == ("bubblewrap", "0"), r.stdout + r.stderr
    assert rest.startswith(f"['{agent}', ") and "'root'" not in rest and "'home'" not in rest
