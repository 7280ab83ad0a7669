"""Custody of the private split and the held-out tasks, and official runs that cannot read labels.

- A researcher token walks every GET route of the API: no private number, no held-out number, not
  even a held-out task's name, appears anywhere; the same walk with an admin token shows them.
- An idea that flips one final item's prediction between official runs learns nothing from what is
  released (the answer is the same whether the flip made the item right or wrong), and the flip
  detector flags the runs.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from sqlalchemy import select

from aar.referee.db import Flag, Run
from aar.sandbox import bubblewrap_available

from .conftest import HELD, HOME, VISIBLE
from .test_codestore import bundle, make_repo, push
from .test_runs import wait_run

API = "/api/v1"
# distinctive numbers that can only come from the hidden parts of the planted run
PRIVATE_PGR, HELD_PGR, EXACT_ACC = 0.8713579, 0.6246813, 0.9191919


def _score(pgr: float, acc: float = 0.8) -> dict:
    return {
        "pgr": pgr,
        "pgr_ci": [pgr - 0.1, pgr + 0.1],
        "transfer_acc": acc,
        "transfer_acc_ci": [acc - 0.02, acc + 0.02],
        "weak_acc": 0.7,
        "weak_acc_ci": [0.68, 0.72],
        "ceiling_acc": 0.9,
        "ceiling_acc_ci": [0.88, 0.92],
        "gap": 0.2,
        "gap_ci": [0.18, 0.22],
        "gap_se": 0.01,
        "transfer_seed_std": 0.0123457,
        "n_items": 400,
        "n_seeds": 3,
    }


def _plant_run(env) -> int:
    """A done run with hidden numbers, cited by a post: every route that shows runs can reach it."""
    alice = env.ref.auth.identify(env.agent("alice")["Authorization"])
    with env.ref.db.write() as s:
        run = Run(
            agent_id=alice.id,
            author_id=alice.id,
            commit="a" * 40,
            idea_path="idea.py",
            task=HOME,
            seeds=3,
            day="2026-01-01",
            status="done",
            results={
                HOME: {"role": "home", "public": _score(0.41, EXACT_ACC), "private": _score(PRIVATE_PGR)},
                VISIBLE: {"role": "visible", "public": _score(0.31), "private": _score(0.3333333)},
                HELD: {"role": "held_out", "public": None, "private": _score(HELD_PGR)},
            },
            released={
                HOME: {
                    "pgr": 0.4,
                    "pgr_ci": [0.3, 0.5],
                    "improved": True,
                    "best_pgr": 0.4,
                    "resolution": 0.05,
                },
                VISIBLE: {
                    "pgr": None,
                    "pgr_ci": None,
                    "improved": False,
                    "best_pgr": 0.2,
                    "resolution": 0.05,
                },
            },
        )
        s.add(run)
        s.flush()
        run_id = run.id
    r = env.client.post(
        f"{API}/posts",
        headers=env.agent("alice"),
        json={"title": "my run", "body": "see the cited run", "kind": "result", "cites": [run_id]},
    )
    assert r.status_code == 201, r.text
    return run_id


def _walk(env, headers: dict, ids: dict[str, str]) -> dict[str, str]:
    """GET every API route the OpenAPI schema lists (path parameters filled from ``ids``); url ->
    response text."""
    seen = {}
    for path, operations in env.client.get(f"{API}/openapi.json").json()["paths"].items():
        if "get" not in operations:
            continue
        params = re.findall(r"{(\w+)(?::\w+)?}", path)
        if any(p not in ids for p in params):
            raise AssertionError(f"the walk does not know how to fill {path}: add its parameters")
        url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: ids[m.group(1)], path)
        r = env.client.get(url, headers=headers)
        assert r.status_code < 500, (url, r.text)
        seen[url] = r.text if "json" in r.headers.get("content-type", "") else ""
    return seen


def test_researcher_walk_sees_no_private_or_held_out_number(env):
    env.agent("alice")
    run_id = _plant_run(env)
    ids = {"run_id": str(run_id), "post_id": "1", "name": "alice", "sha": "a" * 40, "agent": "alice"}
    hidden = [str(PRIVATE_PGR), str(HELD_PGR), str(EXACT_ACC), "0.3333333", "0.0123457"]

    researcher = _walk(env, env.agent("bob"), ids)
    assert f"{API}/runs/{run_id}" in researcher and f"{API}/leaderboard" in researcher
    for url, text in researcher.items():
        for value in hidden:
            assert value not in text, f"{url} shows a hidden number {value} to a researcher"
        assert HELD not in text, f"{url} names the held-out task to a researcher"
        assert '"private"' not in text and '"results"' not in text, url
    assert "0.4" in researcher[f"{API}/runs/{run_id}"]  # the released public score is shown

    admin = _walk(env, env.agent("root", admin=True), ids)
    shown = admin[f"{API}/runs/{run_id}"] + admin[f"{API}/leaderboard"]
    for value in hidden:
        assert value in shown, f"an admin should see {value}"
    assert HELD in admin[f"{API}/tasks"]


FLIP = """
from aar.w2s.methods import vanilla

def run(ctx):
    p = vanilla(ctx)
    if {item!r} in ctx.test_ids:  # the home task's final inputs
        i = ctx.test_ids.index({item!r})
        p[i] = 1.0 - p[i]
    return p
