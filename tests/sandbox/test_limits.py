"""Whole-tree limits, /tmp on disk, the seccomp filter, exec-time rlimits and signal reset.

Each test is an attack (or a property) that the sandbox without these barriers lets through: several
processes each under RLIMIT_AS adding up to twice the memory limit, a RAM-backed /dev/shm or /tmp,
filling the disk, creating a user namespace, a background job's ignored SIGINT. Limits are tested in
both modes where the host allows: "cgroup" (skipped, with the reason, when no cgroup is usable) and
"watchdog" (always possible).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import pytest

import aar.sandbox
from aar.sandbox import SandboxPolicy, limits_mode, run_sandboxed
from aar.sandbox import limits as limits_module
from tests.sandbox.helpers import (
    CGROUP,
    LIMIT_MODES,
    PY,
    PeakMemory,
    gone,
    needs_bwrap,
    needs_cgroup,
    needs_root,
    pids_where,
    py,
    sh,
)

MiB = 1 << 20
# What the tree may hold above the limit: a cgroup is exact (its count includes page cache and kernel
# memory, so resident anonymous memory stays below it); the watchdog can overshoot by what the tree
# allocates between two polls (about 20-50 ms near the limit).
MARGIN = {"cgroup": 16 * MiB, "watchdog": 160 * MiB}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small(policy: SandboxPolicy) -> SandboxPolicy:
    policy.memory_bytes, policy.wall_timeout = 256 * MiB, 20
    return policy


def _grow(mib: int, marker: str) -> str:
    """Python that allocates `mib` MiB (touched) in 16 MiB steps, then holds it."""
    return (
        f"import sys, time; sys.argv.append({marker!r}); b = []\n"
        f"for _ in range({mib // 16}): b.append(b'x' * (16 << 20))\n"
        "print('holding', flush=True); time.sleep(30)"
    )


@needs_bwrap
@pytest.mark.parametrize("limits", LIMIT_MODES)
def test_memory_of_many_processes_is_bounded(small: SandboxPolicy, agent: int, limits: str) -> None:
    marker = f"grow-{os.getpid()}-{limits}"
    one = run_sandboxed(py(_grow(160, marker).replace("time.sleep(30)", "pass")), small, limits=limits)
    assert one.stdout == "holding\n", one.stderr  # control: one process fits under its own RLIMIT_AS
    code = _grow(160, marker)  # x4 = 640 MiB, 2.5 times the limit, each process well under RLIMIT_AS
    with PeakMemory(agent) as seen:
        four = sh(f'for i in 1 2 3 4; do {PY} -c "$0" & done; wait') + [code]
        r = run_sandboxed(four, small, limits=limits)
    assert "memory limit" in r.violations and not r.timed_out and r.seconds < 10, (r.violations, r.stderr)
    assert r.limits == limits_mode(limits)
    assert small.memory_bytes // 2 < seen.peak <= small.memory_bytes + MARGIN[limits], seen.peak // MiB
    assert r.peak_memory_bytes is not None and r.peak_memory_bytes <= small.memory_bytes + MARGIN[limits]
    assert gone(lambda uid, cmd: uid == agent and marker in cmd)


@needs_bwrap
@pytest.mark.parametrize("limits", LIMIT_MODES)
def test_shared_memory_counts_towards_memory(small: SandboxPolicy, agent: int, limits: str) -> None:
    small.shm_bytes = 2 * small.memory_bytes  # even where the deployer allows a big /dev/shm
    with PeakMemory(agent) as seen:
        r = run_sandboxed(
            sh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=512 2>&1; sleep 30"), small, limits=limits
        )
    assert "memory limit" in r.violations and not r.timed_out and r.seconds < 10, (r.violations, r.stderr)
    assert seen.peak <= small.memory_bytes + MARGIN[limits], seen.peak // MiB


@needs_bwrap
def test_dev_shm_and_tmp_are_bounded_and_tmp_is_on_disk(small: SandboxPolicy, base: Path) -> None:
    script = (
        "stat -f -c %T /tmp; df -B1 --output=size /dev/shm | tail -1; "
        "echo x > /tmp/f && ls -ld /tmp | cut -c1-10; cat /proc/self/mountinfo"
    )
    r = run_sandboxed(sh(script), small)
    fstype, shm_size, mode, *mountinfo = r.stdout.splitlines()
    tmp_mount = [line.split(" - ")[1].split()[0] for line in mountinfo if line.split()[4] == "/tmp"]
    assert fstype != "tmpfs" and tmp_mount and "tmpfs" not in tmp_mount, r.stdout  # disk, under the quota
    assert int(shm_size) == small.memory_bytes  # default /dev/shm size: the memory limit, not half the RAM
    assert mode == "drwx------"  # the agent's own, nobody else's
    assert not list(base.glob(".aar-tmp-*"))  # removed after the command


def test_tmp_of_plain_subprocess_is_on_disk(small: SandboxPolicy, base: Path) -> None:
    r = run_sandboxed(sh('stat -f -c %T "$TMPDIR"; echo "$TMPDIR"'), small, backend="subprocess")
    fstype, tmpdir = r.stdout.split()
    assert fstype != "tmpfs" and tmpdir != "/tmp" and not Path(tmpdir).exists(), r.stdout


@needs_bwrap
@pytest.mark.parametrize("how", ["tmp", "unlinked", "exits"])
def test_disk_quota(small: SandboxPolicy, base: Path, how: str) -> None:
    small.disk_bytes = 64 * MiB
    fill = "dd if=/dev/zero bs=1M count=256 status=none"
    script = {
        "tmp": f"{fill} of=/tmp/fill; sleep 30",
        "unlinked": f"exec 3>/tmp/fill; rm /tmp/fill; {fill} >&3; sleep 30",  # invisible to a walk
        "exits": f"{fill} of=$HOME/fill",  # done before the next poll: caught after the command
    }[how]
    r = run_sandboxed(sh(script), small)
    assert "disk quota" in r.violations and not r.timed_out and r.seconds < 10, (r.violations, r.stderr)
    if how != "exits":
        assert r.returncode != 0  # killed
    assert not list(base.glob(".aar-tmp-*"))
    (small.workspace / "fill").unlink(missing_ok=True)  # the quota counts what the workspace keeps
    ok = run_sandboxed(sh("dd if=/dev/zero of=/tmp/f bs=1M count=16 status=none"), small)
    assert ok.returncode == 0 and ok.violations == [], ok.violations  # control: within the quota


_NR = {
    "x86_64": {"unshare": 272, "clone": 56, "clone3": 435},
    "aarch64": {"unshare": 97, "clone": 220, "clone3": 435},
}
_USERNS_PROBE = """
import ctypes, os
nr = %r
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
def errno_of(r):
    return 'ok' if r >= 0 else os.strerror(ctypes.get_errno())
