"""Identity, dev-scoring validation, budget, the response contract, custody of labels, audit."""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import func, select, text

from aar.referee import audit
from aar.referee.db import DevQuery

from .conftest import HELD, HOME, VISIBLE

API = "/api/v1"


def test_missing_or_wrong_token_is_401(env):
    assert env.client.get(f"{API}/me").status_code == 401
    bad = env.client.get(f"{API}/me", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "token" in bad.json()["detail"]
    assert env.client.get(f"{API}/me", headers={"Authorization": "Basic abc"}).status_code == 401
    ok = env.client.get(f"{API}/me", headers=env.agent("alice"))
    assert ok.json() == {"name": "alice", "is_admin": False}


def test_acting_on_another_agents_resources_is_403(env):
    a, b = env.agent("alice"), env.agent("bob")
    post = env.client.post(
        f"{API}/posts", json={"title": "t", "body": "b", "kind": "insight"}, headers=a
    ).json()
    assert env.client.patch(f"{API}/posts/{post['id']}", json={"title": "mine"}, headers=b).status_code == 403
    assert env.client.get(f"{API}/agents/alice/dev/queries", headers=b).status_code == 403
    assert env.client.delete(f"{API}/code/refs/alice/heads/main", headers=b).status_code == 403
    assert env.client.get(f"{API}/admin/flags", headers=b).status_code == 403
    assert (
        env.client.get(f"{API}/agents/alice/dev/queries", headers=env.agent("root", admin=True)).status_code
        == 200
    )


def test_dev_evaluate_answers_exactly_the_contract_and_stores_every_query(env):
    h = env.agent("alice")
    r = env.client.post(f"{API}/dev/evaluate", json={"task": HOME, "predictions": env.dev_preds()}, headers=h)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"task", "pgr", "improved", "queries_left"}
    # the weak teacher itself: nothing new, the ladder's start (PGR 0 by definition) comes back
    assert body == {"task": HOME, "pgr": 0.0, "improved": False, "queries_left": 199}
    td = env.ref.data.task(HOME)
    good = env.client.post(
        f"{API}/dev/evaluate",
        headers=h,
        json={"task": HOME, "predictions": env.dev_preds(values=td.labels("dev") * 0.8 + 0.1)},
    ).json()
    assert good["improved"] is True and good["pgr"] > 1.0  # the true labels: far above the ceiling
    with env.ref.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DevQuery)) == 2


def test_dev_evaluate_validation_names_the_problem(env):
    h = env.agent("alice")
    preds = env.dev_preds()
    first = next(iter(preds))

    def post(payload, raw=None):
        if raw is not None:
            return env.client.post(
                f"{API}/dev/evaluate", content=raw, headers={**h, "content-type": "application/json"}
            )
        return env.client.post(f"{API}/dev/evaluate", json=payload, headers=h)

    cases = {
        "unknown task": post({"task": "nope", "predictions": preds}),
        "missing": post({"task": HOME, "predictions": dict(list(preds.items())[1:])}),
        "unknown dev id": post({"task": HOME, "predictions": {**preds, "zzz": 0.5}}),
        "[0, 1]": post({"task": HOME, "predictions": {**preds, first: 1.5}}),
        "valid number": post({"task": HOME, "predictions": {**preds, first: "0.5"}}),
        "duplicate key": post(
            None, raw=f'{{"task": "{HOME}", "predictions": {{"{first}": 0.1, "{first}": 0.2}}}}'
        ),
        "Field required": post({"predictions": preds}),
        "Extra inputs": post({"task": HOME, "predictions": preds, "labels": True}),
        "JSON": post(None, raw='{"task": '),
    }
    held = post({"task": HELD, "predictions": preds})  # held-out tasks are never dev-scored
    assert held.status_code == 403 and "held-out" in held.json()["detail"]
    for needle, r in cases.items():
        assert r.status_code == 422, (needle, r.status_code, r.text)
        assert needle.strip().lower() in r.json()["detail"].lower() or needle == "JSON", (needle, r.json())
    with env.ref.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DevQuery)) == 0  # rejected queries cost nothing


