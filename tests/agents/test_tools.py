"""Tools and loop failure handling without a referee run: bad arguments, an unreachable referee, an
endpoint that fails, context compaction, the MCP server, the file tools' sandboxing."""

from __future__ import annotations

import json
import os

import anyio
import pytest

from aar.agents.backends.base import Backend, BackendUnavailable, Completion
from aar.agents.budget import Budget, Limits
from aar.agents.loop import LoopConfig, Researcher
from aar.agents.mcp_server import build_server
from aar.agents.prices import PriceTable, Usage
from aar.agents.referee import RefereeClient
from aar.agents.runner import LocalRunner
from aar.agents.tools import TOOLS, Toolbox, ToolContext, leaderboard_rows, run_brief
from aar.agents.transcript import Transcript

EXPECTED = {
    "shell",
    "read_file",
    "write_file",
    "edit_file",
    "forum_post",
    "forum_search",
    "forum_read",
    "code_push",
    "code_fetch",
    "dev_evaluate",
    "submit_run",
    "run_status",
    "leaderboard",
    "tasks",
    "notebook",
}


@pytest.fixture
def box(tmp_path) -> Toolbox:
    (tmp_path / "ws").mkdir()
    (tmp_path / "scratch").mkdir()
    dead = RefereeClient(str(tmp_path / "no-referee.sock"), "t0ken-not-real", max_wait=0.3, backoff=0.05)
    return Toolbox(ToolContext(runner=LocalRunner(tmp_path / "ws", tmp_path / "scratch"), referee=dead))


def test_the_tool_set() -> None:
    assert {t.name for t in TOOLS} == EXPECTED
    for t in TOOLS:
        assert t.schema["type"] == "object" and t.description


def test_bad_arguments_and_unknown_tools_are_error_results(box: Toolbox) -> None:
    cases = [
        ("read_file", {}),
        ("read_file", {"path": 3}),
        ("shell", {"command": "x", "rm": True}),
        ("submit_run", {"commit": "not-hex!", "idea_path": "a.py"}),
        ("notebook", {"action": "erase"}),
        ("nope", {}),
        ("shell", "{broken json"),
    ]
    for name, args in cases:
        r = box.call(name, args)
        assert r.is_error and r.content, (name, args)


def test_file_tools_and_notebook(box: Toolbox) -> None:
    assert not box.call("write_file", {"path": "ideas/a.py", "content": "x = 1\ny = 2\n"}).is_error
    assert "y = 2" in box.call("read_file", {"path": "ideas/a.py", "offset": 1}).content
    assert not box.call("edit_file", {"path": "ideas/a.py", "old": "x = 1", "new": "x = 3"}).is_error
    assert box.call("edit_file", {"path": "ideas/a.py", "old": "zzz", "new": "q"}).is_error
    assert "x = 3" in box.call("shell", {"command": "cat ideas/a.py"}).content
    long = box.call("shell", {"command": "yes abcdefgh | head -c 100000"})
    assert "output truncated" in long.content and len(long.content) < 25_000
    assert not box.call("notebook", {"action": "append", "text": "tried x"}).is_error
    assert "tried x" in box.call("notebook", {"action": "read"}).content


def test_unreachable_referee_is_an_error_result_not_a_crash(box: Toolbox) -> None:
    for name, args in [("leaderboard", {}), ("forum_search", {"query": "x"}), ("run_status", {"run_id": 1})]:
        r = box.call(name, args)
        assert r.is_error and "unreachable" in r.content


class Stub(Backend):
    """A backend replaying fixed turns; raises BackendUnavailable on the turns listed in `fail`."""

    name, model = "stub", "stub-model"

    def __init__(self, turns, fail=(), window=None):
        super().__init__()
        self.turns, self.fail, self.calls, self.context_window = list(turns), set(fail), 0, window

    def _complete(self, system, messages, tools, max_tokens):
        self.calls += 1
        if self.calls in self.fail:
            raise BackendUnavailable("endpoint down")
        if not tools:  # a compaction request
            return Completion(
                [{"type": "text", "text": "SUMMARY: tried a.py"}], "end_turn", Usage(10, 5), self.model
            )
        turn = self.turns.pop(0) if self.turns else [{"type": "text", "text": "done"}]
        return Completion(turn, "tool_use", Usage(900, 10), self.model)