print('unshare', errno_of(libc.syscall(L(nr['unshare']), L(0x10000000))))
pid = libc.syscall(L(nr['clone']), L(0x10000000 | 17), L(0), L(0), L(0), L(0))
if pid == 0:
    os._exit(0)
if pid > 0:
    os.waitpid(pid, 0)
print('clone', errno_of(pid))
print('clone3', errno_of(libc.syscall(L(nr['clone3']), L(0), L(0))))
import subprocess, threading
threading.Thread(target=print, args=('threads work',)).start()
print(subprocess.run(['/bin/echo', 'fork works'], capture_output=True, text=True).stdout.strip())
"""


@needs_bwrap
def test_no_new_user_namespaces(policy: SandboxPolicy) -> None:
    machine = platform.machine()
    if machine not in _NR:
        pytest.skip(f"syscall numbers unknown for {machine}")
    control = run_sandboxed(sh("unshare -U true && echo allowed"), policy, backend="subprocess")
    if control.stdout != "allowed\n":
        pytest.skip(f"this host refuses user namespaces to the agent anyway: {control.stderr}")
    r = run_sandboxed(sh("unshare -U true; echo rc=$?; unshare -Ur id -u; echo rc=$?"), policy)
    assert r.stdout.split() == ["rc=1", "rc=1"] and "Operation not permitted" in r.stderr, r.stdout + r.stderr
    r = run_sandboxed(py(_USERNS_PROBE % _NR[machine]), policy)
    assert r.stdout.splitlines() == [
        "unshare Operation not permitted",
        "clone Operation not permitted",
        "clone3 Function not implemented",
        "threads work",
        "fork works",  # glibc falls back to clone
    ], r.stderr
    if machine == "x86_64":  # an x32 syscall number (getpid | __X32_SYSCALL_BIT): killed, not answered
        r = run_sandboxed(py("import ctypes; print(ctypes.CDLL(None).syscall(0x40000000 | 39))"), policy)
        assert r.stdout == "" and "forbidden syscall" in r.violations, (r.returncode, r.violations)


@needs_bwrap
@needs_cgroup
def test_cgroup_holds_the_whole_command(policy: SandboxPolicy, agent: int) -> None:
    policy.memory_bytes, policy.max_processes, policy.cpu_weight = 300 * MiB, 40, 50
    marker = f"cg-{os.getpid()}"  # bash's $0: in the cmdline of the shell and of its forks
    cmd = ["/bin/bash", "-c", "sleep 30 & while [ ! -e go ]; do sleep 0.02; done; kill $!; nice", marker]
    result: list = []
    thread = threading.Thread(target=lambda: result.append(run_sandboxed(cmd, policy, limits="cgroup")))
    thread.start()
    deadline = time.monotonic() + 10
    while not (pids := pids_where(lambda uid, cmd: uid == agent and marker in cmd)):
        assert time.monotonic() < deadline, "sandboxed command did not start"
        time.sleep(0.02)
    assert "Seccomp:\t2" in Path(f"/proc/{pids[0]}/status").read_text()  # the filter is installed
    assert CGROUP is not None
    paths = {
        c: p
        for _, c, p in (
            line.split(":", 2) for line in Path(f"/proc/{pids[0]}/cgroup").read_text().splitlines()
        )
    }

    def own(controller: str, parent: Path) -> Path:  # the sandbox's cgroup: a child of `parent`
        path = next(p for c, p in paths.items() if controller in c.split(","))
        assert Path(path).name.startswith("aar-sandbox-"), path
        return parent / Path(path).name

    if CGROUP.version == 2:
        mem = pids_dir = own("", CGROUP.memory)
        limit, cpu_file = "memory.max", "cpu.weight"
    else:
        mem, pids_dir = own("memory", CGROUP.memory), own("pids", CGROUP.pids)
        limit, cpu_file = "memory.limit_in_bytes", "cpu.shares"
    dirs = [mem, pids_dir]
    assert int((mem / limit).read_text()) == policy.memory_bytes
    assert int((pids_dir / "pids.max").read_text()) == policy.max_processes + 8
    if CGROUP.cpu is not None:
        cpu = own("" if CGROUP.version == 2 else "cpu", CGROUP.cpu)
        dirs.append(cpu)
        assert int((cpu / cpu_file).read_text()) == (50 if CGROUP.version == 2 else 512)
    (policy.workspace / "go").touch()
    thread.join(timeout=20)
    r = result[0]
    assert r.returncode == 0 and r.limits.startswith("cgroup"), r.stderr
    assert r.stdout.strip() == ("0" if CGROUP.cpu is not None else "3")  # nice only without cpu control
    assert not any(d.exists() for d in dirs)  # removed after the command


@needs_root
@pytest.mark.parametrize("backend", [pytest.param("bubblewrap", marks=needs_bwrap), "subprocess"])
def test_cpu_weight_becomes_nice_without_cgroup(policy: SandboxPolicy, backend: str) -> None:
    r = run_sandboxed(["nice"], policy, backend=backend, limits="watchdog")
    assert r.stdout == "10\n" and r.limits == "watchdog", r.stderr  # default cpu_weight 10 ~ nice 10
    policy.cpu_weight = 100
    assert run_sandboxed(["nice"], policy, backend=backend, limits="watchdog").stdout == "0\n"


_SIGINT_PROBE = """
import pathlib, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # like a shell's background job
from aar.sandbox import SandboxPolicy, run_sandboxed
ws, uid, ro, backend = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[4:], sys.argv[3]
code = "import signal; h = signal.getsignal(signal.SIGINT); print('ignored' if h == signal.SIG_IGN else h)"
probe = ['/usr/bin/python3', '-c', code]  # outside the venv: a plain subprocess's uid can run it
print(subprocess.run(probe, capture_output=True, text=True).stdout.strip())  # control: inherited
policy = SandboxPolicy(workspace=ws, uid=uid, ro_paths=[pathlib.Path(p) for p in ro], wall_timeout=20)
r = run_sandboxed(probe, policy, backend=backend)
print(r.stdout.strip(), r.stderr)
"""


@needs_root
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3")
@pytest.mark.parametrize("backend", [pytest.param("bubblewrap", marks=needs_bwrap), "subprocess"])
def test_sigint_is_default_inside_even_if_ignored_outside(
    policy: SandboxPolicy, agent: int, backend: str
) -> None:
    argv = [PY, "-c", _SIGINT_PROBE, str(policy.workspace), str(agent), backend, *map(str, policy.ro_paths)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0] == "ignored", out.stdout + out.stderr  # control: without the reset it is inherited
    assert lines[1].strip() == "<built-in function default_int_handler>", out.stdout + out.stderr


def test_no_preexec_fn() -> None:
    """preexec_fn is unsafe in a threaded parent (the referee is one): limits are set at exec time."""
    for path in Path(aar.sandbox.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                assert all(k.arg != "preexec_fn" for k in node.keywords), f"{path}:{node.lineno}"


def test_limits_mode_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(limits_module, "_announced", set())
    with caplog.at_level(logging.WARNING, logger="aar.sandbox"):
        assert limits_mode("watchdog") == "watchdog" == limits_mode("watchdog")
        monkeypatch.setenv(limits_module.LIMITS_ENV, "watchdog")
        assert limits_mode() == "watchdog"
    assert caplog.text.count("sandbox limits: WATCHDOG") == 1
    monkeypatch.setenv(limits_module.LIMITS_ENV, "cgroup")
    if CGROUP is None:
        with pytest.raises(RuntimeError, match="cgroup limits requested"):
            limits_mode()
    else:
        assert limits_mode() == f"cgroup-v{CGROUP.version}"
    with pytest.raises(ValueError):
        limits_mode("bogus")


_UNPRIVILEGED = """
import json, os, pathlib, sys
from aar.sandbox import SandboxPolicy, run_sandboxed
ws = pathlib.Path(os.environ['HOME'])
policy = SandboxPolicy(workspace=ws, memory_bytes=128 << 20, shm_bytes=256 << 20, wall_timeout=20)
probe = run_sandboxed(['/usr/bin/python3', '-c', sys.argv[1]], policy)
fill = 'dd if=/dev/zero of=/dev/shm/x bs=1M count=200 2>&1; sleep 30'
fill = run_sandboxed(['/bin/sh', '-c', fill], policy)
print(json.dumps([probe.backend, probe.stdout, probe.stderr, fill.limits, fill.violations, fill.seconds]))
"""


@needs_bwrap
@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists() or platform.machine() not in _NR,
    reason="needs /usr/bin/python3 and known syscall numbers",
)
def test_unprivileged_caller_gets_seccomp_and_the_watchdog(policy: SandboxPolicy, base: Path) -> None:
    """A non-root caller (the agent uid itself, via the fallback backend): bubblewrap in a user namespace
    still installs the filter, and the watchdog (no cgroup is writable for it) still sees its tree."""
    if not all(p.stat().st_mode & 0o001 for p in [REPO, *REPO.parents]):
        pytest.skip("the repo path is not enterable by other users")
    policy.env = {"PYTHONPATH": str(REPO)}
    r = run_sandboxed(
        ["/usr/bin/python3", "-c", _UNPRIVILEGED, _USERNS_PROBE % _NR[platform.machine()]],
        policy,
        backend="subprocess",
    )
    backend, stdout, stderr, limits, violations, seconds = json.loads(r.stdout.splitlines()[-1])
    assert backend == "bubblewrap" and stdout.splitlines()[:3] == [
        "unshare Operation not permitted",
        "clone Operation not permitted",
        "clone3 Function not implemented",
    ], stdout + stderr + r.stderr
    assert limits == "watchdog" and "memory limit" in violations and seconds < 10, (limits, violations)


@needs_bwrap
@needs_cgroup
def test_cgroups_left_by_a_killed_caller_are_collected(
    policy: SandboxPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CGROUP is not None
    stale = CGROUP.pids / f"aar-sandbox-stale-{os.getpid()}"
    stale.mkdir()
    try:
        os.utime(stale, (time.time() - 3600, time.time() - 3600))
        monkeypatch.setattr(limits_module, "_last_gc", -float("inf"))
        assert run_sandboxed(["true"], policy, limits="cgroup").returncode == 0
        assert not stale.exists()
    finally:
        if stale.exists():
            stale.rmdir()
