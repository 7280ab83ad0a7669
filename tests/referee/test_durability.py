"""SIGKILL the real server (uvicorn, loopback) in the middle of a stream of writes: no acknowledged
write may be lost, and the database must reopen intact. Group commit (off by default) is tested
in-process: a writer returns only after its group's COMMIT, and each writer is all-or-nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
from sqlalchemy import func, select, text

from aar.referee import audit
from aar.referee.auth import add_agent
from aar.referee.db import AuditEntry, Comment, Database, DevQuery, Post, Vote

from .conftest import HOME


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir, db, port) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aar.cli",
            "referee",
            "serve",
            "--data",
            str(data_dir),
            "--db",
            db,
            "--port",
            str(port),
            "--executor",
            "none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(proc.stderr.read().decode()[-2000:])


def _sigkill_under_load(
    proc: subprocess.Popen,
    threads: list[threading.Thread],
    stop: threading.Event,
    seconds: float,
    enough: Callable[[], bool],
    most: float = 60.0,
) -> None:
    """Start the writers, SIGKILL the server after ``seconds`` of load and once ``enough()`` writes were
    acknowledged (a busy machine serves fewer a second; the kill must still land mid-stream, on a
    history long enough to mean something), then stop and join them. Gives up waiting after ``most``
    seconds; the caller's assertion then says how many were acknowledged."""
    for t in threads:
        t.start()
    time.sleep(seconds)
    deadline = time.monotonic() + most
    while not enough() and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(10)


