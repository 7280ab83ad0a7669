"""Load bench for the referee: N simulated agents on loopback, mixing dev scoring, forum posts and reads.

Starts a real server (`aar referee serve`, one uvicorn process) on a fresh SQLite database (WAL,
synchronous=FULL), then runs N agents as asyncio tasks in this process (the load generator: its own
process, so its CPU is not the server's and the server's cost is not hidden in it). Each agent loops:
think (exponential, mean --think seconds: agents are LLMs and think between calls), then one action:
dev scoring (40%), a forum read (list / search / one post, 45%), or a forum post (15%). Prints
throughput, p50/p99 latency per kind, and the CPU time each process spent (the server's per request
is the cost the referee pays). Target (issue 14): p99 < 100 ms for dev scoring and < 50 ms for forum
reads with 100 agents at 1 s mean think time on 2 cores, with a SIGKILL of the referee mid-load still
losing no acknowledged write.

SIGKILL phase (on by default; --no-sigkill skips it): every agent records what the server acknowledged
(the id and author of each post answered 201, a count of dev queries answered 200), and the agents do
not stop at the end of --duration: at --sigkill-after seconds (default: the duration, i.e. at the end of
the measured window, while the agents are still sending) the bench SIGKILLs the server process itself
(the Python server, never a --server-prefix wrapper such as py-spy). It then opens the database
(SQLite, a file in the bench's temporary work dir, not in the data dir) and checks PRAGMA
integrity_check, that every acknowledged post is stored with its author, that each agent has at least
as many dev queries stored as were acknowledged, that each acknowledged post has its audit entry and
that the audit chain verifies from the genesis; then restarts the server on the same database, checks
that it serves all stored posts, and stops it with SIGTERM. Exit status 1 if anything acknowledged was
lost or a check failed.

Latencies, throughput and CPU are over the requests completed before the kill (or before the end of
--duration if that comes first); the window starts after the 50 seed posts. Requests in flight at the
kill fail with connection errors: they are counted as "after kill", never as errors, and are in no
latency (an answer processed after the kill is not timed either, but a write it acknowledges is checked).
Without the kill (--no-sigkill) the agents stop as they always did: each finishes the think and call it
is in when --duration ends, and the window includes that tail.

    .venv/bin/python bench/referee_load.py --agents 100 --duration 30
    .venv/bin/python bench/referee_load.py --no-sigkill   # latencies only, the server stopped with SIGTERM
    .venv/bin/python bench/referee_load.py --stacks pure,fast   # h11/asyncio vs httptools/uvloop, same load
    .venv/bin/python bench/referee_load.py --data /path/to/referee-data   # reuse an initialised data dir
    .venv/bin/python bench/referee_load.py --server-prefix "py-spy record -r 250 -f raw -o /tmp/s.txt --"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(data: Path | None, work: Path) -> Path:
    if data is not None:
        return data
    data = work / "data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "aar.cli",
            "referee",
            "init",
            str(data),
            "--fast",
            "--max-rows",
            "1500",
            "--tasks",
            "navigate",
            "--no-baselines",
        ],
        check=True,
    )
    return data


@dataclass
class Load:
    """What the agents share: latencies and errors, and each write the server acknowledged."""

    agents: int
    lat: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    posts: dict[int, int] = field(default_factory=dict)  # post id answered 201 -> the agent's index
    seed_posts: dict[int, int] = field(default_factory=dict)  # the same for the seed posts
    dev: list[int] = field(default_factory=list)  # dev queries answered 200, per agent
    window_end: float = math.inf  # time.monotonic(): a call answered after it is not timed
    killed_at: float | None = None  # time.monotonic() of the SIGKILL
    after_kill: int = 0  # calls that failed because the server was killed (in flight at the kill)
    untimed: int = 0  # calls answered after the window (after the kill, or past --duration)
    in_flight: int = 0  # calls sent and not yet answered, now
    in_flight_at_kill: int = 0
    agents_running_at_kill: int = 0

    def __post_init__(self) -> None:
        self.dev = [0] * self.agents


async def agent(
    i: int,
    client: httpx.AsyncClient,
    token: str,
    dev: dict,
    task: str,
    stop: float | None,
    think: float,
    load: Load,
) -> None:
    """One researcher: think, call, repeat; until ``stop`` (time.monotonic()), or with ``stop`` None
    until the server is killed."""
    rng = random.Random(i)
    nrng = np.random.default_rng(i)
    h = {"Authorization": f"Bearer {token}"}
    weak = np.array(list(dev.values()))
    ids = list(dev)
    while load.killed_at is None if stop is None else time.monotonic() < stop:
        await asyncio.sleep(rng.expovariate(1.0 / think))
        if load.killed_at is not None:
            return
        roll = rng.random()
        kind = "dev_evaluate" if roll < 0.40 else "forum_read" if roll < 0.85 else "forum_post"
        t0 = time.perf_counter()
        load.in_flight += 1
        try:
            if kind == "dev_evaluate":
                noise = np.clip(weak + nrng.normal(0, 0.1, len(ids)), 0, 1)
                r = await client.post(
                    "/dev/evaluate",
                    headers=h,
                    json={"task": task, "predictions": dict(zip(ids, noise.tolist(), strict=True))},
                )
            elif kind == "forum_read":
                which = rng.random()
                if which < 0.4:
                    r = await client.get("/posts", headers=h, params={"limit": 20})
                elif which < 0.7:
                    r = await client.get(
                        "/posts", headers=h, params={"q": rng.choice(["entropy", "logconf", "seed"])}
                    )
                else:
                    r = await client.get(f"/posts/{rng.randint(1, 50)}", headers=h)
            else:
                r = await client.post(
                    "/posts",
                    headers=h,
                    json={
                        "title": f"agent {i} note",
                        "body": "tried logconf with entropy weighting; seed variance large",
                        "kind": rng.choice(["insight", "hypothesis", "failure"]),
                        "tags": ["bench"],
                    },
                )
        except httpx.HTTPError as e:
            load.in_flight -= 1
            if load.killed_at is not None:
                load.after_kill += 1  # expected: the server is gone; nothing unacknowledged is owed
                return
            load.errors.append(f"{kind} {type(e).__name__} {str(e)[:100]}")
            continue
        dt = (time.perf_counter() - t0) * 1000
        load.in_flight -= 1
        if kind == "dev_evaluate" and r.status_code == 200:
            load.dev[i] += 1
        elif kind == "forum_post" and r.status_code == 201:
            load.posts[r.json()["id"]] = i
        if r.status_code >= 500 or (r.status_code >= 400 and r.status_code != 404):
            load.errors.append(f"{kind} {r.status_code} {r.text[:100]}")
        if load.killed_at is not None or time.monotonic() > load.window_end:
            load.untimed += 1
            continue
        load.lat.setdefault(kind, []).append(dt)


async def main_async(
    args,  # noqa: ANN001 (argparse namespace)
    base: str,
    tokens: list[str],
    dev: dict,
    task: str,
    load: Load,
    sample: Callable[[], tuple[float, float]],
    kill: Callable[[], None],
) -> tuple[float, tuple[float, float]]:
    """Seed posts, then the agents. Returns the seconds of the measured window and ``sample()`` at
    its end (CPU seconds of the server and of this process); with ``args.sigkill`` calls ``kill()``
    at ``args.sigkill_after`` seconds, the agents still sending, and waits for them to notice."""
    limits = httpx.Limits(max_connections=args.agents + 10, max_keepalive_connections=args.agents + 10)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        for k in range(50):  # something to read
            r = await client.post(
                "/posts",
                headers={"Authorization": f"Bearer {tokens[k % len(tokens)]}"},
                json={"title": f"seed post {k}", "body": f"logconf entropy seed {k}", "kind": "insight"},
            )
            if r.status_code == 201:
                load.seed_posts[r.json()["id"]] = k % len(tokens)
        start = time.monotonic()
        stop = start + args.duration
        tasks = [
            asyncio.create_task(
                agent(i, client, tokens[i], dev, task, None if args.sigkill else stop, args.think, load)
            )
            for i in range(args.agents)
        ]
        agents = asyncio.gather(*tasks)
        if not args.sigkill:
            await agents
            return time.monotonic() - start, sample()
        kill_at = start + args.sigkill_after
        end = min(stop, kill_at)
        load.window_end = end
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        seconds, cpu = time.monotonic() - start, sample()
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        load.in_flight_at_kill = load.in_flight
        load.agents_running_at_kill = sum(not t.done() for t in tasks)
        load.killed_at = time.monotonic()  # no await between this and the kill: any answer the agents
        kill()  # see from here on is processed after it (and is not timed)
        await asyncio.wait_for(agents, 60)
        return seconds, cpu


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--think", type=float, default=1.0, help="mean think time between an agent's calls (s)")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument(
        "--stacks",
        default="fast",
        help="server stacks to run one after the other on the same load, e.g. 'pure,fast' "
        "(aar.referee.peer.STACKS: fast = httptools on uvloop, pure = h11 on asyncio)",
    )
    ap.add_argument(
        "--server-prefix",
        default="",
        help="a command the server runs under, e.g. a profiler: 'py-spy record -r 250 -f raw -o s.txt --'",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--no-sigkill",
        dest="sigkill",
        action="store_false",
        help="no SIGKILL phase: the agents stop at the end of --duration and the server gets SIGTERM",
    )
    ap.add_argument(
        "--sigkill-after",
        type=float,
        default=None,
        help="SIGKILL the server this many seconds into the load (default: --duration, the end of the "
        "measured window); the agents send until then",
    )
    args = ap.parse_args()
    if args.sigkill_after is None:
        args.sigkill_after = args.duration
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="aar-bench-") as tmp:
        work = Path(tmp)
        data = prepare(args.data, work)
        results = {stack: run_once(args, data, work, stack) for stack in stacks}
    if len(stacks) > 1:
        first, last = stacks[0], stacks[-1]
        print(f"p99 ratio {first} / {last} (same load, one after the other):")
        for kind in sorted(results[last]["kinds"]):
            a, b = results[first]["kinds"][kind]["p99_ms"], results[last]["kinds"][kind]["p99_ms"]
            print(f"  {kind:<14}{a:>9.1f} / {b:>7.1f} ms = {a / b:.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps(results if len(stacks) > 1 else results[stacks[0]], indent=2))
    failed = [stack for stack, r in results.items() if "sigkill" in r and not r["sigkill"]["ok"]]
    if failed:
        print(f"SIGKILL check FAILED for stack(s) {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


def _serve(data: Path, db_url: str, port: int, stack: str, prefix: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *shlex.split(prefix),
            sys.executable,
            "-m",
            "aar.cli",
            "referee",
            "serve",
            "--data",
            str(data),
            "--db",
            db_url,
            "--port",
            str(port),
            "--executor",
            "none",
        ],
        env=dict(os.environ, AAR_REFEREE_STACK=stack),
    )


def _wait_healthy(base: str, server: subprocess.Popen) -> bool:
    for _ in range(300):
        if server.poll() is not None:
            return False
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.2)
    return False


def _cpu_pressure() -> str | None:
    """The first line of /proc/pressure/cpu ("some avg10=... avg60=... avg300=... total=..."), if any."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def run_once(args, data: Path, work: Path, stack: str) -> dict:  # noqa: ANN001 (argparse namespace)
    """One server on a fresh database, under the load (then killed and checked, with args.sigkill);
    prints and returns its numbers."""
    from aar.referee.auth import add_agent
    from aar.referee.datadir import DataStore
    from aar.referee.db import Database

    pressure_before, load_before = _cpu_pressure(), os.getloadavg()
    db_url = f"sqlite:///{work}/bench-{stack}.db"
    database = Database(db_url)
    database.create_all()
    tokens = [add_agent(database, f"bench{i}") for i in range(args.agents)]
    database.dispose()
    store = DataStore(data)
    task = store.home
    td = store.task(task)
    dev = {i: float(w) for i, w in zip(td.ids["dev"], td.weak("dev"), strict=True)}
    port = _free_port()
    server = _serve(data, db_url, port, stack, args.server_prefix)
    base = f"http://127.0.0.1:{port}/api/v1"
    load = Load(args.agents)
    try:
        if not _wait_healthy(base, server):
            sys.exit(f"[stack {stack}] the referee did not become healthy (exit {server.poll()}): see above")
        server_pid = _server_pid(server.pid, prefixed=bool(args.server_prefix))
        cpu0, own0 = _cpu_seconds(server_pid), _own_cpu_seconds()

        def sample() -> tuple[float, float]:
            return _cpu_seconds(server_pid) - cpu0, _own_cpu_seconds() - own0

        def kill() -> None:
            os.kill(server_pid, signal.SIGKILL)

        seconds, (server_cpu, own_cpu) = asyncio.run(
            main_async(args, base, tokens, dev, task, load, sample, kill)
        )
    finally:
        if load.killed_at is None:
            server.send_signal(signal.SIGINT if args.server_prefix else signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:  # a prefix that outlives its killed child
            server.send_signal(signal.SIGINT)
            server.wait(60)
    lat, errors = load.lat, load.errors
    total = sum(len(v) for v in lat.values())
    print(
        f"[stack {stack}] {args.agents} agents, {seconds:.1f} s, mean think {args.think} s, "
        f"{len(dev)} dev items, {os.cpu_count()} cores: {total} requests, {total / seconds:.1f} req/s, "
        f"{len(errors)} errors, load average {os.getloadavg()[0]:.2f} "
        f"(before: {load_before[0]:.2f}; cpu pressure before: {pressure_before})"
    )
    print(
        f"CPU: server {server_cpu:.1f} s ({100 * server_cpu / seconds:.0f}% of a core, "
        f"{1000 * server_cpu / max(total, 1):.2f} ms per request; seed posts included), "
        f"load generator {own_cpu:.1f} s ({100 * own_cpu / seconds:.0f}% of a core)"
    )
    print(f"{'kind':<14}{'n':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    rows = {}
    for kind in sorted(lat):
        v = np.array(lat[kind])
        rows[kind] = {
            "n": len(v),
            "per_s": len(v) / seconds,
            "p50_ms": float(np.percentile(v, 50)),
            "p99_ms": float(np.percentile(v, 99)),
            "max_ms": float(v.max()),
        }
        r = rows[kind]
        print(
            f"{kind:<14}{r['n']:>7}{r['per_s']:>9.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}"
        )
    for e in errors[:5]:
        print("error:", e)
    out = {
        "stack": stack,
        "agents": args.agents,
        "duration_s": seconds,
        "think_s": args.think,
        "dev_items": len(dev),
        "cores": os.cpu_count(),
        "load_average_1min_before": load_before[0],
        "cpu_pressure_before": pressure_before,
        "load_average_1min_at_end": os.getloadavg()[0],
        "cpu_pressure_at_end": _cpu_pressure(),
        "requests": total,
        "errors": len(errors),
        "server_cpu_s": server_cpu,
        "load_generator_cpu_s": own_cpu,
        "kinds": rows,
    }
    if load.killed_at is not None:
        check = verify(db_url, load, tokens)
        check.update(restart(data, db_url, stack, tokens[0], max(load.posts, default=None)))
        check["ok"] = check["ok"] and check["restarted"] and check["served_posts"] == check["stored_posts"]
        check.update(
            after_s=args.sigkill_after,
            agents=args.agents,
            server_pid=server_pid,
            server_exit=server.returncode,
            agents_running_at_kill=load.agents_running_at_kill,
            in_flight_at_kill=load.in_flight_at_kill,
            failed_after_kill=load.after_kill,
            answered_after_window=load.untimed,
        )
        print(
            f"SIGKILL after {args.sigkill_after:.1f} s under {args.agents} agents "
            f"(pid {server_pid}; {load.agents_running_at_kill} agents running, "
            f"{load.in_flight_at_kill} calls in flight; {load.after_kill} failed after the kill, "
            "not counted as errors): "
            f"acknowledged {check['acked_posts']} posts (+{check['acked_seed_posts']} seed), "
            f"{check['acked_dev_queries']} dev queries; lost {check['lost']}; "
            f"integrity {check['integrity']}; "
            f"audit chain {'intact' if check['audit_chain_intact'] else 'BROKEN'} "
            f"({check['audit_entries']} entries); "
            + (
                f"restarted and served {check['served_posts']} posts "
                f"({check['acked_posts']}+{check['acked_seed_posts']} seed"
                f"+{check['stored_posts'] - check['acked_posts'] - check['acked_seed_posts']} unacknowledged)"
                if check["restarted"]
                else "did NOT restart"
            )
            + ("" if check["ok"] else f" -- FAILED: {check['problems']}")
        )
        out["sigkill"] = check
    return out


def verify(db_url: str, load: Load, tokens: list[str]) -> dict:
    """After the SIGKILL: is every acknowledged write in the database, and is the database intact?"""
    from sqlalchemy import func, select, text

    from aar.referee import audit
    from aar.referee.db import AuditEntry, Database, DevQuery, Post

    database = Database(db_url)
    try:
        with database.read() as s:
            integrity = s.execute(text("PRAGMA integrity_check")).scalar()
            ids = dict(s.execute(text("SELECT name, id FROM agents")).all())
            stored = dict(s.execute(select(Post.id, Post.agent_id)).all())
            per_agent = dict(
                s.execute(select(DevQuery.agent_id, func.count()).group_by(DevQuery.agent_id)).all()
            )
            audited = {
                e.detail.get("post_id")
                for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "forum.post"))
            }
            audit.forget_checkpoints()
            chain = audit.check_chain(s, full=True)
    finally:
        database.dispose()
    posts = {**load.seed_posts, **load.posts}
    lost_posts = sorted(p for p in posts if p not in stored)
    wrong_author = sorted(p for p, i in posts.items() if p in stored and stored[p] != ids.get(f"bench{i}"))
    unaudited = sorted(p for p in posts if p in stored and p not in audited)
    short = {
        f"bench{i}": (n, per_agent.get(ids.get(f"bench{i}"), 0))
        for i, n in enumerate(load.dev)
        if per_agent.get(ids.get(f"bench{i}"), 0) < n
    }
    lost_dev = sum(n - have for n, have in short.values())
    problems = []
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    if lost_posts:
        problems.append(f"acknowledged posts missing: {lost_posts[:20]}")
    if wrong_author:
        problems.append(f"posts stored under another author: {wrong_author[:20]}")
    if unaudited:
        problems.append(f"acknowledged posts without their audit entry: {unaudited[:20]}")
    if short:
        problems.append(f"agents with fewer dev queries stored than acknowledged (acked, stored): {short}")
    if not (chain.intact and chain.full):
        problems.append(f"audit chain: {chain}")
    return {
        "acked_posts": len(load.posts),
        "acked_seed_posts": len(load.seed_posts),
        "acked_dev_queries": sum(load.dev),
        "stored_posts": len(stored),
        "stored_dev_queries": sum(per_agent.values()),
        "lost_posts": len(lost_posts),
        "lost_dev_queries": lost_dev,
        "lost": len(lost_posts) + lost_dev,
        "wrong_author": len(wrong_author),
        "unaudited_posts": len(unaudited),
        "integrity": integrity,
        "audit_chain_intact": bool(chain.intact and chain.full),
        "audit_entries": chain.entries,
        "problems": problems,
        "ok": not problems,
    }


