"""The scripted researcher: a real, offline, non-LLM backend that does research with the same tools.

It reads the leaderboard and the forum, anchors the dev ladder with the vanilla baseline, then
proposes ideas by sampling, mutating and combining configs from ``aar.agents.ideas`` (preferring
what others reported working, keeping diversity with its own starting direction), writes each as an
idea file, tests it on dev, pushes and submits official runs for those that beat its best on dev,
and posts results and failures citing the official runs.

Its policy is a generator that yields tool calls and receives their results. ``complete`` replays
the generator over the tool calls and results already in the conversation and returns the next call,
so the researcher is a pure function of (seed, direction, history): deterministic for a seed, and a
restarted researcher resumes from its transcript exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from aar.agents import ideas
from aar.agents.backends.base import Backend, Completion
from aar.agents.prices import Usage

log = logging.getLogger("aar.agents")


@dataclass
class Call:
    name: str
    args: dict
    thought: str = ""


@dataclass
class Result:
    content: str
    is_error: bool

    @property
    def data(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    @property
    def dict(self) -> dict:
        """The result as a JSON object ({} for errors and anything else): the policy never trips on shape."""
        d = self.data
        return d if isinstance(d, dict) and not self.is_error else {}

    @property
    def rows(self) -> list[dict]:
        d = self.data
        return [r for r in d if isinstance(r, dict)] if isinstance(d, list) and not self.is_error else []


Policy = Generator[Call, Result, None]


def _score(results: dict, task: str) -> float | None:
    """Rank official runs by home transfer accuracy: on one task the weak and ceiling accuracies are
    fixed, so it orders runs exactly as PGR does, and it stays defined when PGR is not."""
    home = results.get(task) or {}
    return home.get("transfer_acc") if home.get("transfer_acc") is not None else home.get("pgr")


def research(seed: int, direction: str, max_ideas: int = 1000, dev_reserve: int = 20) -> Policy:
    rng = random.Random(seed)
    prefs = ideas.preferred_families(direction)
    tried: set[str] = set()
    official: list[tuple[float, dict, int]] = []  # (score, config, run id), own official runs
    reported: list[tuple[float, dict]] = []  # (score of a cited run, config) from the forum
    pending: dict[int, tuple[str, dict, Any]] = {}  # run id -> (idea name, config, dev answer)
    runs_spent = False
    dev_left: int | None = None

    yield Call("notebook", {"action": "read"}, "Read my notebook first: what did I already learn?")
    lb = yield Call("leaderboard", {"limit": 50}, "Where do the baselines and the others stand?")
    vanilla = next((r for r in lb.rows if r.get("baseline") and r.get("idea_path") == "vanilla"), None)
    vanilla_pgr = vanilla and vanilla["home_pgr"]

    # anchor the dev ladder with the baseline: afterwards "improved" means significantly better than it
    anchor = {"family": "hard", "params": {"threshold": 0.5}}
    tried.add(ideas.key(anchor))
    yield Call(
        "write_file",
        {"path": "ideas/vanilla.py", "content": ideas.render(anchor, "vanilla")},
        "Write the vanilla baseline as an idea.",
    )
    dev = yield Call("dev_evaluate", {"idea_path": "ideas/vanilla.py"}, "Anchor my dev ladder with vanilla.")
    dev_left = dev.dict.get("queries_left")

    for it in range(1, max_ideas + 1):
        if it % 4 == 1:  # read what the others found
            found = yield Call("forum_search", {"kind": "result", "limit": 30}, "What worked for the others?")
            for post in found.dict.get("posts", []):
                cfg = ideas.parse_config(post.get("body", ""))
                scores = [
                    s
                    for run in post.get("cited_runs", {}).values()
                    for s in [run.get("home_transfer_acc")]
                    if s is not None
                ]
                if cfg and scores:
                    reported.append((max(scores), cfg))
        if pending:  # collect finished official runs, post them
            mine = yield Call("run_status", {"limit": 20}, "Check my official runs.")
            for run in mine.rows:
                if run.get("run_id") in pending and run["status"] in ("done", "failed", "cancelled"):
                    name, cfg, dev_ans = pending.pop(run["run_id"])
                    yield from _report(run, name, cfg, dev_ans, vanilla_pgr, official)

        if runs_spent and not pending and dev_left is not None and dev_left <= dev_reserve:
            best = max(official, key=lambda t: t[0]) if official else None
            yield Call(
                "forum_post",
                {
                    "title": "budgets spent: my summary",
                    "kind": "insight",
                    "tags": ["summary"],
                    "cites": [best[2]] if best else [],
                    "body": f"best official: {ideas.describe(best[1]) if best else 'none'}\n"
                    f"config: {json.dumps(best[1] if best else {}, sort_keys=True)}",
                },
                "Both budgets are spent: leave a summary for the others.",
            )
            return
        cfg = _propose(rng, prefs, tried, official, reported)
        tried.add(ideas.key(cfg))
        name = f"{cfg['family']}_{it:03d}"
        path = f"ideas/{name}.py"
        yield Call(
            "write_file",
            {"path": path, "content": ideas.render(cfg, name)},
            f"Idea {it}: {ideas.describe(cfg)}",
        )
        improved = False
        dev_ans: Any = None
        if dev_left is None or dev_left > dev_reserve:
            dev = yield Call("dev_evaluate", {"idea_path": path}, f"Test {name} cheaply on dev.")
            if dev.is_error:
                yield Call(
                    "forum_post",
                    {
                        "title": f"{name} fails on dev",
                        "kind": "failure",
                        "tags": [cfg["family"]],
                        "body": f"{ideas.describe(cfg)}\nconfig: {json.dumps(cfg, sort_keys=True)}"
                        f"\n\nerror: {dev.content[-800:]}",
                    },
                    "Share the failure.",
                )
                if "budget" in dev.content:
                    dev_left = 0
                continue
            dev_ans = dev.dict
            improved, dev_left = bool(dev_ans.get("improved")), dev_ans.get("queries_left", dev_left)
        released = (dev_ans or {}).get("pgr")
        line = f"{name}: {ideas.describe(cfg)} -> dev improved={improved} (released PGR {released})"
        yield Call("notebook", {"action": "append", "text": line}, "Log it.")
        # official runs are the real signal: keep one in flight, more for ideas that beat my dev best
        if runs_spent or len(pending) >= (2 if improved else 1):
            if it % 6 == 0:
                yield Call(
                    "forum_post",
                    {
                        "title": f"{cfg['family']}: no significant dev gain ({name})",
                        "kind": "failure",
                        "tags": [cfg["family"], "dev"],
                        "body": f"{line}\nconfig: {json.dumps(cfg, sort_keys=True)}",
                    },
                    "Negative results are results.",
                )
            if pending and it % 3 == 0:  # pace myself: wait for the referee instead of burning dev queries
                oldest = min(pending)
                done = yield Call(
                    "run_status", {"run_id": oldest, "wait_seconds": 600}, "Wait for my oldest run."
                )
                if done.dict.get("status") in ("done", "failed", "cancelled"):
                    name_, cfg_, dev_ = pending.pop(oldest)
                    yield from _report(done.dict, name_, cfg_, dev_, vanilla_pgr, official)
            continue
        push = yield Call(
            "code_push", {"message": f"{name}: {ideas.describe(cfg)}"}, "Push it for an official run."
        )
        if "commit" not in push.dict:
            continue
        run = yield Call(
            "submit_run",
            {"commit": push.dict["commit"], "idea_path": path},
            "Ask the referee for an official run.",
        )
        if "run_id" not in run.dict:
            runs_spent = runs_spent or "budget" in run.content
            continue
        pending[run.dict["run_id"]] = (name, cfg, dev_ans)
    return


def _report(run: dict, name: str, cfg: dict, dev_ans: Any, vanilla_pgr, official: list) -> Policy:
    cfg_line = f"config: {json.dumps(cfg, sort_keys=True)}"
    if run["status"] != "done":
        yield Call(
            "forum_post",
            {
                "title": f"official run {run['run_id']} of {name} {run['status']}",
                "kind": "failure",
                "tags": [cfg["family"]],
                "cites": [run["run_id"]],
                "body": f"{ideas.describe(cfg)}\n{cfg_line}\n\n{(run.get('error') or '')[-800:]}",
            },
            "Share the failure.",
        )
        return
    home = (run.get("results") or {}).get(run["task"], {})
    pgr, ci = home.get("pgr"), home.get("pgr_ci") or [None, None]
    score = _score(run.get("results") or {}, run["task"])
    if score is not None:
        official.append((score, cfg, run["run_id"]))
    held = {t: r.get("pgr") for t, r in (run.get("results") or {}).items() if t != run["task"]}
    body = (
        f"{ideas.describe(cfg)}\n{cfg_line}\n\nofficial home PGR {pgr} (95% CI {ci}), transfer accuracy "
        f"{home.get('transfer_acc')}; held-out PGR {held}; vanilla's home PGR {vanilla_pgr}; "
        f"dev: {json.dumps({k: v for k, v in (dev_ans or {}).items() if k in ('pgr', 'improved')})}"
    )
    yield Call(
        "forum_post",
        {
            "title": f"{name}: home PGR {pgr if pgr is None else round(pgr, 3)}",
            "kind": "result",
            "tags": [cfg["family"], "official"],
            "cites": [run["run_id"]],
            "body": body,
        },
        "Post the official result.",
    )
    yield Call("notebook", {"action": "append", "text": f"official run {run['run_id']} {name}: {body[:400]}"})


def _propose(rng: random.Random, prefs: list[str], tried: set[str], official: list, reported: list) -> dict:
    """Exploit (mutate the best known, own or reported; combine two good ones) or explore (own
    direction first, any family sometimes); never repeat a config."""
    good = sorted([(p, c) for p, c, _r in official] + reported, key=lambda t: -t[0])
    for _ in range(50):
        u = rng.random()
        if good and u < 0.4:
            top = good[:3]
            cfg = ideas.mutate(rng, rng.choice(top)[1])
        elif len(good) >= 2 and u < 0.5:
            a, b = rng.sample(good[:4], 2)
            cfg = ideas.combine(a[1], b[1])
        elif prefs and u < 0.85:
            cfg = ideas.sample(rng, rng.choice(prefs))
        else:
            cfg = ideas.sample(rng, rng.choice(ideas.FAMILIES + ["ensemble"]))
        if ideas.key(cfg) not in tried:
            return cfg
    return ideas.sample(rng, rng.choice(ideas.FAMILIES))


def history(messages: list[dict]) -> list[tuple[dict, Result]]:
    """(tool_use block, its result) pairs in conversation order."""
    results: dict[str, Result] = {}
    for m in messages:
        if m["role"] == "user" and isinstance(m["content"], list):
            for b in m["content"]:
                if b["type"] == "tool_result":
                    results[b["tool_use_id"]] = Result(
                        b["content"] if isinstance(b["content"], str) else json.dumps(b["content"]),
                        bool(b.get("is_error")),
                    )
    pairs = []
    for m in messages:
        if m["role"] == "assistant":
            for b in m["content"]:
                if b["type"] == "tool_use" and b["id"] in results:
                    pairs.append((b, results[b["id"]]))
    return pairs


class ScriptedBackend(Backend):
    name = "scripted"
    model = "scripted"
    context_window = None

    def __init__(self, seed: int = 0, direction: str = "", max_ideas: int = 1000):
        super().__init__()
        self.seed, self.direction, self.max_ideas = seed, direction, max_ideas

    def _complete(self, system, messages, tools, max_tokens) -> Completion:
        policy = research(self.seed, self.direction, self.max_ideas)
        pairs = history(messages)
        try:
            call = next(policy)
            for i, (block, result) in enumerate(pairs):
                if block["name"] != call.name:
                    log.warning("scripted replay diverged at call %d (%s vs %s)", i, block["name"], call.name)
                call = policy.send(result)
        except StopIteration:
            return Completion(
                [{"type": "text", "text": "I have explored my idea budget; stopping."}],
                "end_turn",
                Usage(),
                self.model,
                done=True,
            )
        block = {
            "type": "tool_use",
            "id": f"scripted_{len(pairs) + 1:05d}",
            "name": call.name,
            "input": call.args,
        }
        content = ([{"type": "text", "text": call.thought}] if call.thought else []) + [block]
        return Completion(content, "tool_use", Usage(), self.model)
