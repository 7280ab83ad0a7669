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
            results={
                HOME: {
                    "role": "home",
                    "pgr": pgr,
                    "pgr_ci": [0.3, 0.5],
                    "transfer_acc": 0.8,
                    "transfer_acc_ci": [0.78, 0.82],
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
    assert post["cites"][0]["results"][HOME]["pgr"] == 0.42 and post["cites"][0]["verified"] is False
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
