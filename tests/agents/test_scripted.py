"""The scripted researcher's parts: every family renders to a valid idea, proposals are deterministic
for a seed and follow the direction, and replaying a history gives the same next call."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from aar.agents import ideas
from aar.agents.backends.scripted import Result, ScriptedBackend, research
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


def _drive(seed: int, direction: str, n: int) -> list[tuple[str, str]]:
    """The first n calls of the policy against a fixed world (every dev result 'improved')."""
    policy = research(seed, direction)
    call = next(policy)
    out = []
    for i in range(n):
        out.append((call.name, json.dumps(call.args, sort_keys=True)))
        data = {
            "dev_evaluate": {"pgr": 0.5, "improved": i % 3 == 0, "queries_left": 150},
            "code_push": {"commit": "a" * 40},
            "submit_run": {"run_id": i},
            "leaderboard": [],
            "run_status": [],
            "forum_search": {"posts": []},
        }.get(call.name, "ok")
        call = policy.send(Result(json.dumps(data), False))
    return out


def test_deterministic_for_a_seed_and_diverse_across_seeds() -> None:
    a, b, c = _drive(1, "confidence", 60), _drive(1, "confidence", 60), _drive(2, "confidence", 60)
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
    for step in ("notebook", "leaderboard", "dev_evaluate", "code_push", "submit_run"):
        assert step in names


def test_backend_replays_history_to_the_next_call() -> None:
    backend = ScriptedBackend(seed=5, direction="neighbours")
    messages = [{"role": "user", "content": [{"type": "text", "text": "go"}]}]
    names = []
    for _ in range(6):
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
    assert names[:4] == ["notebook", "leaderboard", "write_file", "dev_evaluate"]
    again = ScriptedBackend(seed=5, direction="neighbours").complete("s", messages, [])
    assert again.tool_uses[0]["input"] == backend.complete("s", messages, []).tool_uses[0]["input"]
