"""The audit log: refused requests recorded (who, why, bounded), and the hash chain verified
incrementally from a checkpoint, with a full re-verify that finds a row edited before it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select, text

from aar.referee import audit
from aar.referee.db import AuditEntry, Run

API = "/api/v1"


def _refused(env, admin) -> list[dict]:
    r = env.client.get(f"{API}/admin/audit", params={"action": "refused", "limit": 1000}, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _agent_id(env, headers) -> int:
    return env.ref.auth.identify(headers["Authorization"]).id


def test_every_kind_of_refused_request_is_in_the_audit_log(make_env):
    env = make_env(max_body_bytes=4096, forum_posts_per_minute=1)
    a, root = env.agent("alice"), env.agent("root", admin=True)
    alice = _agent_id(env, a)
    c = env.client
    assert c.get(f"{API}/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert c.get(f"{API}/me").status_code == 401
    assert c.get(f"{API}/admin/flags", headers=a).status_code == 403
    assert c.get(f"{API}/posts/99999", headers=a).status_code == 404
    assert c.get(f"{API}/no/such/route", headers=a).status_code == 404
    with env.ref.db.write() as s:
        run = Run(
            agent_id=alice, commit="c" * 40, idea_path="idea.py", task="t", seeds=1, day="d", status="done"
        )
        s.add(run)
        s.flush()
        run_id = run.id
    assert c.delete(f"{API}/runs/{run_id}", headers=a).status_code == 409
    assert c.post(f"{API}/posts", headers=a, json={"title": "", "kind": "nope"}).status_code == 422
    assert (
        c.post(f"{API}/posts", headers=a, json={"title": "t", "body": "b", "kind": "insight"}).status_code
        == 201
    )
    assert (
        c.post(f"{API}/posts", headers=a, json={"title": "t", "body": "b", "kind": "insight"}).status_code
        == 429
    )
    big = {"title": "t", "body": "x" * 10_000, "kind": "insight"}
    assert c.post(f"{API}/posts", headers=a, json=big).status_code == 413  # by Content-Length
    chunks = (b"x" * 1024 for _ in range(8))  # no Content-Length: counted as it streams
    r = c.post(f"{API}/posts", headers={**a, "content-type": "application/json"}, content=chunks)
    assert r.status_code == 413, r.text

    rows = _refused(env, root)
    got: dict[tuple, list[dict]] = {}
    for e in rows:
        got.setdefault((e["detail"]["status"], e["agent_id"], e["detail"]["token"], e["path"]), []).append(e)
    expect = [
        (401, None, True, f"{API}/me", "unknown token"),
        (401, None, False, f"{API}/me", "missing Authorization"),
        (403, alice, True, f"{API}/admin/flags", "admin only"),
        (404, alice, True, f"{API}/posts/99999", "no post 99999"),
        (404, alice, True, f"{API}/no/such/route", "Not Found"),
        (409, alice, True, f"{API}/runs/{run_id}", "only queued runs can be cancelled"),
        (422, alice, True, f"{API}/posts", "title"),
        (429, alice, True, f"{API}/posts", "1 forum posts per minute"),
        (413, alice, True, f"{API}/posts", "request body exceeds 4096 bytes"),
    ]
    for status, agent, token, path, words in expect:
        entries = got.get((status, agent, token, path))
        assert entries, (status, agent, path, sorted(got))
        assert any(words in e["detail"]["message"] for e in entries), entries
        assert all(e["action"] == "refused" and e["method"] in ("GET", "POST", "DELETE") for e in entries)
    assert sum(e["detail"]["count"] for e in got[(413, alice, True, f"{API}/posts")]) == 2  # both 413s
    assert sum(e["detail"]["count"] for e in rows) == 10
    log = c.get(f"{API}/admin/audit", params={"full": True}, headers=root).json()
    assert log["intact"] and log["full"] and log["entries"] == log["checked"] == 11  # 10 refused + 1 post
    # and nothing in an entry is a token
    assert env.tokens["alice"] not in str(rows) and "not-a-token" not in str(rows)


def test_audit_entries_of_refusals_are_small(env):
    a, root = env.agent("alice"), env.agent("root", admin=True)
    long_path = f"{API}/posts/" + "z" * 5000
    assert env.client.get(long_path, headers=a).status_code in (404, 422)
    [entry] = _refused(env, root)
    assert len(entry["path"]) <= audit.MAX_PATH and len(entry["detail"]["message"]) <= audit.MAX_MESSAGE


def test_a_failing_audit_write_still_answers_the_4xx(env, monkeypatch):
    class Broken:
        def write(self):
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(env.client.app.state.refusals, "db", Broken())
    r = env.client.get(f"{API}/me", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["detail"] == "unknown token"
    r = env.client.get(f"{API}/posts/1", headers=env.agent("alice"))
    assert r.status_code == 404
    monkeypatch.setattr(env.client.app.state.refusals, "identify", lambda _h: 1 / 0)  # a crash, not 401
    assert env.client.get(f"{API}/posts/1", headers=env.agent("alice")).status_code == 404
    monkeypatch.undo()
    # the lost entries are counted in the next entry written
    env.client.get(f"{API}/me")
    log = env.client.get(
        f"{API}/admin/audit",
        params={"action": "audit.refusals_dropped"},
        headers=env.agent("root", admin=True),
    ).json()
    assert log["items"] and log["items"][0]["detail"]["count"] == 3


def test_a_flood_of_refusals_is_merged_and_bounded(env):
    refusals = env.client.app.state.refusals
    # while one caller flushes, the others only queue: identical refusals merge, distinct ones are capped
    refusals._flushing = True
    for _ in range(5000):
        refusals.note("GET", f"{API}/me", "Bearer bad", 401, "unknown token", token_invalid=True)
    for i in range(3 * refusals.max_pending):
        refusals.note("GET", f"{API}/x/{i}", None, 404, "Not Found")
    assert (
        len(refusals._pending) == refusals.max_pending and refusals._dropped == 2 * refusals.max_pending + 1
    )
    refusals._flushing = False
    refusals.note("GET", f"{API}/me", None, 401, "missing token")  # this caller flushes the lot
    with env.ref.db.read() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert len(rows) == refusals.max_pending + 1  # the queue and one entry counting the dropped
    assert rows[0].detail["count"] == 5000
    dropped = [r for r in rows if r.action == "audit.refusals_dropped"]
    assert dropped[0].detail["count"] == 2 * refusals.max_pending + 2  # the last one found the queue full

    # over HTTP, concurrently: every refusal accounted for, the answers stay fast
    root = env.agent("root", admin=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _i: env.client.get(f"{API}/me", headers={"Authorization": "Bearer x"}).status_code,
                range(400),
            )
        )
    took = time.perf_counter() - start
    assert set(codes) == {401}
    with env.ref.db.read() as s:
        flood = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "refused", AuditEntry.id > rows[-1].id)
        ).all()
    assert sum(e.detail["count"] for e in flood) == 400 and len(flood) <= 400
    assert took < 30, took
    assert env.client.get(f"{API}/admin/audit", params={"full": True}, headers=root).json()["intact"]


def _append(env, n: int) -> None:
    with env.ref.db.write() as s:
        for i in range(n):
            audit.record(
                s, agent_id=None, action="test.entry", method="POST", path=f"/t/{i}", detail={"i": i}
            )


def test_the_chain_is_verified_incrementally(env):
    root = env.agent("root", admin=True)
    _append(env, 300)

    def get(**params):
        r = env.client.get(f"{API}/admin/audit", params={"limit": 1, **params}, headers=root)
        assert r.status_code == 200, r.text
        return r.json()

    first = get()
    assert first["intact"] and first["entries"] == 300 and first["checked"] == 300  # no checkpoint yet
    again = get()
    assert again["intact"] and again["entries"] == 300 and again["checked"] == 1  # only the checkpoint row
    _append(env, 5)
    new = get()
    assert new["intact"] and new["entries"] == 305 and new["checked"] == 6
    full = get(full=True)
    assert full["intact"] and full["full"] and full["checked"] == 305
    with env.ref.db.read() as s:
        assert audit.verify_chain(s) == (True, 305)
        assert audit.check_chain(s).hashed == 1
        assert audit.verify_chain(s, full=True) == (True, 305)

    # timing: with 1300 entries, an incremental check costs a small fraction of a full one
    _append(env, 1000)
    get()
    with env.ref.db.read() as s:
        t0 = time.perf_counter()
        audit.check_chain(s, full=True)
        t_full = time.perf_counter() - t0
        t0 = time.perf_counter()
        check = audit.check_chain(s)
        t_inc = time.perf_counter() - t0
    assert check.intact and check.entries == 1305 and check.hashed == 1 and t_inc < t_full / 5, (
        t_inc,
        t_full,
    )


def _tamper(env, entry_id: int, path: str) -> None:
    with env.ref.db.write() as s:  # the append-only trigger must go first: only an attacker with the file
        if env.ref.db.is_sqlite:  # (or PostgreSQL's owner rights)
            s.execute(text("DROP TRIGGER audit_no_update"))
        else:
            s.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_append_only"))
        s.execute(text("UPDATE audit_log SET path = :p WHERE id = :id"), {"p": path, "id": entry_id})


def test_a_tampered_old_row_is_found_by_the_full_verify(env):
    root = env.agent("root", admin=True)
    _append(env, 50)

    def get(**params):
        return env.client.get(f"{API}/admin/audit", params={"limit": 1, **params}, headers=root).json()

    assert get()["intact"]  # checkpoint at entry 50
    _tamper(env, 10, "/forged")
    # the incremental check trusts what it verified before (it re-hashes only the checkpoint row) ...
    assert get()["intact"]
    # ... the full one recomputes everything and names the first bad entry
    full = get(full=True)
    assert not full["intact"] and full["first_bad_id"] == 10 and full["entries"] == 9
    # once found, the checkpoint is gone: the next incremental check sees it too
    after = get()
    assert not after["intact"] and after["first_bad_id"] == 10


def test_a_row_tampered_after_the_checkpoint_is_found_incrementally(env):
    root = env.agent("root", admin=True)
    _append(env, 20)

    def get(**params):
        return env.client.get(f"{API}/admin/audit", params={"limit": 1, **params}, headers=root).json()

    assert get()["intact"]
    _append(env, 5)
    _tamper(env, 23, "/forged-new")  # after the checkpoint: the incremental check hashes it
    got = get()
    assert not got["intact"] and got["first_bad_id"] == 23 and got["checked"] == 4 and not got["full"]


def test_a_tampered_checkpoint_row_is_found(env):
    root = env.agent("root", admin=True)
    _append(env, 20)
    get = lambda: env.client.get(f"{API}/admin/audit", headers=root).json()  # noqa: E731
    assert get()["intact"]
    _tamper(env, 20, "/forged-checkpoint")
    got = get()
    assert not got["intact"] and got["first_bad_id"] == 20 and got["full"]
