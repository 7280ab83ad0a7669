"""The scripted researcher: a real, offline, non-LLM backend that does research with the same tools.

It lists the tasks it may see (the home task and the campaign's visible tasks), reads the leaderboard
and the forum, anchors each task's dev Ladder with the vanilla baseline, then proposes ideas by
sampling, mutating and combining configs from ``aar.agents.ideas`` (preferring the ideas that
generalised best, own or reported, while keeping diversity with its own starting direction), writes
each as an idea file, tests it on the home task's dev split and, when it moved the home Ladder, on
each visible task's, pushes and submits official runs (more of them for ideas that improved on every
task they were tried on), and posts results and failures citing the official runs.

It knows only what a researcher may see: the dev Ladders' answers and official runs' *released*
public scores on the home and visible tasks; never an exact accuracy, a private part or a held-out
task. How it ranks ideas from that is :func:`score`.

Its policy is a generator that yields tool calls and receives their results. ``complete`` replays
the generator over the tool calls and results already in the conversation and returns the next call,
so the researcher is a pure function of (seed, direction, history): deterministic for a seed, and a
restarted researcher resumes from its transcript exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from aar.agents import ideas
from aar.agents.backends.base import Backend, Completion
from aar.agents.prices import Usage
from aar.contract import has_result

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
Evidence = dict[str, tuple[bool, float | None]]  # task -> (moved the released best, released PGR then)
Score = tuple[int, float]


def score(evidence: Evidence, tasks: list[str]) -> Score | None:
    """An idea's cross-task score, from what a researcher may see only (no exact number anywhere).

    ``evidence[t] = (improved, pgr)`` for a task t I can see (the home task and the visible ones): from
    the task's dev Ladder, or, overriding it on that task, from the released public score of an official
    run of the idea. ``improved``: the idea moved the task's released best (significantly beat every
    earlier submission there); ``pgr``: the PGR released then, the task's new best.

    score = (n, worst): n = the number of my tasks the idea improved on, worst = the minimum over those
    tasks of the PGR released there (-inf when none is defined). Tuples compare n first, so an idea that
    improved on every task I can see outranks one that improved on fewer, however high its home number
    (generalisation first); among equals, the better worst task wins. Since each Ladder only rises, a
    later improvement on a task is also significantly better than every earlier one there. An idea that
    improved nowhere has no score (None): a Ladder that says nothing is no evidence.
    """
    moved = [pgr for t, (improved, pgr) in evidence.items() if t in tasks and improved]
    if not moved:
        return None
    defined = [p for p in moved if p is not None]
    return len(moved), min(defined) if defined else -math.inf


@dataclass
class Known:
    """What I know of one config: dev Ladder answers and official runs' released scores, per task."""

    cfg: dict
    order: int  # discovery order: ties keep the earlier idea (deterministic)
    dev: Evidence = field(default_factory=dict)
    official: Evidence = field(default_factory=dict)
    run_id: int | None = None  # my own official run of it, to cite

    def evidence(self) -> Evidence:
        return {**self.dev, **self.official}


def _note(into: Evidence, task: str, improved: bool, pgr: float | None) -> None:
    """Merge one answer: improved anywhere stays improved, with the highest released PGR seen."""
    was, old = into.get(task, (False, None))
    if improved and (not was or old is None or (pgr is not None and pgr > old)):
        into[task] = (True, pgr)
    elif task not in into:
        into[task] = (False, None)


def _released_evidence(released: Any, tasks: list[str]) -> Evidence:
    """Evidence from a run's released public scores (run_status / leaderboard / forum briefs)."""
    out: Evidence = {}
    for t in tasks:
        rel = released.get(t) if isinstance(released, dict) else None
        if isinstance(rel, dict):
            out[t] = (bool(rel.get("improved")), rel.get("pgr"))
    return out


