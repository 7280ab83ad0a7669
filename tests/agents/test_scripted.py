"""The scripted researcher's parts: every family renders to a valid idea, proposals are deterministic
for a seed and follow the direction, and replaying a history gives the same next call."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from aar.agents import ideas
from aar.agents.backends.scripted import Result, ScriptedBackend, research, score
from aar.w2s.methods import IdeaContext, load_idea_file, validate_predictions
from aar.w2s.student import HeadProtocol


def ctx(seed: int = 0) -> IdeaContext:
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    x = rng.normal(size=(300, 8)) + y[:, None] * 0.8
    weak = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.2, 300), 0.01, 0.99)
    ids = [f"r{i}" for i in range(300)]
    return IdeaContext(
        "t",
        "d",
        ids[:200],
        [""] * 200,
        x[:200],
        weak[:200],
        ids[200:],
        [""] * 100,
        x[200:],
        seed,
        HeadProtocol(c=1.0, seed=seed),
    )


def test_every_family_renders_to_a_valid_idea(tmp_path: Path) -> None:
    rng = random.Random(0)
    for i, family in enumerate([*ideas.FAMILIES, "ensemble"]):
        cfg = ideas.sample(rng, family)
        path = tmp_path / f"i{i}.py"
        path.write_text(ideas.render(cfg, f"i{i}"))
        preds = validate_predictions(load_idea_file(path)(ctx()), ctx().test_ids)
        assert preds.shape == (100,)
        assert ideas.parse_config(path.read_text()) == cfg
        assert ideas.key(ideas.mutate(rng, cfg)) != ideas.key(cfg) or family == "hard"


def test_knn_hops_propagate_and_an_old_config_runs_one_hop(tmp_path: Path) -> None:
    """``hops`` is label propagation: a config written before it existed must give the same predictions
    as ``hops: 1``, and more hops must change them (each hop smooths the previous hop's labels)."""

    def preds(params: dict, name: str) -> np.ndarray:
        path = tmp_path / f"{name}.py"
        path.write_text(ideas.render({"family": "knn", "params": params}, name))
        return validate_predictions(load_idea_file(path)(ctx()), ctx().test_ids)

    old = preds({"k": 10, "alpha": 0.95}, "old")
    one = preds({"k": 10, "alpha": 0.95, "hops": 1}, "one")
    three = preds({"k": 10, "alpha": 0.95, "hops": 3}, "three")
    assert np.array_equal(old, one)
    assert not np.allclose(one, three)
    assert ideas.SPACE["knn"]["hops"] == ("int", 1, 4)


HOME, VIS = "home_task", "visible_task"
TASKS = [{"name": HOME, "role": "home"}, {"name": VIS, "role": "visible"}]


def rel(pgr, improved: bool) -> dict:
    return {"pgr": pgr if improved else None, "pgr_ci": None, "improved": improved, "best_pgr": pgr}


def _world(tasks: list[dict]):
    """A fixed world: the i-th call's answer (dev improves on every third query, official runs finish
    at once with a released home gain on even run ids and a visible gain on multiples of 4)."""

    def answer(i: int, call) -> object:
        if call.name == "dev_evaluate":
            task = call.args.get("task", HOME)
            return {"task": task, "pgr": 0.5, "improved": i % 3 == 0, "queries_left": 150}
        if call.name == "run_status" and "run_id" not in call.args:
            return [
                {
                    "run_id": r,
                    "task": HOME,
                    "status": "done",
                    "released": {HOME: rel(0.4, r % 2 == 0), VIS: rel(0.3, r % 4 == 0)},
                }
                for r in range(i)
            ]
        return {
            "code_push": {"commit": "a" * 40},
            "submit_run": {"run_id": i},
            "tasks": tasks,
            "leaderboard": [],
            "forum_search": {"posts": []},
        }.get(call.name, "ok")

    return answer


def _run(seed: int, direction: str, n: int, tasks: list[dict] = TASKS) -> list:
    """The first n calls of the policy against the fixed world."""
    policy, answer = research(seed, direction), _world(tasks)
    call = next(policy)
    out = []
    for i in range(n):
        out.append(call)
        call = policy.send(Result(json.dumps(answer(i, call)), False))
    return out


def _drive(seed: int, direction: str, n: int, tasks: list[dict] = TASKS) -> list[tuple[str, str]]:
    return [(c.name, json.dumps(c.args, sort_keys=True)) for c in _run(seed, direction, n, tasks)]


def test_deterministic_for_a_seed_and_diverse_across_seeds() -> None:
    a, b, c = _drive(1, "confidence", 120), _drive(1, "confidence", 120), _drive(2, "confidence", 120)
    assert a == b and a != c
    families = [
        json.loads(args)["path"].split("/")[1].rsplit("_", 1)[0]
        for name, args in a
        if name == "write_file" and "vanilla" not in args
    ]
    preferred = set(ideas.preferred_families("confidence"))
    assert sum(f in preferred for f in families) > len(families) / 2  # mostly its own direction
    assert len(set(families)) >= 3  # but not only
    names = [n for n, _ in a]
    for step in ("notebook", "tasks", "leaderboard", "dev_evaluate", "code_push", "submit_run"):
        assert step in names


def test_score_puts_generalisation_first() -> None:
    tasks = [HOME, VIS]
    home_only = {HOME: (True, 0.9), VIS: (False, None)}
    both = {HOME: (True, 0.3), VIS: (True, 0.2)}
    both_better = {HOME: (True, 0.25), VIS: (True, 0.4)}
    assert score(home_only, tasks) == (1, 0.9)
    assert score(both, tasks) == (2, 0.2) and score(both_better, tasks) == (2, 0.25)
    assert sorted([home_only, both, both_better], key=lambda e: score(e, tasks), reverse=True) == [
        both_better,
        both,
        home_only,
    ]
    assert score({HOME: (False, None), VIS: (False, None)}, tasks) is None  # no evidence of anything
    assert score({HOME: (True, None)}, tasks) == (1, float("-inf"))  # improved, PGR undefined there
    assert score({"held_out_task": (True, 0.9)}, tasks) is None  # only tasks I can see count


def test_checks_home_gains_on_the_visible_tasks_and_quotes_released_numbers_only() -> None:
    calls = _run(3, "confidence", 150)
    devs = [c for c in calls if c.name == "dev_evaluate"]
    assert devs[0].args == {"idea_path": "ideas/vanilla.py"}  # the home ladder's anchor
    assert devs[1].args == {"idea_path": "ideas/vanilla.py", "task": VIS}  # and the visible one's
    # after the anchors, a visible task is tried right after a home query that improved, never alone
    for prev, cur in zip(devs[2:], devs[3:], strict=False):
        if cur.args.get("task") == VIS:
            assert prev.args.get("task") is None and prev.args["idea_path"] == cur.args["idea_path"]
    assert any(c.args.get("task") == VIS for c in devs[2:])
    results = [c for c in calls if c.name == "forum_post" and c.args["kind"] == "result"]
    assert results, [c.name for c in calls]
    for post in results:
        body = post.args["body"]
        assert post.args["cites"] and "transfer" not in body and "private" not in body
        assert f"- {HOME}: " in body and f"- {VIS}: " in body
    assert any("a new best" in p.args["body"] for p in results)


def test_mutates_what_improved_on_every_task() -> None:
    """The forum reports two ideas with released official scores: one moved home only, one moved home
    and the visible task. Nothing of mine improves; the researcher must build on the general one."""
    general = {"family": "knn", "params": {"alpha": 0.5, "hard": True, "k": 10}}
    narrow = {"family": "bootstrap", "params": {"keep_frac": 0.5, "rounds": 2}}

    def post(cfg: dict, vis: bool) -> dict:
        run = {"released": {HOME: rel(0.6, True), VIS: rel(0.4, vis)}, "verified": False}
        return {"body": f"config: {json.dumps(cfg)}", "cited_runs": {"1": run}}

    world = _world(TASKS)
    policy = research(0, "confidence")
    call = next(policy)
    for i in range(400):
        answer = world(i, call)
        if call.name == "forum_search":
            answer = {"posts": [post(narrow, False), post(general, True)]}
        if call.name == "dev_evaluate":
            answer = {"task": call.args.get("task", HOME), "pgr": 0.1, "improved": False, "queries_left": 99}
        call = policy.send(Result(json.dumps(answer), False))
        if call.name == "write_file" and call.args["path"] != "ideas/vanilla.py":
            cfg = ideas.parse_config(call.args["content"])
            if cfg["family"] == "knn" and cfg["params"].keys() == general["params"].keys():
                if sum(cfg["params"][k] != v for k, v in general["params"].items()) == 1:
                    return  # a one-parameter mutation of the idea that generalised
    raise AssertionError("never mutated the idea that improved on every task")


def test_home_only_campaign() -> None:
    calls = _run(1, "self-training", 80, tasks=[{"name": HOME, "role": "home"}])
    devs = [c for c in calls if c.name == "dev_evaluate"]
    assert devs and all("task" not in c.args for c in devs)
    assert any(c.name == "submit_run" for c in calls)


def test_backend_replays_history_to_the_next_call() -> None:
    backend = ScriptedBackend(seed=5, direction="neighbours")
    messages = [{"role": "user", "content": [{"type": "text", "text": "go"}]}]
    names = []
    for _ in range(7):
        out = backend.complete("s", messages, [])
        block = out.tool_uses[0]
        names.append(block["name"])
        messages += [
            {"role": "assistant", "content": out.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": block["id"],
                        "content": json.dumps({"pgr": 0.1, "improved": False, "queries_left": 100}),
                        "is_error": False,
                    }
                ],
            },
        ]
    assert names[:5] == ["notebook", "tasks", "leaderboard", "write_file", "dev_evaluate"]
    again = ScriptedBackend(seed=5, direction="neighbours").complete("s", messages, [])
    assert again.tool_uses[0]["input"] == backend.complete("s", messages, []).tool_uses[0]["input"]
