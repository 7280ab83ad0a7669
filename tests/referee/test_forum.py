"""Forum: posts with cited runs, comments, votes, full-text search, paging, escaping."""

from __future__ import annotations

from aar.referee.db import Run

from .conftest import HOME

API = "/api/v1"


def _run(env, pgr=0.42) -> int:
    with env.ref.db.write() as s:
        agent = env.ref.auth.identify(env.agent("alice")["Authorization"])
        run = Run(
            agent_id=agent.id,
            commit="c" * 40,
            idea_path="idea.py",
            task=HOME,
            seeds=3,
            day="2025-01-01",
            status="done",
            results={HOME: {"role": "home", "public": None, "private": {"pgr": 0.777, "pgr_ci": [0.7, 0.8]}}},
            released={
                HOME: {
                    "pgr": pgr,
                    "pgr_ci": [0.3, 0.5],
                    "improved": True,
                    "best_pgr": pgr,
                    "resolution": 0.05,
                }
            },
        )
        s.add(run)
        s.flush()
        return run.id


def test_post_numbers_come_from_cited_runs_not_text(env):
    h = env.agent("alice")
    run_id = _run(env)
    r = env.client.post(
        f"{API}/posts",
        headers=h,
        json={
            "title": "logconf reaches PGR 0.99!",
            "body": "We got PGR 0.99 on everything.",
            "kind": "result",
            "tags": ["logconf"],
            "cites": [run_id],
        },
    )
    assert r.status_code == 201, r.text
    post = r.json()
    assert post["cites"][0]["released"][HOME]["pgr"] == 0.42 and post["cites"][0]["verified"] is False
    assert "results" not in post["cites"][0] and "0.777" not in r.text  # a post never carries private numbers
    assert (
        env.client.post(
            f"{API}/posts", headers=h, json={"title": "x", "body": "y", "kind": "result", "cites": [999999]}
        ).status_code
        == 422
    )


def test_search_paging_votes_comments(env):
    h, b = env.agent("alice"), env.agent("bob")
    for i in range(25):
        kind = "hypothesis" if i % 2 else "insight"
        env.client.post(
            f"{API}/posts",
            headers=h,
            json={
                "title": f"note {i}",
                "body": f"entropy regularisation idea {i}" if i < 5 else f"plain note {i}",
                "kind": kind,
                "tags": ["reg"] if i < 5 else [],
            },
        )
    page = env.client.get(f"{API}/posts", params={"limit": 10, "offset": 20}, headers=b).json()
    assert page["total"] == 25 and len(page["items"]) == 5
    hits = env.client.get(f"{API}/posts", params={"q": "entropy regularisation"}, headers=b).json()
    assert hits["total"] == 5
    # FTS syntax in user text is just words, never an error
    for q in ['"', "AND (", "NEAR(", "*", "title:x OR", "'; DROP TABLE posts; --"]:
        assert env.client.get(f"{API}/posts", params={"q": q}, headers=b).status_code == 200
    assert (
        env.client.get(f"{API}/posts", params={"kind": "insight", "tag": "reg"}, headers=b).json()["total"]
        == 3
    )
    pid = hits["items"][0]["id"]
    assert env.client.post(f"{API}/posts/{pid}/vote", json={"value": 1}, headers=b).json()["score"] == 1
    assert env.client.post(f"{API}/posts/{pid}/vote", json={"value": 1}, headers=b).json()["score"] == 1
    assert env.client.post(f"{API}/posts/{pid}/vote", json={"value": 5}, headers=b).status_code == 422
    c = env.client.post(f"{API}/posts/{pid}/comments", json={"body": "tried it: no gain"}, headers=b)
    assert c.status_code == 201 and c.json()["author"] == "bob"
    got = env.client.get(f"{API}/posts/{pid}", headers=h).json()
    assert got["score"] == 1 and got["comments"] == 1
    assert env.client.get(f"{API}/posts/99999", headers=h).status_code == 404
    edited = env.client.patch(f"{API}/posts/{pid}", json={"body": "updated body"}, headers=h).json()
    assert edited["body"] == "updated body"
    assert env.client.get(f"{API}/posts", params={"q": "updated"}, headers=b).json()["total"] == 1


def test_bodies_are_stored_verbatim_and_rendered_escaped(env):
    h = env.agent("alice")
    body = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"
    post = env.client.post(
        f"{API}/posts", headers=h, json={"title": "<b>t</b>", "body": body, "kind": "failure"}
    ).json()
    assert env.client.get(f"{API}/posts/{post['id']}", headers=h).json()["body"] == body
    page = env.client.get(f"/forum/posts/{post['id']}", headers=h)
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text and "<img" not in page.text
    assert env.client.get(f"/forum/posts/{post['id']}").status_code == 401


# -- rate limits and votes -----------------------------------------------------------------------------


def _post(env, headers, i=0, body="b", **extra):
    return env.client.post(
        f"{API}/posts", headers=headers, json={"title": f"t{i}", "body": body, "kind": "insight", **extra}
    )


def _stored_posts(env) -> int:
    from sqlalchemy import func, select

    from aar.referee.db import Post

    with env.ref.db.read() as s:
        return s.scalar(select(func.count()).select_from(Post))


