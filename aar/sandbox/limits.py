"""Limits on a sandboxed command's whole process tree, not just each process.

rlimits are per process (RLIMIT_AS) or per uid (RLIMIT_NPROC): ten processes each under a 4 GiB
RLIMIT_AS hold 40 GiB, and RAM-backed /dev/shm is in no process's address space at all. So each
command also gets, in order of preference:

* **cgroup v2** (`cgroup-v2`): a child of our own cgroup (or of $AAR_SANDBOX_CGROUP, a directory the
  deployer delegated) with memory.max (+ swap.max 0, oom.group 1), pids.max and cpu.weight. Needs the
  memory and pids controllers enabled for children there and write access (root, or delegation).
* **cgroup v1** (`cgroup-v1`): children of our own cgroups in the memory and pids hierarchies (and
  cpu.shares in the cpu hierarchy when there is one).
* **watchdog** (`watchdog`): a thread polls the tree (descendants via /proc ppid links, plus, for the
  subprocess backend, processes carrying the command's AAR_SANDBOX_ID in their initial environment)
  and sums Pss_Anon + Pss_Shmem, the used bytes of the sandbox's private /dev/shm and unlinked
  memfds; past the limit it kills the whole sandbox ("memory limit"). Weaker than a cgroup: the tree
  can overshoot by what it allocates in one poll (tens of ms near the limit), page cache is not
  counted, and a subprocess-backend process that clears its environment and daemonizes escapes it.

A cgroup is joined without a race and without preexec_fn: the command line is prefixed with
`sh -c 'echo $$ > .../cgroup.procs; exec "$@"'`, run by the caller before bwrap/setpriv drop
privileges, so everything the command forks is born inside. The disk quota (workspace + scratch +
private /tmp, plus unlinked files still held open) is always polled by the watchdog thread: no
cgroup controller limits disk space. `AAR_SANDBOX_LIMITS=cgroup|watchdog|auto` forces a mode.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("aar.sandbox")

LIMITS_ENV = "AAR_SANDBOX_LIMITS"  # "cgroup", "watchdog" or "auto" (default)
CGROUP_ENV = "AAR_SANDBOX_CGROUP"  # optional: a cgroup v2 directory delegated to us for sandbox children
TAG_ENV = "AAR_SANDBOX_ID"  # set in every sandboxed command's environment: finds its processes
_PIDS_SLACK = 8  # bwrap's own processes (monitor, pid-1 reaper) on top of max_processes


# ---------------------------------------------------------------- where the cgroups are


@dataclass(frozen=True)
class CgroupHost:
    """Parent directories to create per-command cgroups in (v2: one directory for everything)."""

    version: int
    memory: Path
    pids: Path
    cpu: Path | None  # None: no cpu control there (the sandbox is niced instead)


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _cgroup_mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root within the hierarchy, fstype, super options) of cgroup file systems."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            found.append((_unescape(fields[4]), _unescape(fields[3]), tail[0], set(tail[2].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """controller -> our cgroup path ("" is the v2 hierarchy), from /proc/self/cgroup."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                own[name] = path
    return own


def _inside(mountpoint: str, root: str, path: str) -> Path:
    root = root.rstrip("/")
    rel = path[len(root) :] if root and (path == root or path.startswith(root + "/")) else path
    return Path(mountpoint) / rel.lstrip("/")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _probe_child(parent: Path, required: Iterable[str]) -> None:
    """Create and remove a trial child of `parent`; raise OSError unless it has `required` files."""
    child = parent / f"aar-probe-{os.getpid()}-{os.urandom(4).hex()}"
    child.mkdir()
    try:
        for name in required:
            if not (child / name).exists():
                raise OSError(errno.ENOENT, f"{child / name} missing (controller not enabled for children)")
    finally:
        child.rmdir()


def _v2_host() -> tuple[CgroupHost | None, str]:
    mounts = [m for m in _cgroup_mounts() if m[2] == "cgroup2"]
    if not mounts:
        return None, "no cgroup v2 mount"
    mountpoint, root, _, _ = mounts[0]
    explicit = os.environ.get(CGROUP_ENV)
    parent = Path(explicit) if explicit else _inside(mountpoint, root, _own_cgroups().get("", "/"))
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
        if not {"memory", "pids"} <= available:
            return None, f"cgroup v2 at {parent} offers only {sorted(available) or 'no controllers'}"
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        for name in ("memory", "pids", "cpu"):
            if name in available and name not in enabled:
                try:
                    _write(parent / "cgroup.subtree_control", f"+{name}")
                    enabled.add(name)
                except OSError as exc:
                    if name != "cpu":  # EBUSY: our own cgroup holds processes (set $AAR_SANDBOX_CGROUP)
                        return None, f"cannot enable {name} for children of {parent}: {exc.strerror}"
        _probe_child(parent, ["memory.max", "pids.max"])
    except OSError as exc:
        return None, f"cgroup v2 at {parent} not usable: {exc.strerror or exc}"
    return CgroupHost(2, parent, parent, parent if "cpu" in enabled else None), ""