def test_budget_is_per_agent_per_task_and_429_when_spent(make_env):
    env = make_env(dev_budget_per_day=3)
    a, b = env.agent("alice"), env.agent("bob")
    payload = {"task": HOME, "predictions": env.dev_preds()}
    left = [
        env.client.post(f"{API}/dev/evaluate", json=payload, headers=a).json()["queries_left"]
        for _ in range(3)
    ]
    assert left == [2, 1, 0]
    spent = env.client.post(f"{API}/dev/evaluate", json=payload, headers=a)
    assert spent.status_code == 429 and "budget" in spent.json()["detail"]
    assert env.client.post(f"{API}/dev/evaluate", json=payload, headers=b).status_code == 200
    held = {"task": HELD, "predictions": env.dev_preds(HELD)}
    assert env.client.post(f"{API}/dev/evaluate", json=held, headers=a).status_code == 403  # never dev-scored


def test_huge_body_is_413_not_5xx(env):
    h = env.agent("alice")
    big = b'{"task": "x", "predictions": {' + b'"a": 0.5, ' * 1_000_000 + b'"b": 0.5}}'
    r = env.client.post(f"{API}/dev/evaluate", content=big, headers={**h, "content-type": "application/json"})
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]


def test_no_label_information_leaves_through_public_files_or_endpoints(env, data_dir, tmp_path):
    from aar.referee.datadir import export_public

    out = tmp_path / "public"
    export_public(data_dir, out)
    # held-out tasks are not exported at all; final inputs of no task are (official sandboxes get them)
    assert sorted(p.name for p in out.iterdir()) == sorted([HOME, VISIBLE])
    for task in (HOME, VISIBLE):
        files = sorted(p.name for p in (out / task).iterdir())
        assert files == ["card.json", "dev.jsonl", "student_train.jsonl"]
        for name in ("student_train", "dev"):
            rows = [json.loads(line) for line in (out / task / f"{name}.jsonl").read_text().splitlines()]
            keys = {"id", "text", "weak"} if name == "student_train" else {"id", "text"}
            assert all(set(r) == keys for r in rows)
        card = json.loads((out / task / "card.json").read_text())
        assert set(card) == {
            "name",
            "domain",
            "role",
            "description",
            "weak_model",
            "strong_model",
            "protocol_c",  # chosen by CV on weak labels only: carries no label information
            "student",  # a text tier's fixed student spec (fixed without labels); None on a feature tier
            "sizes",
            "files",
            "idea_contract",
        }
        assert set(card["sizes"]) == {"student_train", "dev"}  # row counts only: no label counts
        assert card["student"] is None  # the feature tier
    tasks = env.client.get(f"{API}/tasks", headers=env.agent("alice")).text.lower()
    assert "labels" not in tasks and "accuracy" not in tasks and HELD not in tasks and "private" not in tasks
    admin_tasks = env.client.get(f"{API}/tasks", headers=env.agent("root", admin=True)).json()
    assert {t["name"]: t["role"] for t in admin_tasks} == {HOME: "home", HELD: "held_out", VISIBLE: "visible"}
    # the private dir is 0700 and holds the labels
    assert (data_dir.stat().st_mode & 0o777) == 0o700
    with np.load(data_dir / "tasks" / HOME / "arrays.npz") as arrays:
        assert "labels_dev" in arrays.files


def test_audit_log_is_append_only_and_hash_chained(env):
    h = env.agent("alice")
    env.client.post(f"{API}/posts", json={"title": "t", "body": "b", "kind": "insight"}, headers=h)
    env.client.post(f"{API}/dev/evaluate", json={"task": HOME, "predictions": env.dev_preds()}, headers=h)
    admin = env.agent("root", admin=True)
    log = env.client.get(f"{API}/admin/audit", headers=admin).json()
    assert log["intact"] and log["entries"] == 2
    assert [e["action"] for e in log["items"]] == ["dev.evaluate", "forum.post"]
    import pytest
    from sqlalchemy.exc import DatabaseError

    with pytest.raises(DatabaseError, match="append-only"), env.ref.db.write() as s:
        s.execute(text("UPDATE audit_log SET action = 'x'"))
    with pytest.raises(DatabaseError, match="append-only"), env.ref.db.write() as s:
        s.execute(text("DELETE FROM audit_log"))
    with env.ref.db.read() as s:
        assert audit.verify_chain(s) == (True, 2)


def test_database_is_durable(env):
    """An acknowledged write survives a crash: SQLite in WAL mode with synchronous=FULL; PostgreSQL
    with fsync and synchronous commits (its defaults, which the referee relies on)."""
    with env.ref.db.read() as s:
        if env.ref.db.is_sqlite:
            assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        else:
            assert env.ref.db.is_postgres
            assert s.execute(text("SHOW fsync")).scalar() == "on"
            assert s.execute(text("SHOW synchronous_commit")).scalar() == "on"