def _intact(session) -> bool:  # noqa: ANN001
    """SQLite's own page-level check; PostgreSQL was not the process killed (its WAL is its own check)."""
    if session.get_bind().dialect.name != "sqlite":
        return True
    return session.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_sigkill_loses_no_acknowledged_write(data_dir, fresh_db_url):
    db_url = fresh_db_url("kill")
    database = Database(db_url)
    database.create_all()
    tokens = [add_agent(database, f"w{i}") for i in range(4)]
    database.dispose()
    from aar.referee.datadir import DataStore

    td = DataStore(data_dir).task(HOME)
    dev = {i: float(w) for i, w in zip(td.ids["dev"], td.weak("dev"), strict=True)}
    port = _free_port()
    proc = _serve(data_dir, db_url, port)
    acked_posts: list[int] = []
    acked_dev = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def writer(token: str, k: int) -> None:
        h = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=h, timeout=5) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if k % 2:
                        r = c.post("/posts", json={"title": f"t{k}-{i}", "body": "b", "kind": "insight"})
                        if r.status_code == 201:
                            with lock:
                                acked_posts.append(r.json()["id"])
                    else:
                        r = c.post("/dev/evaluate", json={"task": HOME, "predictions": dev})
                        if r.status_code == 200:
                            with lock:
                                acked_dev[0] += 1
                except httpx.HTTPError:
                    return  # the server is gone: whatever was not acknowledged may be lost

    def enough() -> bool:
        return len(acked_posts) > 20 and acked_dev[0] > 20

    _sigkill_under_load(
        proc, [threading.Thread(target=writer, args=(t, k)) for k, t in enumerate(tokens)], stop, 2.5, enough
    )
    assert enough(), (len(acked_posts), acked_dev[0])

    database = Database(db_url)
    with database.read() as s:
        assert _intact(s)
        stored = set(s.scalars(select(Post.id)).all())
        n_dev = s.scalar(select(func.count()).select_from(DevQuery))
    database.dispose()
    missing = set(acked_posts) - stored
    print(
        f"\nacknowledged before SIGKILL: {len(acked_posts)} posts, {acked_dev[0]} dev queries; "
        f"stored: {len(stored)} posts, {n_dev} dev queries; lost acknowledged: {len(missing)}"
    )
    assert not missing and n_dev >= acked_dev[0]

    proc = _serve(data_dir, db_url, port)  # and it comes back and serves them
    try:
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/posts",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {tokens[1]}"},
        )
        assert r.json()["total"] == len(stored)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_sigkill_under_concurrent_load_loses_no_acknowledged_write(data_dir, fresh_db_url):
    """24 researchers at once (dev queries, posts, comments, votes) against the real server; SIGKILL
    mid-stream; after restart every write that got a 2xx is there: each post and comment by id, each
    vote with its value, at least as many dev queries per researcher as were acknowledged, and an
    audit entry for each acknowledged forum write, in a chain that verifies from the genesis."""
    db_url = fresh_db_url("load")
    database = Database(db_url)
    database.create_all()
    names = [f"r{i}" for i in range(24)]
    tokens = {n: add_agent(database, n) for n in names}
    database.dispose()
    from aar.referee.datadir import DataStore

    td = DataStore(data_dir).task(HOME)
    weak = td.weak("dev")
    port = _free_port()
    proc = _serve(data_dir, db_url, port)
    lock = threading.Lock()
    posts: dict[int, str] = {}  # acknowledged post id -> author
    comments: dict[int, str] = {}
    votes: dict[tuple[int, str], int] = {}  # (post id, voter) -> value
    dev: dict[str, int] = {n: 0 for n in names}
    stop = threading.Event()

    def researcher(k: int, name: str) -> None:
        h = {"Authorization": f"Bearer {tokens[name]}"}
        voted: set[int] = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=h, timeout=5) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if k % 3 == 0:
                        flip = (weak + 0.01 * ((i + k) % 7)).clip(0, 1)  # a new submission each time
                        preds = {rid: float(v) for rid, v in zip(td.ids["dev"], flip, strict=True)}
                        r = c.post("/dev/evaluate", json={"task": HOME, "predictions": preds})
                        if r.status_code == 200:
                            with lock:
                                dev[name] += 1
                    elif k % 3 == 1:
                        r = c.post("/posts", json={"title": f"{name}-{i}", "body": "b", "kind": "insight"})
                        if r.status_code == 201:
                            pid = r.json()["id"]
                            with lock:
                                posts[pid] = name
                            r = c.post(f"/posts/{pid}/comments", json={"body": f"c{i}"})
                            if r.status_code == 201:
                                with lock:
                                    comments[r.json()["id"]] = name
                    else:
                        with lock:
                            todo = [p for p, a in posts.items() if a != name and p not in voted]
                        if not todo:
                            time.sleep(0.01)
                            continue
                        pid, value = todo[0], 1 if i % 2 else -1
                        voted.add(pid)  # once per post: an acknowledged vote is never overwritten
                        r = c.post(f"/posts/{pid}/vote", json={"value": value})
                        if r.status_code == 200:
                            with lock:
                                votes[(pid, name)] = value
                except httpx.HTTPError:
                    return  # the server is gone: whatever was not acknowledged may be lost

    def enough() -> bool:
        with lock:
            return len(posts) > 20 and len(votes) > 20 and sum(dev.values()) > 20

    threads = [threading.Thread(target=researcher, args=(k, n)) for k, n in enumerate(names)]
    _sigkill_under_load(proc, threads, stop, 3.0, enough)
    assert enough(), (len(posts), len(votes), dev)

    database = Database(db_url)
    with database.read() as s:
        assert _intact(s)
        stored_posts = set(s.scalars(select(Post.id)).all())
        stored_comments = set(s.scalars(select(Comment.id)).all())
        stored_votes = {(v.post_id, v.agent_id): v.value for v in s.scalars(select(Vote))}
        ids = dict(s.execute(text("SELECT name, id FROM agents")).all())
        per_agent = dict(s.execute(select(DevQuery.agent_id, func.count()).group_by(DevQuery.agent_id)).all())
        audited = {
            (e.action, e.detail.get("post_id"), e.detail.get("comment_id"))
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action.like("forum.%")))
        }
        audit.forget_checkpoints()
        chain = audit.check_chain(s, full=True)
    database.dispose()
    print(
        f"\nacknowledged before SIGKILL: {len(posts)} posts, {len(comments)} comments, {len(votes)} votes, "
        f"{sum(dev.values())} dev queries; audit entries {chain.entries}"
    )
    assert set(posts) <= stored_posts, sorted(set(posts) - stored_posts)
    assert set(comments) <= stored_comments, sorted(set(comments) - stored_comments)
    for (pid, voter), value in votes.items():
        assert stored_votes.get((pid, ids[voter])) == value, (pid, voter)
    for name, n in dev.items():
        assert per_agent.get(ids[name], 0) >= n, (name, n, per_agent.get(ids[name]))
    for pid in posts:
        assert ("forum.post", pid, None) in audited, pid
    for cid in comments:
        assert any(a == "forum.comment" and c == cid for a, _p, c in audited), cid
    assert chain.intact and chain.full, chain


def test_concurrent_writers_are_each_all_or_nothing(fresh_db_url):
    """Concurrent writers queue for the one write transaction and each block is its own unit: a block
    that raises leaves nothing (not even its audit entry) and its neighbours are kept; the audit chain
    stays one unbroken line; every write() that returned is on disk."""
    from concurrent.futures import ThreadPoolExecutor

    db_url = fresh_db_url("group")
    database = Database(db_url)
    database.create_all()
    add_agent(database, "w")
    returned: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            with database.write() as s:
                post = Post(agent_id=1, title=f"p{i}", body="b", kind="insight")
                s.add(post)
                s.flush()
                audit.record(s, agent_id=1, action="forum.post", method="POST", path="/", detail={"i": i})
                time.sleep(0.001)  # a writer's work: others queue behind it
                if i % 5 == 0:
                    raise ValueError("refused")
        except ValueError:
            return
        with lock:
            returned.append(i)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(400)))
    database.dispose()

    database = Database(db_url)  # a fresh engine: what is on disk
    with database.read() as s:
        titles = set(s.scalars(select(Post.title)).all())
        details = [e.detail["i"] for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        audit.forget_checkpoints()
        chain = audit.check_chain(s, full=True)
    database.dispose()
    assert sorted(returned) == [i for i in range(400) if i % 5]
    assert titles == {f"p{i}" for i in returned}
    assert sorted(details) == sorted(returned)
    assert chain.intact and chain.entries == len(returned)