def _v1_host() -> tuple[CgroupHost | None, str]:
    own = _own_cgroups()
    dirs: dict[str, Path] = {}
    for mountpoint, root, fstype, options in _cgroup_mounts():
        if fstype != "cgroup":
            continue
        for name in ("memory", "pids", "cpu"):
            if name in options and name not in dirs and name in own:
                dirs[name] = _inside(mountpoint, root, own[name])
    missing = [name for name in ("memory", "pids") if name not in dirs]
    if missing:
        return None, f"no cgroup v1 {' or '.join(missing)} hierarchy"
    try:
        _probe_child(dirs["memory"], ["memory.limit_in_bytes", "cgroup.procs"])
        _probe_child(dirs["pids"], ["pids.max", "cgroup.procs"])
    except OSError as exc:
        return None, f"cgroup v1 not writable: {exc.strerror or exc}"
    cpu = dirs.get("cpu")
    if cpu is not None:
        try:
            _probe_child(cpu, ["cpu.shares"])
        except OSError:
            cpu = None
    return CgroupHost(1, dirs["memory"], dirs["pids"], cpu), ""


@functools.lru_cache(maxsize=4)
def _detect(explicit: str | None) -> tuple[CgroupHost | None, str]:
    del explicit  # part of the cache key only: $AAR_SANDBOX_CGROUP changes the answer
    v2, why2 = _v2_host()
    if v2 is not None:
        return v2, ""
    v1, why1 = _v1_host()
    if v1 is not None:
        return v1, ""
    return None, f"{why2}; {why1}"


def cgroup_host() -> tuple[CgroupHost | None, str]:
    """The usable cgroup setup (probed once), or None and why not."""
    return _detect(os.environ.get(CGROUP_ENV))


_announced: set[str] = set()
_announce_lock = threading.Lock()


def _announce(mode: str, why: str) -> None:
    with _announce_lock:
        if mode in _announced:
            return
        _announced.add(mode)
    if mode == "watchdog":
        log.warning(
            "sandbox limits: WATCHDOG (polls the tree's memory; weaker than a cgroup)%s",
            f": cgroups unusable here ({why})" if why else " (forced)",
        )
    else:
        log.warning("sandbox limits: %s per command (memory, pids, cpu weight)", mode)


def limits_mode(requested: str | None = None) -> str:
    """Which mechanism bounds a sandboxed command's whole tree here: "cgroup-v2", "cgroup-v1" or
    "watchdog". `requested` (else $AAR_SANDBOX_LIMITS): "cgroup" (raise if unusable), "watchdog" or
    "auto" (default). Logs the choice once per process."""
    name = (requested or os.environ.get(LIMITS_ENV) or "auto").lower()
    if name not in ("auto", "cgroup", "watchdog"):
        raise ValueError(f"unknown sandbox limits mode {name!r} (cgroup, watchdog or auto)")
    why = ""
    if name != "watchdog":
        host, why = cgroup_host()
        if host is not None:
            mode = f"cgroup-v{host.version}"
            _announce(mode, "")
            return mode
        if name == "cgroup":
            raise RuntimeError(f"cgroup limits requested but unusable: {why}")
    _announce("watchdog", why)
    return "watchdog"


def nice_for(weight: int) -> int:
    """The nice value whose CFS weight relative to nice 0 is about weight/100 (a step is ~1.25x)."""
    if weight >= 100:
        return 0
    return min(19, max(0, round(math.log(100 / max(weight, 1)) / math.log(1.25))))


# ---------------------------------------------------------------- one command's cgroup


def _read_int(path: Path, key: str | None = None) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    if key is None:
        return int(text.split()[0]) if text.split() else None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return None


_STALE_AFTER = 60.0  # seconds: an empty sandbox cgroup this old lost its creator (killed mid-command)
_gc_lock = threading.Lock()
_last_gc = -math.inf