def test_loop_survives_endpoint_failures_and_bad_calls_and_compacts(box: Toolbox, tmp_path) -> None:
    turns = [
        [
            {
                "type": "tool_use",
                "id": f"c{i}",
                "name": "shell" if i % 2 else "read_file",
                "input": {"command": f"echo {i}"} if i % 2 else {"path": 1},
            }
        ]
        for i in range(4)
    ]
    backend = Stub(turns, fail={2}, window=1000)
    t = Transcript(tmp_path / "t.jsonl")
    r = Researcher(
        backend,
        box,
        t,
        Budget(Limits(turns=20), PriceTable()),
        "sys",
        "go",
        LoopConfig(max_idle_turns=1, unavailable_wait=0, compact_at=0.8),
        sleep=lambda s: None,
    )
    assert r.run() == "no tool use in 1 turns"
    recs = t.records()
    assert any(x["type"] == "event" and x["what"] == "backend_unavailable" for x in recs)
    results = [x for x in recs if x["type"] == "tool_result"]
    assert len(results) == 4 and [x["is_error"] for x in results] == [True, False, True, False]
    compactions = [x for x in recs if x["type"] == "compaction"]
    assert compactions and "SUMMARY: tried a.py" in compactions[-1]["messages"][0]["content"][0]["text"]
    restored = t.restore()  # resume sees the compacted conversation, not the full one
    assert restored.messages[0]["content"][0]["text"].startswith("go")


def test_budget_stops_on_dollars(box: Toolbox, tmp_path) -> None:
    turns = [
        [{"type": "tool_use", "id": f"c{i}", "name": "shell", "input": {"command": "true"}}]
        for i in range(50)
    ]
    prices = PriceTable()
    prices.prices["stub-model"] = prices.price("claude-sonnet-4-5")
    r = Researcher(
        Stub(turns), box, Transcript(tmp_path / "t.jsonl"), Budget(Limits(usd=0.01), prices), "s", "go"
    )
    reason = r.run()
    assert reason.startswith("dollar budget spent") and r.budget.spend.turns == 4  # 4 x 910 tokens ~ $0.0112


def test_mcp_server_lists_and_calls_the_same_tools(box: Toolbox) -> None:
    from mcp.client import Client

    async def main():
        async with Client(build_server(box)) as client:
            listed = await client.list_tools()
            ok = await client.call_tool("write_file", {"path": "m.txt", "content": "via mcp"})
            read = await client.call_tool("read_file", {"path": "m.txt"})
            bad = await client.call_tool("read_file", {"path": 5})
            return listed, ok, read, bad

    listed, ok, read, bad = anyio.run(main)
    assert {t.name for t in listed.tools} == EXPECTED
    schema = next(t for t in listed.tools if t.name == "submit_run").input_schema
    assert schema["required"] == ["commit", "idea_path"]
    assert not ok.is_error and "via mcp" in read.content[0].text
    assert bad.is_error and "bad arguments" in bad.content[0].text


def test_transcript_redacts_secrets_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "very-secret-value-123")
    t = Transcript(tmp_path / "t.jsonl")
    t.write(
        "message",
        message={"role": "user", "content": [{"type": "text", "text": "key=very-secret-value-123"}]},
    )
    t.close()
    text = (tmp_path / "t.jsonl").read_text()
    assert "very-secret-value-123" not in text and "[REDACTED]" in text
    with open(tmp_path / "t.jsonl", "a") as f:
        f.write('{"type": "message", "t": 1, "sess')  # a line torn by a kill
    assert len(Transcript(tmp_path / "t.jsonl").records()) == 1
    assert json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])["type"] == "message"
    assert os.stat(tmp_path / "t.jsonl").st_mode & 0o077 == 0


# -- what the tools show of runs: the released public score, whoever's token asks ---------------------

HOME, VIS, HELD = "sentiment_hotels", "amazon_polarity", "fever"
SECRET = 0.8123  # an exact public number: never shown
PRIVATE = 0.4567  # the private part: never shown


def released(pgr, improved=True, best=None) -> dict:
    ci = None if pgr is None else [round(pgr - 0.05, 2), round(pgr + 0.05, 2)]
    return {"pgr": pgr, "pgr_ci": ci, "improved": improved, "best_pgr": best or pgr, "resolution": 0.01}


def part(pgr: float) -> dict:
    return {
        "pgr": pgr,
        "pgr_ci": [pgr - 0.1, pgr + 0.1],
        "transfer_acc": 0.777,
        "weak_acc": 0.7,
        "ceiling_acc": 0.9,
        "gap": 0.2,
        "transfer_seed_std": 0.0321,
        "n_items": 100,
        "n_seeds": 2,
    }


