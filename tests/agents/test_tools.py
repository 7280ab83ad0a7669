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
from aar.agents.tools import TOOLS, Toolbox, ToolContext
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
