"""SIGKILL the real server (uvicorn, loopback) in the middle of a stream of writes: no acknowledged
write may be lost, and the database must reopen intact."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
from sqlalchemy import func, select, text

from aar.referee.auth import add_agent
from aar.referee.db import Database, DevQuery, Post

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


def test_sigkill_loses_no_acknowledged_write(data_dir, tmp_path):
    db_url = f"sqlite:///{tmp_path}/kill.db"
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

    threads = [threading.Thread(target=writer, args=(t, k)) for k, t in enumerate(tokens)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked_posts) > 20 and acked_dev[0] > 20, (len(acked_posts), acked_dev[0])

    database = Database(db_url)
    with database.read() as s:
        assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
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
