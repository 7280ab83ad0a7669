"""The researcher's sandbox, exercised the way researchers reach it (`aar agent exec`, the shell tool):
its own uid and private workspace, no TCP, no writes outside, limits that hold, the referee socket
working. The sandbox module's own adversarial tests live in tests/sandbox; these check the wiring."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from aar.agents.home import AgentHome, Limits
from aar.agents.runner import HomeRunner
from aar.agents.tools import Toolbox, ToolContext
from aar.sandbox import bubblewrap_available, bubblewrap_problem
from tests.agents.conftest import HOME_TASK

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: one uid per agent")
needs_bwrap = pytest.mark.skipif(
    not bubblewrap_available(), reason=f"bubblewrap unusable: {bubblewrap_problem()}"
)
pytestmark = [needs_root, needs_bwrap]


def aar_exec(home, *cmd, referee=None, token=None, timeout=60) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "aar.cli", "agent", "exec", "--workspace", str(home)]
    if referee is not None:
        args += ["--referee", str(referee.socket), "--token", token]
    return subprocess.run([*args, "--", *cmd], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def two_homes(base, agent_name):
    a = AgentHome.open(base / f"{agent_name}-a")
    b = AgentHome.open(base / f"{agent_name}-b")
    (b.workspace / "idea.py").write_text("B-SECRET-IDEA\n")
    os.chown(b.workspace / "idea.py", b.uid, -1)
    return a, b


def test_exec_runs_as_the_agents_own_uid_and_passes_the_exit_code(two_homes):
    a, b = two_homes
    assert a.uid != b.uid and a.uid != 0
    assert oct(a.workspace.stat().st_mode & 0o777) == "0o700" and a.workspace.stat().st_uid == a.uid
    r = aar_exec(a.root, "/bin/sh", "-c", "id -u; pwd; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout.split() == [str(a.uid), str(a.workspace)]


def test_cannot_read_other_agents_referee_data_or_root(two_homes, referee):
    a, b = two_homes
    probe = (
        f"cat {b.workspace}/idea.py; ls {b.workspace}; cat {referee.data}/manifest.json; "
        f"ls {referee.data}; ls -a /root; cat /root/.bashrc; cat {b.state}/transcript.jsonl"
    )
    r = aar_exec(a.root, "/bin/sh", "-c", probe)
    assert "B-SECRET" not in r.stdout and "idea.py" not in r.stdout
    assert HOME_TASK not in r.stdout and "tasks" not in r.stdout
    assert r.returncode != 0 and r.stderr.count("No such file") + r.stderr.count("Permission denied") >= 5
    # control: the owner reads its own file
    assert "B-SECRET" in aar_exec(b.root, "cat", "idea.py").stdout


def test_no_tcp_and_no_writes_outside_the_workspace(two_homes):
    a, _ = two_homes
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:  # the listener is closed when the test ends: nothing connected
            pass

    threading.Thread(target=accept, daemon=True).start()
    code = (
        "import socket\ntry:\n"
        f" socket.create_connection(('127.0.0.1', {port}), timeout=3)\n print('connected')\n"
        "except OSError as e:\n print('refused', e)"
    )
    try:
        r = aar_exec(a.root, sys.executable, "-c", code)
        assert r.stdout.startswith("refused") and not accepted
    finally:
        server.close()
    leak = f"aar-agents-leak-{os.getpid()}"
    r = aar_exec(
        a.root,
        "/bin/sh",
        "-c",
        f"echo x > /usr/{leak}; echo x > {a.root}/{leak}; echo x > {a.public}/{leak}; "
        f"echo x > /tmp/{leak}; echo ok > mine.txt; echo ok > {a.scratch}/s.txt",
    )
    assert (
        not os.path.exists(f"/usr/{leak}") and not (a.root / leak).exists() and not (a.public / leak).exists()
    )
    assert not os.path.exists(f"/tmp/{leak}")  # the sandbox's /tmp is private
    assert (a.workspace / "mine.txt").read_text() == "ok\n" and (a.scratch / "s.txt").read_text() == "ok\n"


def test_fork_and_memory_bombs_are_contained(base, agent_name):
    home = AgentHome.open(base / agent_name, limits=Limits(timeout=4, max_processes=40, memory_bytes=1 << 30))
    box = Toolbox(ToolContext(runner=HomeRunner(home), referee=None))
    start = time.monotonic()
    r = box.call("shell", {"command": "b() { b | b & }; b; sleep 30", "timeout": 4})
    assert r.is_error and "timeout" in r.content and time.monotonic() - start < 20
    mem = box.call(
        "shell", {"command": f"{sys.executable} -c 'b = bytearray(8 << 30); print(\"allocated\")'"}
    )
    assert mem.is_error and "allocated" not in mem.content and "MemoryError" in mem.content
    assert box.call("shell", {"command": "echo still alive"}).content.endswith("still alive")


def test_timeout_kills_the_whole_process_group(base, agent_name):
    home = AgentHome.open(base / agent_name)
    box = Toolbox(ToolContext(runner=HomeRunner(home), referee=None))
    marker = f"sleeper-{os.getpid()}-{time.monotonic_ns()}"
    r = box.call(
        "shell",
        {"command": f"(exec -a {marker} sleep 300) & (exec -a {marker} sleep 300) & wait", "timeout": 2},
    )
    assert r.is_error and "killed after 2 s" in r.content
    time.sleep(0.5)
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert alive == []


def test_referee_socket_works_from_inside(referee, base, agent_name):
    token = referee.add_agent(agent_name)
    home = base / agent_name
    r = aar_exec(
        home,
        sys.executable,
        "-m",
        "aar.agents.client",
        "leaderboard",
        '{"limit": 3}',
        referee=referee,
        token=token,
    )
    assert r.returncode == 0, r.stderr
    assert '"baseline": true' in r.stdout
    r = aar_exec(
        home,
        "aar",
        "agent",
        "tool",
        "forum_post",
        "--json-args",
        '{"title": "hello from the sandbox", "body": "b", "kind": "insight"}',
        referee=referee,
        token=token,
    )
    assert r.returncode == 0, r.stderr
    with referee.client(token) as http:
        assert (
            http.get("/posts", params={"author": agent_name}).json()["items"][0]["title"]
            == "hello from the sandbox"
        )
