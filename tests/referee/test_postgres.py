"""PostgreSQL as the referee's store, on a real server the suite starts itself (``pgserver.py``).

These run whatever ``AAR_TEST_DB`` says (the rest of the referee suite runs on PostgreSQL with
``AAR_TEST_DB=postgres``): what only PostgreSQL can get wrong. Several referees sharing one database
(as on several hosts) must still write one at a time: each write all-or-nothing, no lost update, one
unbroken audit chain, each queued run claimed by exactly one of them. Search must find what SQLite's
FTS5 finds, through the index, and no text a researcher sends may become a 5xx.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from aar.referee import audit
from aar.referee.auth import add_agent
from aar.referee.db import AuditEntry, Database, Post, Run, TaskLadder, normalize_url

from .conftest import HOME

API = "/api/v1"


@pytest.fixture
def pg_url(pg_server):
    url = pg_server.new_database()
    yield url
    pg_server.drop_database(url)


def test_without_postgresql_the_tests_say_what_to_install(monkeypatch):
    from . import pgserver

    monkeypatch.setattr(pgserver.shutil, "which", lambda _name: None)
    monkeypatch.setattr(pgserver.glob, "glob", lambda _pattern: [])
    with pytest.raises(pgserver.PgUnavailable, match="install-system-deps.sh"):
        pgserver.find_bindir()
    with pytest.raises(pgserver.PgUnavailable, match="install-system-deps.sh"):
        pgserver.PgServer(bindir=Path("/nonexistent"))


def test_postgresql_urls_mean_psycopg_3(pg_url):
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@/db?host=/x") == "postgresql+psycopg://u@/db?host=/x"
    assert normalize_url("sqlite:////tmp/r.db") == "sqlite:////tmp/r.db"
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    database = Database(plain)
    try:
        assert database.is_postgres and not database.is_sqlite
        database.create_all()
        database.create_all()  # idempotent: a restarted referee runs it again
        with database.read() as s:
            assert s.execute(text("SELECT version()")).scalar().startswith("PostgreSQL")
            triggers = set(
                s.scalars(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass")).all()
            )
            assert {"audit_append_only", "audit_no_truncate"} <= triggers
    finally:
        database.dispose()


def test_a_read_sees_one_snapshot_and_a_writer_waits_30_s_at_most(pg_url):
    """As in SQLite's WAL mode: a read transaction does not see writes committed after its first read
    (so a page and its total agree), and a writer gives up after 30 s (SQLite's busy timeout)."""
    database = Database(pg_url)
    try:
        database.create_all()
        add_agent(database, "w")
        with database.read() as r:
            before = r.scalar(select(func.count()).select_from(Post))
            with database.write() as w:
                w.add(Post(agent_id=1, title="t", body="b", kind="insight"))
            assert r.scalar(select(func.count()).select_from(Post)) == before == 0
        with database.read() as r:
            assert r.scalar(select(func.count()).select_from(Post)) == 1
            assert r.execute(text("SHOW lock_timeout")).scalar() == "30s"
    finally:
        database.dispose()


def test_referees_starting_together_create_the_schema_once(pg_url):
    handles = [Database(pg_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: d.create_all(), handles))  # no "relation already exists"
        with handles[0].read() as s:
            assert s.scalar(text("SELECT count(*) FROM pg_indexes WHERE indexname = 'posts_search_idx'")) == 1
    finally:
        for h in handles:
            h.dispose()


def test_the_audit_log_refuses_update_delete_and_truncate(pg_url):
    database = Database(pg_url)
    try:
        database.create_all()
        with database.write() as s:
            audit.record(s, agent_id=None, action="a", method="-", path="-")
        for stmt in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(Exception, match="append-only"), database.write() as s:
                s.execute(text(stmt))
        with database.read() as s:
            assert audit.check_chain(s, full=True).entries == 1
    finally:
        database.dispose()


def test_writers_of_several_referees_queue_for_one_write_lock(pg_url):
    """Four Database handles on one database stand for four referee processes (each with its own
    Python lock): 400 concurrent writes, each a read-modify-write of one counter plus a post and an
    audit entry, every fifth refused midway. Without the database-wide lock, READ COMMITTED loses
    counter updates and two writers chain onto the same audit hash."""
    handles = [Database(pg_url) for _ in range(4)]
    handles[0].create_all()
    add_agent(handles[0], "w")
    with handles[0].write() as s:
        s.add(TaskLadder(task=HOME, released_accuracy=0.5, queries_since_release=0))
    returned: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            with handles[i % len(handles)].write() as s:
                ladder = s.get(TaskLadder, HOME)
                seen = ladder.queries_since_release
                s.add(Post(agent_id=1, title=f"p{i}", body="b", kind="insight"))
                s.flush()
                audit.record(s, agent_id=1, action="forum.post", method="POST", path="/", detail={"i": i})
                time.sleep(0.001)  # a writer's work: the others must wait, not interleave
                ladder.queries_since_release = seen + 1
                if i % 5 == 0:
                    raise ValueError("refused")
        except ValueError:
            return
        with lock:
            returned.append(i)

    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(400)))
    finally:
        for h in handles:
            h.dispose()
    database = Database(pg_url)  # a fresh engine: what the server holds
    try:
        with database.read() as s:
            titles = set(s.scalars(select(Post.title)).all())
            details = [e.detail["i"] for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
            counter = s.get(TaskLadder, HOME).queries_since_release
            audit.forget_checkpoints()
            chain = audit.check_chain(s, full=True)
    finally:
        database.dispose()
    assert sorted(returned) == [i for i in range(400) if i % 5]
    assert titles == {f"p{i}" for i in returned}
    assert sorted(details) == sorted(returned)
    assert counter == len(returned), counter  # no lost update
    assert chain.intact and chain.entries == len(returned), chain


def test_each_queued_run_is_claimed_by_exactly_one_referee(pg_url, make_env):
    """Three referees on one database (as on three hosts) drain one queue of 60 runs concurrently."""
    envs = [make_env(db_url=pg_url) for _ in range(3)]
    ids = [_agent_id(envs[0], envs[0].agent(name)) for name in ("alice", "bob", "carol")]
    with envs[0].ref.db.write() as s:
        runs = [
            Run(agent_id=ids[k % 3], commit=f"{k:040x}", idea_path="idea.py", task=HOME, seeds=1, day="d")
            for k in range(60)
        ]
        s.add_all(runs)
    claimed: list[int] = []
    lock = threading.Lock()

    def drain(env) -> None:  # noqa: ANN001
        while (run_id := env.ref.runs.claim_next()) is not None:
            with lock:
                claimed.append(run_id)

    threads = [threading.Thread(target=drain, args=(env,)) for env in envs for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(claimed) == 60 and len(set(claimed)) == 60, sorted(claimed)
    with envs[0].ref.db.read() as s:
        rows = s.scalars(select(Run)).all()
    assert {r.status for r in rows} == {"running"} and {r.attempts for r in rows} == {1}


POSTS = [
    ("Confidence weighting helps", "The aux loss of aar/w2s/ideas.py lifts PGR on navigate_turns.", ["loss"]),
    ("Café notes", "Straße und Ünïcode: résumé of 3.14 experiments", ["unicode"]),
    ("A failure", "Bootstrapping did not help; don't try it with lr=1e-3.", ["bootstrap", "lr"]),
    ("Hyphen-ated title", "self-training, co-training and PGR", []),
]
QUERIES = [
    "confidence", "CONFIDENCE weighting", "ideas", "turns", "navigate_turns", "aar/w2s/ideas.py", "pgr",
    "café", "straße", "ünïcode", "3.14", "14", "don't", "1e", "hyphen", "self-training", "training",
    "bootstrap", "nothing-matches-this", "helps loss", "loss helps missing",
    # query syntax of FTS5 and of tsquery: words at most, never operators, never a 5xx
    '"', "'", 'a" OR "b', "confidence OR failure", "NEAR(confidence weighting)", "conf*", "conf:*",
    "!failure", "failure & !pgr", "pgr | café", "(pgr", "pgr <-> navigate", "-pgr", "title:pgr",
    "\\", "%", "_", "%pgr%", "' OR 1=1 --", "pgr\x00café", "…", "🙂", " ",
    "x" * 500, ("pgr " * 125)[:500],  # the longest q the API takes
]  # fmt: skip


def test_search_finds_what_sqlite_finds_and_never_fails(pg_url, make_env, tmp_path):
    pg = make_env(db_url=pg_url)
    lite = make_env(db_url=f"sqlite:///{tmp_path}/search.db")
    for env in (pg, lite):
        h = env.agent("alice")
        for title, body, tags in POSTS:
            post = {"title": title, "body": body, "kind": "insight", "tags": tags}
            r = env.client.post(f"{API}/posts", headers=h, json=post)
            assert r.status_code == 201, r.text
    found: dict[str, set[str]] = {}
    for q in QUERIES:
        answers = []
        for env in (pg, lite):
            r = env.client.get(f"{API}/posts", params={"q": q, "limit": 50}, headers=env.agent("alice"))
            assert r.status_code == 200, (q, env.ref.db.url, r.status_code, r.text[:300])
            answers.append({p["title"] for p in r.json()["items"]})
        assert answers[0] == answers[1], (q, answers)
        found[q] = answers[0]
    # and the answers are the right ones, not merely equal
    assert found["ideas"] == found["turns"] == found["confidence"] == {"Confidence weighting helps"}
    assert found["pgr"] == {"Confidence weighting helps", "Hyphen-ated title"}
    assert found["café"] == found["3.14"] == found["ünïcode"] == {"Café notes"}
    assert found["training"] == found["self-training"] == {"Hyphen-ated title"}
    assert found["bootstrap"] == found["don't"] == {"A failure"}
    assert not found["nothing-matches-this"] and not found["loss helps missing"]
    with pg.ref.db.read() as s:  # the query the forum runs uses the GIN index, not a scan
        s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            s.scalars(
                text(
                    "EXPLAIN SELECT id FROM posts WHERE "
                    f"{_pg_search_document()} @@ plainto_tsquery('simple', 'pgr')"
                )
            ).all()
        )
    assert "posts_search_idx" in plan, plan


def test_text_postgresql_cannot_store_is_refused_not_a_5xx(make_env, pg_url):
    """NUL characters: SQLite stores them, PostgreSQL text cannot. Ids past 32 bits: the API accepts
    ids up to 2**62, so the id columns are 64-bit there (a 404, not "integer out of range")."""
    env = make_env(db_url=pg_url)
    h = env.agent("alice")
    for body in ({"title": "a\x00b", "body": "b", "kind": "insight"},
                 {"title": "t", "body": "a\x00b", "kind": "insight", "tags": ["x\x00"]}):  # fmt: skip
        r = env.client.post(f"{API}/posts", headers=h, json=body)
        assert r.status_code < 500, (body, r.status_code, r.text[:300])
    for big in (2**31, 2**62):
        assert env.client.get(f"{API}/runs/{big}", headers=h).status_code == 404
        assert env.client.get(f"{API}/posts/{big}", headers=h).status_code == 404
    assert env.client.get(f"{API}/posts/%00", headers=h).status_code == 422
    with env.ref.db.read() as s:  # and the refusal is in the audit log (a NUL in a path is escaped)
        paths = set(s.scalars(select(AuditEntry.path).where(AuditEntry.action == "refused")).all())
        dropped = s.scalars(select(AuditEntry).where(AuditEntry.action == "audit.refusals_dropped")).all()
    assert f"{API}/posts/\\x00" in paths and not dropped, paths


def _agent_id(env, headers) -> int:  # noqa: ANN001
    return env.ref.auth.identify(headers["Authorization"]).id


def _pg_search_document() -> str:
    from aar.referee.db import PG_SEARCH_DOCUMENT

    return PG_SEARCH_DOCUMENT


def test_a_crash_of_the_server_loses_no_acknowledged_write_and_the_referee_reconnects(data_dir):
    """The real referee (uvicorn, loopback) on its own PostgreSQL server, 24 researchers posting;
    the server crashes mid-stream (every process killed, no checkpoint). After its WAL recovery every
    post that got a 201 is there, the audit chain verifies from the genesis, and the same referee
    process, never restarted, serves writes again (its pool drops the dead connections)."""
    from .pgserver import PgServer
    from .test_durability import _free_port, _serve

    server = PgServer()
    proc = None
    try:
        db_url = server.new_database()
        database = Database(db_url)
        database.create_all()
        tokens = [add_agent(database, f"r{i}") for i in range(24)]  # 30 posts a minute each: never all spent
        database.dispose()
        port = _free_port()
        proc = _serve(data_dir, db_url, port)
        # drain its stderr: the crash's 500s log tracebacks, and a full pipe would block its event loop
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        acked: list[int] = []
        refused = [0]
        failures: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def researcher(token: str) -> None:
            h = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", headers=h, timeout=10) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    post = {"title": f"{token[-6:]}-{i}", "body": "b", "kind": "insight"}
                    try:
                        r = c.post("/posts", json=post)
                    except httpx.HTTPError as e:  # not acknowledged: fine, if never a hang
                        with lock:
                            failures.append(type(e).__name__)
                        continue
                    with lock:
                        if r.status_code == 201:
                            acked.append(r.json()["id"])
                        elif r.status_code >= 500:
                            refused[0] += 1
                    if r.status_code == 429:
                        time.sleep(0.05)

        threads = [threading.Thread(target=researcher, args=(t,)) for t in tokens]
        for t in threads:
            t.start()
        time.sleep(2.0)
        server.crash()
        time.sleep(1.0)  # writers keep going against a dead store: errors, never a false 201
        stop.set()
        for t in threads:
            t.join(30)
        n_acked = len(acked)
        assert n_acked > 20 and refused[0] > 0, (n_acked, refused[0])
        server.start()

        database = Database(db_url)
        try:
            with database.read() as s:
                stored = set(s.scalars(select(Post.id)).all())
                audit.forget_checkpoints()
                chain = audit.check_chain(s, full=True)
        finally:
            database.dispose()
        print(f"\nacknowledged before the crash: {n_acked}; stored: {len(stored)}; audit: {chain.entries}")
        print(f"5xx during the crash: {refused[0]}; transport errors: {len(failures)}")
        assert len(acked) < 24 * 30  # the crash came mid-stream, not after every limit was spent
        assert set(acked) <= stored, sorted(set(acked) - stored)
        assert chain.intact and chain.full and chain.entries >= n_acked, chain
        h = {"Authorization": f"Bearer {tokens[0]}"}
        r = httpx.post(
            f"http://127.0.0.1:{port}{API}/posts",
            json={"title": "after", "body": "b", "kind": "insight"},
            headers=h,
            timeout=10,
        )
        assert r.status_code in (201, 429), r.text  # 429: r0's per-minute limit, read from the store
    finally:
        try:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        finally:
            server.stop()  # never left running, whatever happened above