def admin_run(run_id: int, rel: dict, **kw) -> dict:
    """A run as an admin token receives it: exact results of every task beside the released part."""
    return {
        "id": run_id,
        "author": "alice",
        "submitted_by": "alice",
        "reproduction": False,
        "commit": f"{run_id:040x}",
        "idea_path": f"ideas/i{run_id}.py",
        "task": HOME,
        "seeds": 2,
        "status": "done",
        "error": None,
        "baseline": False,
        "review_state": "unreviewed",
        "review_reason": None,
        "created_at": "2026-01-01T00:00:00",
        "finished_at": "2026-01-01T00:10:00",
        "sandbox_backend": "bwrap",
        "view": "admin",
        "released": rel,
        "results": {
            HOME: {"role": "home", "public": part(SECRET), "private": part(PRIVATE)},
            VIS: {"role": "visible", "public": part(SECRET), "private": part(PRIVATE)},
            HELD: {"role": "held_out", "private": part(PRIVATE)},
        },
        **kw,
    }


class FakeReferee:
    """An admin token's view of a referee: every task listed, exact numbers on every run."""

    def __init__(self, runs: list[dict]):
        self._runs, self.dev_calls = runs, []

    def tasks(self) -> list[dict]:
        sizes = {"student_train": 10, "dev": 5, "final_public": 3, "final_private": 4}
        return [
            {"name": HELD, "role": "held_out", "domain": "facts", "description": "h", "sizes": sizes},
            {"name": VIS, "role": "visible", "domain": "reviews", "description": "v", "sizes": sizes},
            {"name": HOME, "role": "home", "domain": "hotels", "description": "x", "sizes": sizes},
        ]

    def me(self) -> dict:
        return {"name": "alice"}

    def runs(self, agent=None, limit=100) -> list[dict]:
        return self._runs[:limit]

    def run(self, run_id: int) -> dict:
        return next(r for r in self._runs if r["id"] == run_id)

    def leaderboard(self) -> list[dict]:
        # ranked by the exact public score (an admin's order): 3 first although nothing was released
        return [{**r, "rank": i} for i, r in enumerate(sorted(self._runs, key=lambda r: -r["id"]), start=1)]

    def dev_evaluate(self, task, predictions) -> dict:
        self.dev_calls.append(task)
        return {"task": task, "pgr": 0.3, "improved": True, "queries_left": 9}

    def search_posts(self, q=None, kind=None, author=None, limit=10) -> dict:
        cite = {"run_id": 1, "author": "alice", "commit": "a" * 40, "status": "done"}
        cite |= {"review_state": "unreviewed", "verified": False, "released": self._runs[0]["released"]}
        cite["results"] = self._runs[0]["results"]  # an older referee's extra field: never shown
        post = {"id": 1, "author": "alice", "kind": "result", "title": "t", "tags": [], "score": 0}
        return {"total": 1, "items": [post | {"created_at": "2026", "body": "b", "cites": [cite]}]}


def _no_hidden_numbers(text: str) -> None:
    for hidden in (str(SECRET), str(PRIVATE), "0.777", "0.0321", HELD, "transfer", "private", "results"):
        assert hidden not in text, hidden


@pytest.fixture
def admin_box(tmp_path) -> tuple[Toolbox, FakeReferee]:
    (tmp_path / "ws").mkdir()
    (tmp_path / "scratch").mkdir()
    held_released = {HELD: released(0.99)}  # a referee bug: a held-out task in `released`
    runs = [
        admin_run(1, {HOME: released(0.41), VIS: released(None, False, 0.5), **held_released}),
        admin_run(2, {HOME: released(0.52, best=0.52), VIS: released(0.33)}),
        admin_run(3, {HOME: released(None, False, 0.52), VIS: released(None, False, 0.33)}),
    ]
    fake = FakeReferee(runs)
    ctx = ToolContext(runner=LocalRunner(tmp_path / "ws", tmp_path / "scratch"), referee=fake)  # type: ignore[arg-type]
    return Toolbox(ctx), fake