"""


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_flipping_one_final_item_between_runs_learns_nothing_and_is_flagged(make_env, tmp_path):
    env = make_env(executor="local", seeds=1, max_queued_runs=5)
    env.ref.runs.ensure_baselines(["vanilla"])
    td = env.ref.data.task(HOME)
    public = td.part_index("public")
    # the vanilla idea's hard predictions on the public items (the same code as the baseline)
    van = env.ref.runs.vanilla(HOME)[0]
    right = (van >= 0.5) == (td.labels("final") == 1)
    item_made_right = td.ids["final"][public[~right[public]][0]]  # vanilla wrong here: a flip fixes it
    item_made_wrong = td.ids["final"][public[right[public]][0]]  # vanilla right here: a flip breaks it
    repo = make_repo(
        tmp_path / "ideas",
        {
            "base.py": FLIP.replace("{item!r}", repr("no such item")),
            "flip_a.py": FLIP.replace("{item!r}", repr(item_made_right)),
            "flip_b.py": FLIP.replace("{item!r}", repr(item_made_wrong)),
        },
    )
    (pushed,) = push(env, "mallory", bundle(repo)).json()
    h = env.agent("mallory")
    views = {}
    for name in ("base", "flip_a", "flip_b"):
        r = env.client.post(
            f"{API}/runs",
            headers=h,
            json={"commit": pushed["commit"], "idea_path": f"{name}.py", "task": HOME},
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        finished = wait_run(env, run_id, env.agent("root", admin=True), timeout=300)
        assert finished["status"] == "done", finished["error"]
        views[name] = env.client.get(f"{API}/runs/{run_id}", headers=h).json()

    # exact accuracies would tell the two flips apart by exactly one item ...
    admin = env.agent("root", admin=True)
    exact = {
        n: env.client.get(f"{API}/runs/{v['id']}", headers=admin).json()["results"][HOME]["public"][
            "transfer_acc"
        ]
        for n, v in views.items()
    }
    assert exact["flip_a"] > exact["base"] > exact["flip_b"]

    # ... but what the researcher is told is the same, field for field
    def told(view: dict) -> dict:
        return {k: v for k, v in view.items() if k not in ("id", "idea_path", "created_at", "finished_at")}

    assert told(views["flip_a"]) == told(views["flip_b"])
    for name in ("flip_a", "flip_b"):
        assert (
            views[name]["released"][HOME]["improved"] is False
            and views[name]["released"][HOME]["pgr"] is None
        )
        assert "transfer_acc" not in str(views[name]) and "seed" not in str(views[name]["released"])

    with env.ref.db.read() as s:
        flagged = {
            f.subject_id: f.evidence
            for f in s.scalars(
                select(Flag).where(Flag.kind == "official_probing", Flag.subject_type == "run")
            )
        }
    assert views["flip_a"]["id"] in flagged and views["flip_b"]["id"] in flagged
    assert views["base"]["id"] not in flagged  # identical to the vanilla baseline: not a probe
    assert flagged[views["flip_a"]["id"]]["items_changed"] == 1
    assert np.isfinite(exact["base"])


def test_a_task_whose_weak_teacher_does_not_beat_the_majority_rate_is_refused(tmp_path, monkeypatch):
    """A task whose labels have nothing to do with its texts (the home task's sentences, relabelled by
    a coin that lands 1 nine times in ten): its teacher cannot beat the majority-class rate on
    final, so a PGR on it would measure nothing; init refuses it by name and writes no manifest."""
    import random

    from aar.referee.datadir import TaskRefused, init_data_dir
    from aar.w2s import tasks
    from aar.w2s.tasks import Row, TaskSpec, get_spec

    home_rows = get_spec(HOME).build()[:1500]
    coin = random.Random(7)
    noise = [Row(r.id, r.text, int(coin.random() < 0.9), r.group) for r in home_rows]
    spec = TaskSpec(name="coin_labels", domain="noise", build=lambda: noise)
    monkeypatch.setitem(tasks._REGISTRY, "coin_labels", spec)
    data = tmp_path / "data"
    with pytest.raises(TaskRefused, match=r"'coin_labels'.*majority-class rate"):
        init_data_dir(data, tasks=[HOME, "coin_labels"], tier="fast", max_rows=1500, log=lambda *_a: None)
    assert not (data / "manifest.json").exists()


LEAKY = """
import sys
from aar.w2s.methods import vanilla

def run(ctx):
    if ctx.task == {held!r}:  # print the held-out inputs into the error, then fail
        print("EXFIL " + ctx.task + " " + ctx.test_texts[0][:200], file=sys.stderr)
        raise RuntimeError("boom")
    return vanilla(ctx)
"""


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_a_failed_runs_error_shows_researchers_no_held_out_name_nor_the_ideas_output(make_env, tmp_path):
    env = make_env(executor="local", seeds=1)
    repo = make_repo(tmp_path / "ideas", {"leaky.py": LEAKY.replace("{held!r}", repr(HELD))})
    (pushed,) = push(env, "mallory", bundle(repo)).json()
    h = env.agent("mallory")
    r = env.client.post(
        f"{API}/runs", headers=h, json={"commit": pushed["commit"], "idea_path": "leaky.py", "task": HOME}
    )
    assert r.status_code == 202, r.text
    admin = wait_run(env, r.json()["id"], env.agent("root", admin=True), timeout=300)
    assert admin["status"] == "failed" and "EXFIL" in admin["error"]  # admins keep the whole story
    mine = env.client.get(f"{API}/runs/{admin['id']}", headers=h).json()
    listed = env.client.get(f"{API}/runs", headers=h).text
    for text in (mine["error"], listed):
        assert "EXFIL" not in text and HELD not in text, text
    assert "a held-out task" in mine["error"]
