"""Colluding researchers against dev scoring: several tokens, one actor, every token's full budget.

The attacks run over the real HTTP API; only the measurement reads the referee's labels. What the
coalition "learns" is the accuracy of its best guess of the dev labels minus the weak teacher's
accuracy (the weak teacher is public: every token can rebuild it from the exported files).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from aar.referee.db import DevQuery, Flag, TaskLadder

from .conftest import HELD, HOME

API = "/api/v1"
TOKENS = 5
BUDGET = 200  # each token's own daily dev budget (RefereeConfig.dev_budget_per_day)


def _ask(env, name: str, hard: np.ndarray, task: str = HOME):
    body = {"task": task, "predictions": env.dev_preds(task, hard)}
    return env.client.post(f"{API}/dev/evaluate", headers=env.agent(name), json=body)


def boosting_coalition(env, rng) -> tuple[np.ndarray, int]:
    """Every token sends label-blind variants of the coalition's best known labeling: a random half
    of the weak teacher's least confident rows flipped. A released answer moves the coalition's best
    (they share everything). Returns (final guess, releases seen)."""
    weak = env.ref.data.task(HOME).weak("dev")
    best = (weak >= 0.5).astype(float)
    unsure = np.argsort(np.abs(weak - 0.5))[:40]
    releases = 0
    for _round in range(BUDGET):
        for t in range(TOKENS):
            guess = best.copy()
            flip = unsure[rng.random(len(unsure)) < 0.5]
            guess[flip] = 1 - guess[flip]
            r = _ask(env, f"colluder{t}", guess)
            assert r.status_code == 200, r.text
            if r.json()["improved"]:
                best, releases = guess, releases + 1
    return best, releases


def test_five_colluding_tokens_with_full_budgets_learn_a_few_percent_at_most(make_env):
    env = make_env()
    td = env.ref.data.task(HOME)
    labels = td.labels("dev").astype(int)
    weak_acc = float(((td.weak("dev") >= 0.5) == labels).mean())
    final, releases = boosting_coalition(env, np.random.default_rng(11))
    gain = float(((final >= 0.5) == labels).mean()) - weak_acc
    print(f"\n{TOKENS} tokens x {BUDGET} queries, {len(labels)} dev items: {releases} releases, {gain:+.3f}")
    assert gain <= 0.05
    # every token spent its whole budget, and the budget held
    for t in range(TOKENS):
        assert _ask(env, f"colluder{t}", final).status_code == 429
    with env.ref.db.read() as s:
        assert s.get(TaskLadder, HOME).releases == releases
        assert len(s.scalars(select(DevQuery.id).where(DevQuery.task == HOME)).all()) == TOKENS * BUDGET


def test_one_ladder_and_one_budget_per_task_for_everyone(make_env):
    env = make_env(dev_budget_per_day=50, dev_task_budget_per_day=120)
    td = env.ref.data.task(HOME)
    labels = td.labels("dev").astype(float)
    ceiling = (td.ceiling("dev") >= 0.5).astype(float)
    first = _ask(env, "alice", ceiling).json()
    assert first["improved"] and first["pgr"] > 0
    # the same labeling from another token is no improvement over the shared best: same released PGR
    second = _ask(env, "bob", ceiling).json()
    assert not second["improved"] and second["pgr"] == first["pgr"]
    weak_again = _ask(env, "carol", (td.weak("dev") >= 0.5).astype(float)).json()
    assert weak_again["pgr"] == first["pgr"] and not weak_again["improved"]
    perfect = _ask(env, "carol", labels).json()
    assert perfect["improved"] and perfect["pgr"] >= first["pgr"]
    # the task's budget is shared: three tokens of 50 each stop at 120 together
    sent = 4
    codes = []
    for i in range(150):
        codes.append(_ask(env, f"spender{i % 3}", ceiling).status_code)
    assert codes.count(200) == 120 - sent and set(codes[120 - sent :]) == {429}


def test_held_out_tasks_are_never_dev_scored(env):
    r = _ask(env, "alice", env.ref.data.task(HELD).weak("dev"), task=HELD)
    assert r.status_code == 403 and "held-out" in r.json()["detail"]
    with env.ref.db.read() as s:
        assert s.scalars(select(DevQuery.id).where(DevQuery.task == HELD)).all() == []


def test_a_flip_attack_split_across_tokens_is_flagged_for_every_token(env):
    weak = (env.ref.data.task(HOME).weak("dev") >= 0.5).astype(float)
    for i in range(3 * 12):  # three tokens take turns flipping one row each
        p = weak.copy()
        p[i] = 1 - p[i]
        assert _ask(env, f"flip{i % 3}", p).status_code == 200
    ids = {env.ref.auth.identify(env.agent(f"flip{t}")["Authorization"]).id for t in range(3)}
    with env.ref.db.read() as s:
        flagged = {f.agent_id for f in s.scalars(select(Flag).where(Flag.kind == "dev_probing_few_rows"))}
    assert ids <= flagged


def test_reading_which_rows_of_another_researchers_release_were_right_is_flagged(env):
    td = env.ref.data.task(HOME)
    weak = (td.weak("dev") >= 0.5).astype(float)
    ceiling = (td.ceiling("dev") >= 0.5).astype(float)
    assert _ask(env, "honest", ceiling).json()["improved"]
    released = np.flatnonzero(ceiling != weak)
    rng = np.random.default_rng(5)
    for _ in range(8):  # undo a random part of the release: which of its rows were the right ones?
        p = ceiling.copy()
        part = rng.choice(released, size=max(2, len(released) // 4), replace=False)
        p[part] = weak[part]
        assert _ask(env, "reader", p).status_code == 200
    reader = env.ref.auth.identify(env.agent("reader")["Authorization"]).id
    honest = env.ref.auth.identify(env.agent("honest")["Authorization"]).id
    with env.ref.db.read() as s:
        flags = s.scalars(select(Flag).where(Flag.kind == "dev_probing_released_rows")).all()
    assert {f.agent_id for f in flags} == {reader} and honest != reader