def collect_stale_cgroups(host: CgroupHost) -> None:
    """Remove empty aar-sandbox-* cgroups left by a caller that was killed before cleaning up (at most
    once a minute). A live one always holds the command's processes, from its start to its end."""
    global _last_gc
    with _gc_lock:
        if time.monotonic() - _last_gc < _STALE_AFTER:
            return
        _last_gc = time.monotonic()
    for parent in {host.memory, host.pids, *([host.cpu] if host.cpu else [])}:
        try:
            stale = [
                d for d in parent.glob("aar-sandbox-*") if time.time() - d.stat().st_mtime > _STALE_AFTER
            ]
        except OSError:
            continue
        for path in stale:
            with contextlib.suppress(OSError):
                if not (path / "cgroup.procs").read_text().strip():
                    path.rmdir()


class SandboxCgroup:
    """The cgroup(s) of one command: created with its limits, joined via `join_prefix`, removed."""

    def __init__(
        self, host: CgroupHost, name: str, *, memory_bytes: int, max_processes: int, cpu_weight: int
    ) -> None:
        self.host, self.name = host, name
        self.dirs: list[Path] = []
        collect_stale_cgroups(host)
        try:
            if host.version == 2:
                self.memory = self.pids = self._make(host.memory)
                _write(self.memory / "memory.max", str(memory_bytes))
                with contextlib.suppress(OSError):
                    _write(self.memory / "memory.swap.max", "0")
                with contextlib.suppress(OSError):
                    _write(self.memory / "memory.oom.group", "1")  # an OOM kill takes the whole command
                _write(self.pids / "pids.max", str(max_processes + _PIDS_SLACK))
                self.cpu = self.memory if host.cpu is not None else None
                if self.cpu is not None:
                    _write(self.cpu / "cpu.weight", str(min(10000, max(1, cpu_weight))))
            else:
                self.memory = self._make(host.memory)
                _write(self.memory / "memory.limit_in_bytes", str(memory_bytes))
                with contextlib.suppress(OSError):  # only with swap accounting; must be >= the limit
                    _write(self.memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                self.pids = self._make(host.pids)
                _write(self.pids / "pids.max", str(max_processes + _PIDS_SLACK))
                self.cpu = None
                if host.cpu is not None:
                    try:
                        cpu = self._make(host.cpu)
                        _write(cpu / "cpu.shares", str(max(2, round(1024 * cpu_weight / 100))))
                        self.cpu = cpu
                    except OSError:
                        pass
        except BaseException:
            self.remove()
            raise

    def _make(self, parent: Path) -> Path:
        path = parent / self.name
        path.mkdir()
        self.dirs.append(path)
        return path

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def join_prefix(self, sh: str) -> list[str]:
        """argv prefix that moves itself into every cgroup, then execs the rest (exit 125 if it can't)."""
        script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
        return [sh, "-c", script, "aar-sandbox-cgroup", *self.procs_files, "--"]

    def pids_now(self) -> list[int]:
        try:
            return [int(p) for p in (self.memory / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def oom_kills(self) -> int:
        if self.host.version == 2:
            return _read_int(self.memory / "memory.events", "oom_kill") or 0
        return _read_int(self.memory / "memory.oom_control", "oom_kill") or 0

    def peak_memory(self) -> int | None:
        if self.host.version == 2:
            return _read_int(self.memory / "memory.peak")
        return _read_int(self.memory / "memory.max_usage_in_bytes")

    def _member(self, pid: int) -> bool:
        try:
            return f"/{self.name}" in Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False

    def kill(self, rounds: int = 200) -> bool:
        """SIGKILL every member until none is left (a fork bomb is bounded by pids.max). True if empty."""
        if self.host.version == 2:
            with contextlib.suppress(OSError):
                _write(self.memory / "cgroup.kill", "1")
        for _ in range(rounds):
            pids = self.pids_now()
            if not pids:
                return True
            for pid in pids:
                kill_checked(pid, self._member)
            time.sleep(0.005)
        return not self.pids_now()

    def remove(self) -> None:
        if self.dirs and not self.kill():
            log.warning("sandbox cgroup %s still has processes", self.name)
        for path in reversed(self.dirs):
            for attempt in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 99:
                        log.warning("could not remove sandbox cgroup %s: %s", path, exc)
                        break
                    time.sleep(0.01)
        self.dirs = []


# ---------------------------------------------------------------- processes, memory, disk


def kill_checked(pid: int, still_ours: Callable[[int], bool]) -> None:
    """SIGKILL `pid` only if, once pinned by a pidfd, it is still the process we mean (no pid reuse)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if still_ours(pid):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stat(pid: int | str) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) from /proc/PID/stat, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()  # the command name may hold spaces and parens
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _tagged(pid: int, tag: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return tag in f.read().split(b"\0")
    except OSError:
        return False


def process_tree(root: int, *, tag: str | None = None, uid: int | None = None) -> dict[int, int]:
    """pid -> start time of `root` and all its descendants; with `tag`, also processes of `uid` whose
    initial environment carries AAR_SANDBOX_ID=tag (daemonized ones), and their descendants."""
    table: dict[int, tuple[int, int]] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and (info := _stat(entry.name)) is not None:
                table[int(entry.name)] = info
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    roots = [root] if root in table else []
    if tag is not None:
        wanted = f"{TAG_ENV}={tag}".encode()
        for pid in table:
            if pid == root:
                continue
            try:
                if uid is not None and os.stat(f"/proc/{pid}").st_uid != uid:
                    continue
            except OSError:
                continue
            if _tagged(pid, wanted):
                roots.append(pid)
    tree: dict[int, int] = {}
    stack = roots
    while stack:
        pid = stack.pop()
        if pid in tree or pid not in table:
            continue
        tree[pid] = table[pid][1]
        stack.extend(children.get(pid, []))
    return tree


def same_start(tree: dict[int, int]) -> Callable[[int], bool]:
    def check(pid: int) -> bool:
        info = _stat(pid)
        return info is not None and info[1] == tree.get(pid)

    return check


def process_memory(pid: int) -> int:
    """Proportional anonymous + shared-memory bytes of `pid` (copy-on-write pages counted once).
    Walks the page tables (smaps_rollup): use `process_rss` first, it is an upper bound."""
    values: dict[bytes, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                key, _, rest = line.partition(b":")
                if key in (b"Pss_Anon", b"Pss_Shmem"):
                    values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return sum(values.values()) if values else process_rss(pid)  # older kernels: no Pss_* lines


def process_rss(pid: int) -> int:
    """RssAnon + RssShmem of `pid` (kernel counters, cheap; pages shared after fork count in each)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith((b"RssAnon:", b"RssShmem:")):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return total


def descendants(roots: Iterable[int]) -> list[int]:
    """`roots` and their live descendants via /proc/PID/task/TID/children: cost grows with the tree,
    not with the host. May miss a process forked mid-walk; the periodic full scan catches it."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    stack.extend(int(child) for child in f.read().split())
            except (OSError, ValueError):
                continue
    return list(seen)


def _host_dev(path: str) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def sandbox_shm_used(pids: Iterable[int]) -> tuple[int, int | None]:
    """(used bytes, the pid it was read through) of the sandbox's private /dev/shm, seen through
    /proc/PID/root of a process inside; (0, None) before bwrap has mounted it."""
    host = _host_dev("/dev/shm")
    for pid in pids:
        path = f"/proc/{pid}/root/dev/shm"
        try:
            if os.stat(path).st_dev == host:
                continue  # still (or never) in the host's mount namespace
            vfs = os.statvfs(path)
        except OSError:
            continue
        return (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize, pid
    return 0, None


def disk_usage(paths: Iterable[Path]) -> tuple[int, set[int]]:
    """(allocated bytes under `paths`, their devices): no symlinks followed, no other file systems
    entered, hard links counted once."""
    seen: set[tuple[int, int]] = set()
    devices: set[int] = set()
    total = 0
    for top in paths:
        try:
            st = os.lstat(top)
        except OSError:
            continue
        devices.add(st.st_dev)
        total += st.st_blocks * 512
        seen.add((st.st_dev, st.st_ino))
        stack = [(str(top), st.st_dev)]
        while stack:
            path, dev = stack.pop()
            try:
                with os.scandir(path) as it:
                    entries = list(it)
            except OSError:
                continue
            for entry in entries:
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if est.st_dev != dev or (est.st_dev, est.st_ino) in seen:
                    continue
                seen.add((est.st_dev, est.st_ino))
                total += est.st_blocks * 512
                if stat.S_ISDIR(est.st_mode):
                    stack.append((entry.path, dev))
    return total, devices


def unlinked_open_files(pids: Iterable[int], disk_devices: set[int]) -> tuple[int, int]:
    """(disk bytes, memfd bytes) of deleted files the tree still holds open: invisible to a walk."""
    seen: set[tuple[int, int]] = set()
    disk = memfd = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                st = os.stat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 0 or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                if os.readlink(path).startswith("/memfd:"):
                    memfd += st.st_blocks * 512
                elif st.st_dev in disk_devices:
                    disk += st.st_blocks * 512
            except OSError:
                continue
    return disk, memfd


# ---------------------------------------------------------------- the watchdog thread


class Watchdog(threading.Thread):
    """Polls one command's tree; kills it (via `kill`) past the memory limit or the disk quota.

    In cgroup modes the kernel enforces memory: the watchdog only notices OOM kills (and ends the whole
    command, like memory.oom.group) and watches the disk. Polling adapts so that it costs at most
    about a tenth of a core: fast near the memory limit, slower when far from it or when the
    workspace is big to walk.
    """

    def __init__(
        self,
        *,
        root: int,
        mode: str,
        cgroup: SandboxCgroup | None,
        memory_bytes: int,
        disk_bytes: int | None,
        disk_paths: list[Path],
        tag: str | None,
        uid: int | None,
        kill: Callable[[dict[int, int]], None],
    ) -> None:
        super().__init__(daemon=True, name="aar-sandbox-watchdog")
        self.root, self.mode, self.cgroup = root, mode, cgroup
        self.memory_bytes, self.disk_bytes, self.disk_paths = memory_bytes, disk_bytes, disk_paths
        self.tag, self.uid, self._kill = tag, uid, kill
        self.violations: list[str] = []
        self.peak_memory = 0
        self.tree: dict[int, int] = {}
        self._memfd = 0
        self._shm_pid: int | None = None
        self._next_scan = 0.0
        self._roots = {root}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    # -- measurements

    def members(self) -> dict[int, int]:
        """A full scan (all of /proc): the tree with start times, daemonized tagged processes too."""
        if self.cgroup is not None:
            return {pid: 0 for pid in self.cgroup.pids_now()}
        self.tree = process_tree(self.root, tag=self.tag, uid=self.uid)
        self._next_scan = time.monotonic() + 0.5
        if self.tag is not None:  # tagged processes not below root: walk down from them too until next scan
            self._roots = {self.root} | {
                pid for pid in self.tree if pid != self.root and (_stat(pid) or (0, 0))[0] not in self.tree
            }
        return self.tree

    def memory_now(self) -> int:
        """The tree's memory: a cheap upper bound (Rss), made precise (Pss) only when over the limit."""
        if time.monotonic() >= self._next_scan:
            pids = list(self.members())
        else:  # between full scans: walk down from the known roots
            pids = descendants(self._roots)
        order = ([self._shm_pid] if self._shm_pid in pids else []) + [p for p in pids if p != self.root]
        shm, self._shm_pid = sandbox_shm_used(order)
        used = sum(process_rss(pid) for pid in pids) + shm + self._memfd
        if used > self.memory_bytes:
            used = sum(process_memory(pid) for pid in pids) + shm + self._memfd
        return used

    def disk_now(self) -> int:
        used, devices = disk_usage(self.disk_paths)
        members = self.members() if self.cgroup is not None or not self.tree else self.tree
        held, self._memfd = unlinked_open_files(members, devices)
        return used + held

    # -- the loop

    def _trip(self, violation: str) -> None:
        with self._lock:
            if violation not in self.violations:
                self.violations.append(violation)
        self._kill(dict(self.tree))

    def _check_memory(self) -> float:
        """One memory check; returns how long to wait before the next one."""
        if self.cgroup is not None:
            if self.cgroup.oom_kills():
                self._trip("memory limit")
            return 0.1
        t0 = time.monotonic()
        used = self.memory_now()
        cost = time.monotonic() - t0
        self.peak_memory = max(self.peak_memory, used)
        if used > self.memory_bytes:
            self._trip("memory limit")
        near = used > self.memory_bytes // 2
        return max(0.02 if near else 0.05, 10 * cost)

    def _check_disk(self) -> float:
        t0 = time.monotonic()
        if self.disk_bytes is not None:
            if self.disk_now() > self.disk_bytes:
                self._trip("disk quota")
        elif self.cgroup is None:  # no quota: only look for unlinked memfds (memory)
            _, self._memfd = unlinked_open_files(self.tree, set())
        else:
            return math.inf
        return max(0.25, 20 * (time.monotonic() - t0))

    def run(self) -> None:
        next_disk = time.monotonic()
        try:
            while not self._stop_event.is_set() and not self.violations:
                wait = self._check_memory()
                if time.monotonic() >= next_disk and not self.violations:
                    next_disk = time.monotonic() + self._check_disk()
                self._stop_event.wait(wait)
        except Exception:  # a bug here must not leave the command unwatched silently
            log.exception("sandbox watchdog failed; killing the command")
            self._trip("watchdog error")

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join()

    def final_check(self) -> None:
        """After the command: one last disk check (it may fill the disk and exit between two polls)."""
        if self.disk_bytes is not None and "disk quota" not in self.violations:
            used, _ = disk_usage(self.disk_paths)
            if used > self.disk_bytes:
                self.violations.append("disk quota")