def test_run_tools_show_only_released_numbers_even_to_an_admin_token(admin_box) -> None:
    box, _fake = admin_box
    one = box.call("run_status", {"run_id": 1})
    assert not one.is_error, one.content
    _no_hidden_numbers(one.content)
    assert one.data["released"] == {
        HOME: {"pgr": 0.41, "pgr_ci": [0.36, 0.46], "improved": True, "best_pgr": 0.41},
        VIS: {"pgr": None, "pgr_ci": None, "improved": False, "best_pgr": 0.5},
    }
    mine = box.call("run_status", {})
    assert [r["run_id"] for r in mine.data] == [1, 2, 3]
    _no_hidden_numbers(mine.content)
    board = box.call("leaderboard", {})
    _no_hidden_numbers(board.content)
    # re-ranked by the released numbers (contract.rank_key): run 3 released nothing, so it is last
    assert [(r["rank"], r["run_id"]) for r in board.data] == [(1, 2), (2, 1), (3, 3)]
    found = box.call("forum_search", {})
    _no_hidden_numbers(found.content)
    assert found.data["posts"][0]["cited_runs"][1]["released"][HOME]["pgr"] == 0.41
    for tool in ("run_status", "leaderboard", "forum_search"):
        text = next(t for t in TOOLS if t.name == tool).description
        assert "released" in text, tool


def test_tasks_lists_home_then_visible_with_public_sizes_only(admin_box) -> None:
    box, _fake = admin_box
    out = box.call("tasks", {})
    assert [(t["name"], t["role"]) for t in out.data] == [(HOME, "home"), (VIS, "visible")]
    assert all(t["sizes"] == {"student_train": 10, "dev": 5} for t in out.data)
    _no_hidden_numbers(out.content)


def test_dev_evaluate_takes_home_and_visible_tasks_only(admin_box, tmp_path) -> None:
    box, fake = admin_box
    (tmp_path / "ws" / "p.json").write_text(json.dumps({"a": 0.5}))
    assert not box.call("dev_evaluate", {"predictions_path": "p.json"}).is_error
    assert not box.call("dev_evaluate", {"predictions_path": "p.json", "task": VIS}).is_error
    held = box.call("dev_evaluate", {"predictions_path": "p.json", "task": HELD})
    assert held.is_error and "home task and the visible tasks only" in held.content
    assert fake.dev_calls == [HOME, VIS]


def test_briefs_read_both_views_and_drop_unknown_tasks() -> None:
    run = admin_run(7, {HOME: released(0.2), HELD: released(0.9)})
    brief = run_brief(run, [HOME, VIS])
    assert set(brief["released"]) == {HOME} and "results" not in brief
    researcher = {k: v for k, v in run.items() if k != "results"} | {"view": "researcher"}
    assert run_brief(researcher, [HOME])["released"] == brief["released"]
    rows = leaderboard_rows([run, {"id": 8, "junk": True}], 10, [HOME])
    assert [r["run_id"] for r in rows] == [7]  # a row outside the contract is left out, not half-read


def test_schemas_come_from_the_argument_models(box: Toolbox) -> None:
    """One source for all three exposures: each tool's pydantic model gives the JSON Schema the LLM APIs,
    the MCP server and the CLI publish, and the validation that names the bad field."""
    from aar.agents.tools import Args, schema_of

    for t in TOOLS:
        assert issubclass(t.args, Args) and t.spec()["input_schema"] == schema_of(t.args) == t.schema
        text = json.dumps(t.schema)
        assert t.schema["additionalProperties"] is False and '"title": "' not in text and "null" not in text
    post = next(t for t in TOOLS if t.name == "forum_post").schema
    assert post["required"] == ["title", "body", "kind"]
    assert post["properties"]["kind"]["enum"] == ["result", "hypothesis", "insight", "failure"]
    assert post["properties"]["cites"] == {
        "items": {"minimum": 1, "type": "integer"},
        "maxItems": 50,
        "type": "array",
    }
    assert box.call("read_file", {"path": 3}).content == (
        "bad arguments for read_file (path): Input should be a valid string"
    )
    assert (
        box.call("shell", {"command": "x", "rm": True}).content
        == "bad arguments for shell (rm): unknown argument"
    )
    assert (
        "(cites/0)"
        in box.call("forum_post", {"title": "t", "body": "b", "kind": "result", "cites": [0]}).content
    )
    assert "(action)" in box.call("notebook", {"action": "erase"}).content
    # optional arguments may be null (some models send every key), and are then left out
    assert not box.call("write_file", {"path": "n.txt", "content": "x", "append": None}).is_error


def test_the_cli_publishes_the_same_schemas(capsys, monkeypatch) -> None:
    from aar.agents.client import run_tool

    monkeypatch.delenv("AAR_REFEREE", raising=False)
    assert run_tool("schema", "{}") == 0
    published = json.loads(capsys.readouterr().out)
    assert published == {t.name: t.schema for t in TOOLS}
    assert run_tool("schema", '{"tool": "nope"}') == 2