def _fmt(v: Any) -> str:
    return "null" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def research(seed: int, direction: str, max_ideas: int = 1000, dev_reserve: int = 20) -> Policy:
    rng = random.Random(seed)
    prefs = ideas.preferred_families(direction)
    tried: set[str] = set()
    known: dict[str, Known] = {}
    pending: dict[int, tuple[str, dict, dict]] = {}  # run id -> (idea name, config, dev answers by task)
    runs_spent = False
    dev_left: dict[str, int | None] = {}  # queries left per task (None: not asked yet)

    def learn(cfg: dict) -> Known:
        k = ideas.key(cfg)
        if k not in known:
            known[k] = Known(cfg, len(known))
        return known[k]

    def dev_open(task: str | None) -> bool:
        left = dev_left.get(task or "")
        return left is None or left > dev_reserve

    def good() -> list[Known]:
        """Known ideas with a score, best first (score, then discovery order)."""
        scored = [(s, k) for k in known.values() if (s := score(k.evidence(), tasks)) is not None]
        return [k for s, k in sorted(scored, key=lambda t: (-t[0][0], -t[0][1], t[1].order))]

    yield Call("notebook", {"action": "read"}, "Read my notebook first: what did I already learn?")
    cards = yield Call("tasks", {}, "Which tasks can I see? Visible tasks check that an idea generalises.")
    home: str | None = next((c["name"] for c in cards.rows if c.get("role") == "home"), None)
    visible = [c["name"] for c in cards.rows if c.get("role") == "visible" and c.get("name") != home]
    lb = yield Call("leaderboard", {"limit": 50}, "Where do the baselines and the others stand?")
    home = home or next((r["task"] for r in lb.rows if r.get("task")), None)
    vanilla = next((r for r in lb.rows if r.get("baseline") and r.get("idea_path") == "vanilla"), None)
    vanilla_pgr = ((vanilla or {}).get("released") or {}).get(home or "", {}).get("pgr")
    tasks: list[str] = [t for t in [home, *visible] if t]

    def dev_eval(path: str, task: str | None, why: str) -> Generator[Call, Result, Result]:
        args = {"idea_path": path} | ({"task": task} if task and task != home else {})
        ans = yield Call("dev_evaluate", args, why)
        where = ans.dict.get("task") or task or home or ""
        if ans.is_error and "budget" in ans.content:
            dev_left[where] = 0
        elif not ans.is_error:
            dev_left[where] = ans.dict.get("queries_left", dev_left.get(where))
        return ans

    # anchor each dev ladder with the baseline: afterwards "improved" means significantly better than it
    anchor = {"family": "hard", "params": {"threshold": 0.5}}
    tried.add(ideas.key(anchor))
    yield Call(
        "write_file",
        {"path": "ideas/vanilla.py", "content": ideas.render(anchor, "vanilla")},
        "Write the vanilla baseline as an idea.",
    )
    first = yield from dev_eval("ideas/vanilla.py", None, "Anchor my home dev ladder with vanilla.")
    if home is None and first.dict.get("task"):
        home = first.dict["task"]
        tasks = [home, *visible]
    for v in visible:
        yield from dev_eval("ideas/vanilla.py", v, f"Anchor the dev ladder of the visible task {v}.")

    for it in range(1, max_ideas + 1):
        if it % 4 == 1:  # read what the others found: configs with their cited runs' released scores
            found = yield Call("forum_search", {"kind": "result", "limit": 30}, "What worked for the others?")
            for post in found.dict.get("posts", []):
                cfg = ideas.parse_config(post.get("body", ""))
                if cfg is None:
                    continue
                for run in (post.get("cited_runs") or {}).values():
                    for t, (improved, pgr) in _released_evidence(run.get("released"), tasks).items():
                        _note(learn(cfg).official, t, improved, pgr)
        if pending:  # collect finished official runs, post them
            mine = yield Call("run_status", {"limit": 20}, "Check my official runs.")
            for run in mine.rows:
                if run.get("run_id") in pending and has_result(run):
                    name, cfg, dev_ans = pending.pop(run["run_id"])
                    yield from _finished(run, name, cfg, dev_ans, vanilla_pgr, tasks, learn(cfg))

        if runs_spent and not pending and not dev_open(home):
            ranked = good()
            best = next((k for k in ranked if k.run_id is not None), ranked[0] if ranked else None)
            yield Call(
                "forum_post",
                {
                    "title": "budgets spent: my summary",
                    "kind": "insight",
                    "tags": ["summary"],
                    "cites": [best.run_id] if best and best.run_id is not None else [],
                    "body": f"best idea across {', '.join(tasks) or 'my tasks'} (improved on the most "
                    f"tasks, then the best worst-task released PGR): "
                    f"{ideas.describe(best.cfg) if best else 'none'}\n"
                    f"config: {json.dumps(best.cfg if best else {}, sort_keys=True)}\n"
                    f"what the Ladders released for it (official over dev): "
                    f"{_evidence_line(best.evidence() if best else {}, tasks)}",
                },
                "Both budgets are spent: leave a summary for the others.",
            )
            return
        cfg = _propose(rng, prefs, tried, [k.cfg for k in good()])
        tried.add(ideas.key(cfg))
        name = f"{cfg['family']}_{it:03d}"
        path = f"ideas/{name}.py"
        yield Call(
            "write_file",
            {"path": path, "content": ideas.render(cfg, name)},
            f"Idea {it}: {ideas.describe(cfg)}",
        )
        dev_ans: dict[str, dict] = {}  # task -> the dev Ladder's answer
        if dev_open(home):
            dev = yield from dev_eval(path, None, f"Test {name} cheaply on the home task's dev split.")
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
                continue
            dev_ans[home or dev.dict.get("task", "")] = dev.dict
            if dev.dict.get("improved"):  # a home gain: does it hold on the tasks that check generalisation?
                for v in visible:
                    if not dev_open(v):
                        continue
                    check = yield from dev_eval(path, v, f"Does {name} also improve on {v}?")
                    dev_ans[v] = check.dict if not check.is_error else {"improved": False, "error": True}
        for t, ans in dev_ans.items():
            _note(learn(cfg).dev, t, bool(ans.get("improved")), ans.get("pgr"))
        improved = [t for t, ans in dev_ans.items() if ans.get("improved")]
        generalises = bool(dev_ans) and len(improved) == len(dev_ans)  # every task it was tried on
        released = ", ".join(f"{t}: {_fmt(a.get('pgr'))}" for t, a in dev_ans.items())
        line = (
            f"{name}: {ideas.describe(cfg)} -> dev improved on {len(improved)} of {len(dev_ans)} tasks "
            f"tried (released dev PGR {released or 'none'})"
        )
        yield Call("notebook", {"action": "append", "text": line}, "Log it.")
        # official runs are the real signal: keep one in flight, more for ideas that beat the dev best
        # on every task tried (an idea that only moves home is no better a bet than an untested one)
        if runs_spent or len(pending) >= (2 if generalises else 1):
            if it % 6 == 0:
                yield Call(
                    "forum_post",
                    {
                        "title": f"{cfg['family']}: no significant dev gain on every task ({name})",
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
                if has_result(done.dict):
                    name_, cfg_, dev_ = pending.pop(oldest)
                    yield from _finished(done.dict, name_, cfg_, dev_, vanilla_pgr, tasks, learn(cfg_))
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


def _evidence_line(evidence: Evidence, tasks: list[str]) -> str:
    parts = []
    for t in tasks:
        if t in evidence:
            improved, pgr = evidence[t]
            parts.append(f"{t}: {_fmt(pgr)} (new best)" if improved else f"{t}: no new best")
    return "; ".join(parts) or "nothing released"


def _finished(
    run: dict, name: str, cfg: dict, dev_ans: dict, vanilla_pgr: Any, tasks: list[str], idea: Known
) -> Policy:
    """Record a finished official run's released scores as evidence for its idea, then post it: the
    post quotes the released numbers only (the referee shows the cited run's own beside it)."""
    cfg_line = f"config: {json.dumps(cfg, sort_keys=True)}"
    if run["status"] not in ("done", "waiting"):  # waiting: released, a held-out task still being prepared
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
    released = run.get("released") or {}
    for t, (improved, pgr) in _released_evidence(released, tasks).items():
        _note(idea.official, t, improved, pgr)
    idea.run_id = run["run_id"]
    lines = []
    for t in tasks:
        rel = released.get(t)
        if not isinstance(rel, dict):
            lines.append(f"- {t}: nothing released")
        elif rel.get("improved") and rel.get("pgr") is not None:
            ci = rel.get("pgr_ci") or [None, None]
            lines.append(f"- {t}: {_fmt(rel['pgr'])} [{_fmt(ci[0])}, {_fmt(ci[1])}], a new best")
        else:
            lines.append(
                f"- {t}: not released (no significant gain; best released {_fmt(rel.get('best_pgr'))})"
            )
    moved = sum(1 for t in tasks if isinstance(released.get(t), dict) and released[t].get("improved"))
    home = run["task"]
    home_rel = released.get(home) if isinstance(released.get(home), dict) else {}
    dev_line = {t: {k: a.get(k) for k in ("pgr", "improved")} for t, a in dev_ans.items()}
    body = (
        f"{ideas.describe(cfg)}\n{cfg_line}\n\nofficial run {run['run_id']}: released public PGR per task "
        "(the official Ladder):\n" + "\n".join(lines) + f"\nimproved on {moved} of {len(tasks)} tasks "
        f"I can see; vanilla's released home PGR {_fmt(vanilla_pgr)}; dev Ladder: {json.dumps(dev_line)}"
    )
    pgr = home_rel.get("pgr") if home_rel.get("improved") else None
    title = (
        f"{name}: released home PGR {_fmt(pgr)}, improved on {moved}/{len(tasks)} tasks"
        if pgr is not None
        else f"{name}: no new best on {home} (improved on {moved}/{len(tasks)} tasks)"
    )
    yield Call(
        "forum_post",
        {
            "title": title,
            "kind": "result",
            "tags": [cfg["family"], "official"],
            "cites": [run["run_id"]],
            "body": body,
        },
        "Post the official result.",
    )
    yield Call("notebook", {"action": "append", "text": f"official run {run['run_id']} {name}: {body[:400]}"})


def _propose(rng: random.Random, prefs: list[str], tried: set[str], good: list[dict]) -> dict:
    """Exploit (mutate one of the best known configs, own or reported, best = ``score``: improved on
    the most tasks I can see first; combine two good ones) or explore (own direction first, any family
    sometimes); never repeat a config."""
    for _ in range(50):
        u = rng.random()
        if good and u < 0.4:
            cfg = ideas.mutate(rng, rng.choice(good[:3]))
        elif len(good) >= 2 and u < 0.5:
            a, b = rng.sample(good[:4], 2)
            cfg = ideas.combine(a, b)
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

    def __init__(
        self,
        model: str | None = None,
        *,
        seed: int = 0,
        direction: str = "",
        max_ideas: int = 1000,
        **_ignored,
    ):
        super().__init__()  # model: always "scripted"; the registry passes one like any backend's
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