def restart(data: Path, db_url: str, stack: str, token: str, last_post: int | None) -> dict:
    """Start the server again on the killed one's database; what does it serve? Stopped with SIGTERM."""
    port = _free_port()
    server = _serve(data, db_url, port, stack, prefix="")
    base = f"http://127.0.0.1:{port}/api/v1"
    out: dict = {"restarted": False, "served_posts": None, "served_last_acked_post": None}
    try:
        if _wait_healthy(base, server):
            h = {"Authorization": f"Bearer {token}"}
            r = httpx.get(f"{base}/posts", headers=h, params={"limit": 1}, timeout=30)
            out["restarted"] = r.status_code == 200
            out["served_posts"] = r.json().get("total") if r.status_code == 200 else None
            if last_post is not None:
                out["served_last_acked_post"] = (
                    httpx.get(f"{base}/posts/{last_post}", headers=h, timeout=30).status_code == 200
                )
                out["restarted"] = out["restarted"] and out["served_last_acked_post"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            out["restart_exit"] = server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            out["restart_exit"] = server.wait(60)
    return out


def _server_pid(pid: int, prefixed: bool = False) -> int:
    """The Python server's pid: ``pid`` itself, or with a --server-prefix (a profiler such as py-spy) the
    process at or under ``pid`` that runs ``python -m aar.cli ... serve`` (never the wrapper)."""
    if not prefixed:
        return pid
    for _ in range(100):  # the wrapper may take a moment to start its child
        todo = [pid]
        while todo:
            p = todo.pop()
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
                tasks = Path(f"/proc/{p}/task").iterdir()
                kids = [k for t in tasks for k in (t / "children").read_text().split()]
            except OSError:
                continue
            if cmd[1:3] == [b"-m", b"aar.cli"] and b"serve" in cmd:  # the wrapper's own arguments name
                return p  # them too, after its executable; an exec-style prefix (nice) is ``pid`` itself
            todo.extend(int(k) for k in kids)
        time.sleep(0.1)
    raise RuntimeError(f"no 'aar.cli referee serve' process under the --server-prefix process {pid}")


if __name__ == "__main__":
    main()
