"""The two published attacks on a scoring server, against our dev endpoint with the full budget.

1. The released scorer's exploit: flip one prediction per query and read the change.
2. The boosting attack (Blum and Hardt 2015): submit random labelings, keep the lucky ones,
   majority-vote them.

The attacker's recovered label for an item is what the responses imply; where two responses are
identical it has learned nothing about the item and its guess is a coin flip (credited 0.5, its
expected accuracy). The same attacker code runs against an exact scorer (what the study's server
returned) as a control, to show the attacks work when the defence is absent.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from aar.referee.db import Flag
from aar.w2s.pgr import pgr_stats

from .conftest import HOME

API = "/api/v1"
BUDGET = 200


class Http:
    """Our endpoint: the attacker's score signal is (released pgr, improved)."""

    def __init__(self, env, name):
        self.env, self.h, self.calls = env, env.agent(name), 0

    def __call__(self, preds: np.ndarray):
        self.calls += 1
        r = self.env.client.post(
            f"{API}/dev/evaluate",
            headers=self.h,
            json={"task": HOME, "predictions": self.env.dev_preds(values=preds)},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return (body["pgr"], body["improved"])


class Exact:
    """The study's scorer: exact accuracy."""

    def __init__(self, labels):
        self.labels = labels

    def __call__(self, preds):
        return (float(((preds >= 0.5) == self.labels).mean()), False)


def flip_attack(score, base: np.ndarray) -> np.ndarray:
    """Expected accuracy credit per probed item of the labels the responses reveal."""
    n = min(len(base), BUDGET - 1)
    ref = score(base)
    guesses = []
    for i in range(n):
        p = base.copy()
        p[i] = 1.0 - p[i]
        got = score(p)
        if got == ref:
            guesses.append(None)  # identical answers: nothing learned about item i
        else:
            better = got[1] or (got[0] is not None and ref[0] is not None and got[0] > ref[0])
            guesses.append(p[i] if better else base[i])
    return np.array([np.nan if g is None else g for g in guesses])


def credit(guesses: np.ndarray, labels: np.ndarray) -> float:
    known = ~np.isnan(guesses)
    right = (guesses[known] >= 0.5) == labels[: len(guesses)][known]
    return (right.sum() + 0.5 * (~known).sum()) / len(guesses)


def boosting_attack(score, n_items: int, rng) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random labelings; keep those the scorer calls lucky; majority vote (ties: no information)."""
    first = None
    kept, seen = [], []
    for _ in range(BUDGET):
        p = (rng.random(n_items) < 0.5).astype(float)
        seen.append(p)
        got = score(p)
        if first is None:
            first = got
        lucky = got[1] or (got[0] is not None and got[0] > 0.5 and first[1] is False and got[0] != first[0])
        if isinstance(score, Exact):
            lucky = got[0] > 0.5
        if lucky:
            kept.append(p)
    if not kept:
        return np.full(n_items, np.nan), seen
    votes = np.mean(kept, axis=0)
    return np.where(votes == 0.5, np.nan, (votes > 0.5).astype(float)), seen


def test_flip_one_per_query_recovers_nothing(env):
    td = env.ref.data.task(HOME)
    labels, weak = td.labels("dev").astype(int), td.weak("dev")
    rng = np.random.default_rng(7)
    random_base = (rng.random(len(labels)) < 0.5).astype(float)
    weak_base = (weak >= 0.5).astype(float)  # the strongest start an agent has: the weak labels

    exact = credit(flip_attack(Exact(labels), random_base), labels)
    ours_random = credit(flip_attack(Http(env, "flipper"), random_base), labels)
    ours_weak = credit(flip_attack(Http(env, "flipper2"), weak_base), labels)
    print(
        f"\nflip attack, {len(labels)} dev items, {BUDGET} queries: recovered-label accuracy "
        f"exact scorer {exact:.3f}; ours from a random base {ours_random:.3f}, "
        f"from the weak labels {ours_weak:.3f}"
    )
    assert exact == 1.0  # the exploit works against an exact scorer: every probed label read
    assert abs(ours_random - 0.5) <= 0.02 and abs(ours_weak - 0.5) <= 0.02
    # the budget runs out (dev may have fewer items than the budget): then queries are refused
    for _ in range(BUDGET + 1):
        r = env.client.post(
            f"{API}/dev/evaluate",
            headers=env.agent("flipper"),
            json={"task": HOME, "predictions": env.dev_preds()},
        )
        if r.status_code != 200:
            break
    assert r.status_code == 429
    with env.ref.db.read() as s:
        kinds = {(f.kind, f.agent_id) for f in s.scalars(select(Flag))}
    ids = {n: env.ref.auth.identify(f"Bearer {env.tokens[n]}").id for n in ("flipper", "flipper2")}
    assert ("dev_probing_few_rows", ids["flipper"]) in kinds and (
        "dev_probing_few_rows",
        ids["flipper2"],
    ) in kinds


def test_boosting_attack_gains_nothing(env):
    td = env.ref.data.task(HOME)
    labels = td.labels("dev").astype(int)
    n = len(labels)
    exact_votes, _ = boosting_attack(Exact(labels), n, np.random.default_rng(1))
    http = Http(env, "booster")
    ours_votes, seen = boosting_attack(http, n, np.random.default_rng(1))
    exact_acc = credit(exact_votes, labels)
    ours_acc = credit(ours_votes, labels)
    assert http.calls == BUDGET
    history = env.client.get(f"{API}/dev/queries", params={"limit": 500}, headers=http.h).json()
    released = [q["pgr"] for q in history if q["improved"]]
    # the honest dev PGR of a random submission, and of the attacker's final answer
    weak, ceiling = td.weak("dev"), td.ceiling("dev")
    rand_ci = pgr_stats(labels, weak, ceiling, seen[0]).pgr_ci
    final = np.where(np.isnan(ours_votes), seen[-1], ours_votes)
    final_pgr = pgr_stats(labels, weak, ceiling, final).pgr
    print(
        f"\nboosting attack, {n} dev items, {BUDGET} queries: recovered-label accuracy "
        f"exact scorer {exact_acc:.3f}, "
        f"ours {ours_acc:.3f}; released improvements {len(released)}; random submission PGR CI "
        f"[{rand_ci[0]:.2f}, {rand_ci[1]:.2f}], attacker's final dev PGR {final_pgr:.2f}"
    )
    assert exact_acc > 0.56  # the attack works against an exact scorer
    assert abs(ours_acc - 0.5) <= 0.02
    assert released == []  # not one lucky labeling was ever released
    assert final_pgr <= rand_ci[1]
    with env.ref.db.read() as s:
        assert s.scalar(select(Flag).where(Flag.kind == "dev_probing_random")) is not None