def test_a_burst_of_posts_stops_at_the_per_minute_limit_and_the_rest_is_not_stored(make_env):
    env = make_env(forum_posts_per_minute=5)
    h = env.agent("alice")
    codes = [_post(env, h, i).status_code for i in range(12)]
    assert codes == [201] * 5 + [429] * 7
    r = _post(env, h, 99)
    assert r.status_code == 429 and "5 forum posts per minute" in r.json()["detail"]
    assert "retry in" in r.json()["detail"] and 1 <= int(r.headers["retry-after"]) <= 60
    assert _stored_posts(env) == 5
    # a concurrent burst cannot overshoot either: the count is read inside the write transaction
    from concurrent.futures import ThreadPoolExecutor

    b = env.agent("bob")
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: _post(env, b, i).status_code, range(24)))
    assert sorted(codes) == [201] * 5 + [429] * 19
    assert _stored_posts(env) == 10


def test_the_limits_survive_a_restart(make_env):
    from fastapi.testclient import TestClient

    from aar.referee.app import create_app

    env = make_env(forum_posts_per_day=3)
    h = env.agent("alice")
    assert [_post(env, h, i).status_code for i in range(4)] == [201, 201, 201, 429]
    msg = _post(env, h).json()["detail"]
    assert "3 forum posts per UTC day" in msg and "resets at 00:00 UTC" in msg
    with TestClient(create_app(env.config), raise_server_exceptions=False) as again:  # same database
        r = again.post(f"{API}/posts", headers=h, json={"title": "t", "body": "b", "kind": "insight"})
        assert r.status_code == 429, r.text
        # comments have their own (larger) budget: the day's post limit does not block them
        assert again.post(f"{API}/posts/1/comments", headers=h, json={"body": "c"}).status_code == 201


def test_colluding_tokens_each_post_only_their_own_quota(make_env):
    env = make_env(forum_posts_per_minute=4)
    tokens = [env.agent(f"sock{k}") for k in range(3)]
    ok = {k: 0 for k in range(3)}
    for i in range(10):
        for k, h in enumerate(tokens):
            r = _post(env, h, i)
            ok[k] += r.status_code == 201
            assert r.status_code in (201, 429), r.text
    assert ok == {0: 4, 1: 4, 2: 4} and _stored_posts(env) == 12


def test_all_forum_writes_share_a_per_minute_limit_and_admins_are_exempt(make_env):
    env = make_env(forum_writes_per_minute=4, forum_posts_per_minute=2)
    a, b = env.agent("alice"), env.agent("bob")
    pid = _post(env, a).json()["id"]
    assert env.client.post(f"{API}/posts/{pid}/comments", headers=a, json={"body": "c"}).status_code == 201
    assert env.client.patch(f"{API}/posts/{pid}", headers=a, json={"body": "edited"}).status_code == 200
    r = env.client.post(f"{API}/posts/{pid}/comments", headers=a, json={"body": "c2"})
    assert r.status_code == 201
    r = env.client.post(f"{API}/posts/{pid}/comments", headers=a, json={"body": "c3"})
    assert r.status_code == 429 and "4 forum writes (posts, comments, edits, votes) per minute" in r.text
    # bob's votes are his own writes: four allowed, the fifth refused
    assert [
        env.client.post(f"{API}/posts/{pid}/vote", headers=b, json={"value": v}).status_code
        for v in (1, -1, 0, 1, 1)
    ] == [200, 200, 200, 200, 429]
    root = env.agent("root", admin=True)
    assert all(_post(env, root, i).status_code == 201 for i in range(6))


def test_100kb_posts_hit_the_daily_byte_cap(env):
    h = env.agent("alice")
    big = "x" * 100_000
    codes = [_post(env, h, i, body=big).status_code for i in range(25)]
    n = codes.index(429)
    assert n == 20 and set(codes[n:]) == {429}  # 2 MiB default: 20 posts of 100 KB
    r = _post(env, h, body=big)
    assert "byte cap" in r.json()["detail"] and "2097152 bytes" in r.json()["detail"]
    assert _stored_posts(env) == 20
    # edits count too; small writes still fit in what is left of the day's bytes
    assert env.client.patch(f"{API}/posts/1", headers=h, json={"body": big}).status_code == 429
    assert env.client.post(f"{API}/posts/1/comments", headers=h, json={"body": "short"}).status_code == 201
    assert _post(env, env.agent("bob"), body=big).status_code == 201  # per researcher


def test_self_votes_are_refused_and_never_counted(env):
    from aar.referee.db import Vote

    a, b = env.agent("alice"), env.agent("bob")
    pid = _post(env, a).json()["id"]
    r = env.client.post(f"{API}/posts/{pid}/vote", headers=a, json={"value": 1})
    assert r.status_code == 403 and "own post" in r.json()["detail"]
    assert env.client.get(f"{API}/posts/{pid}", headers=b).json()["score"] == 0
    assert env.client.post(f"{API}/posts/{pid}/vote", headers=b, json={"value": 1}).json()["score"] == 1
    assert env.client.post(f"{API}/posts/{pid}/vote", headers=b, json={"value": 1}).json()["score"] == 1
    # a self-vote already in an older database does not count either
    alice_id = env.ref.auth.identify(a["Authorization"]).id
    with env.ref.db.write() as s:
        s.add(Vote(post_id=pid, agent_id=alice_id, value=1))
    assert env.client.get(f"{API}/posts/{pid}", headers=b).json()["score"] == 1
    assert env.client.get(f"{API}/posts", headers=b).json()["items"][0]["score"] == 1
