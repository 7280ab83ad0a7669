"""Load bench for the referee: N simulated agents on loopback, mixing dev scoring, forum posts and reads.

Starts a real server (`aar referee serve`, one uvicorn process) on a fresh SQLite database (WAL,
synchronous=FULL), then runs N agents as asyncio tasks in this process (the load generator: its own
process, so its CPU is not the server's and the server's cost is not hidden in it). Each agent loops:
think (exponential, mean --think seconds: agents are LLMs and think between calls), then one action:
dev scoring (40%), a forum read (list / search / one post, 45%), or a forum post (15%). Prints
throughput, p50/p99 latency per kind, and the CPU time each process spent (the server's per request
is the cost the referee pays). Target (issue 14): p99 < 100 ms for dev scoring and < 50 ms for forum
reads with 100 agents at 1 s mean think time on 2 cores.

    .venv/bin/python bench/referee_load.py --agents 100 --duration 30
    .venv/bin/python bench/referee_load.py --stacks pure,fast   # h11/asyncio vs httptools/uvloop, same load
    .venv/bin/python bench/referee_load.py --data /path/to/referee-data   # reuse an initialised data dir
    .venv/bin/python bench/referee_load.py --server-prefix "py-spy record -r 250 -f raw -o /tmp/s.txt --"
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def agent(
    i: int,
    client: httpx.AsyncClient,
    token: str,
    dev: dict,
    task: str,
    stop: float,
    think: float,
    lat: dict[str, list[float]],
    errors: list[str],
) -> None:
    rng = random.Random(i)
    nrng = np.random.default_rng(i)
    h = {"Authorization": f"Bearer {token}"}
    weak = np.array(list(dev.values()))
    ids = list(dev)
    while time.monotonic() < stop:
        await asyncio.sleep(rng.expovariate(1.0 / think))
        roll = rng.random()
        t0 = time.perf_counter()
        if roll < 0.40:
            kind = "dev_evaluate"
            noise = np.clip(weak + nrng.normal(0, 0.1, len(ids)), 0, 1)
            r = await client.post(
                "/dev/evaluate",
                headers=h,
                json={"task": task, "predictions": dict(zip(ids, noise.tolist(), strict=True))},
            )
        elif roll < 0.85:
            kind = "forum_read"
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
            kind = "forum_post"
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
        dt = (time.perf_counter() - t0) * 1000
        if r.status_code >= 500 or (r.status_code >= 400 and r.status_code != 404):
            errors.append(f"{kind} {r.status_code} {r.text[:100]}")
        lat.setdefault(kind, []).append(dt)


async def main_async(
    args, base: str, tokens: list[str], dev: dict, task: str
) -> tuple[dict, list[str], float]:
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    limits = httpx.Limits(max_connections=args.agents + 10, max_keepalive_connections=args.agents + 10)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        for k in range(50):  # something to read
            await client.post(
                "/posts",
                headers={"Authorization": f"Bearer {tokens[k % len(tokens)]}"},
                json={"title": f"seed post {k}", "body": f"logconf entropy seed {k}", "kind": "insight"},
            )
        start = time.monotonic()
        stop = start + args.duration
        await asyncio.gather(
            *(
                agent(i, client, tokens[i], dev, task, stop, args.think, lat, errors)
                for i in range(args.agents)
            )
        )
        return lat, errors, time.monotonic() - start


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
    args = ap.parse_args()
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


def run_once(args, data: Path, work: Path, stack: str) -> dict:  # noqa: ANN001 (argparse namespace)
    """One server on a fresh database, under the load; prints and returns its numbers."""
    from aar.referee.auth import add_agent
    from aar.referee.datadir import DataStore
    from aar.referee.db import Database

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
    server = subprocess.Popen(
        [
            *shlex.split(args.server_prefix),
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
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        server_pid = _server_pid(server.pid)
        cpu0, own0 = _cpu_seconds(server_pid), _own_cpu_seconds()
        lat, errors, seconds = asyncio.run(main_async(args, base, tokens, dev, task))
        server_cpu, own_cpu = _cpu_seconds(server_pid) - cpu0, _own_cpu_seconds() - own0
    finally:
        server.send_signal(signal.SIGINT if args.server_prefix else signal.SIGTERM)
        server.wait(60)
    total = sum(len(v) for v in lat.values())
    print(
        f"[stack {stack}] {args.agents} agents, {seconds:.1f} s, mean think {args.think} s, "
        f"{len(dev)} dev items, {os.cpu_count()} cores: {total} requests, {total / seconds:.1f} req/s, "
        f"{len(errors)} errors, load average {os.getloadavg()[0]:.2f}"
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
    return {
        "stack": stack,
        "agents": args.agents,
        "duration_s": seconds,
        "think_s": args.think,
        "dev_items": len(dev),
        "cores": os.cpu_count(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "requests": total,
        "errors": len(errors),
        "server_cpu_s": server_cpu,
        "load_generator_cpu_s": own_cpu,
        "kinds": rows,
    }


def _server_pid(pid: int) -> int:
    """The Python server's pid: ``pid`` itself, or its child when it runs under a --server-prefix."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        kids = children.read_text().split()
    except OSError:
        return pid
    return int(kids[0]) if kids else pid


if __name__ == "__main__":
    main()
