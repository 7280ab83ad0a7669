"""Claude Code as a researcher: claude-agent-sdk's bundled ``claude`` CLI, offline, against the fake
model server (Anthropic Messages, streamed). The researcher works in its sandbox as its own uid with aar's
tools through the in-process MCP server (its built-in tools off), pushes an idea and gets one official
run scored by the real referee; spend is accounted from the server's usage and the price table; the
transcript is written, and a restart resumes the CLI's own session (the model sees its earlier turns)."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("claude_agent_sdk", reason="the claude-code extra is not installed")

from aar.agents.factory import Settings, build  # noqa: E402
from aar.agents.prices import PriceTable, Usage  # noqa: E402
from tests.agents.conftest import HOME_TASK  # noqa: E402
from tests.agents.fake_llm import FakeModel  # noqa: E402
from tests.agents.test_session import IDEA  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the researcher gets its own uid")
MODEL = "claude-sonnet-4-5"
PREFIX = "mcp__aar__"


def _results(body: dict) -> list[str]:
    """The latest tool results the CLI sent back, as text."""
    last = body["messages"][-1]
    out = []
    for b in last["content"] if isinstance(last["content"], list) else []:
        if b.get("type") == "tool_result":
            c = b.get("content")
            out.append("\n".join(x.get("text", "") for x in c) if isinstance(c, list) else str(c or ""))
    return out


def research(body: dict, _turn: int) -> list[dict]:
    """write an idea, push it, submit an official run, wait for it, stop: by the tool calls made so far."""
    calls = [
        b
        for m in body["messages"]
        if m["role"] == "assistant" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_use"
    ]
    prev = _results(body)
    data = json.JSONDecoder().raw_decode(prev[-1])[0] if prev and prev[-1].startswith("{") else {}

    def call(name: str, args: dict) -> list[dict]:
        return [
            {"type": "text", "text": f"next: {name}"},
            {"type": "tool_use", "name": PREFIX + name, "input": args},
        ]

    n = len(calls)
    if n == 0:
        return call("write_file", {"path": "ideas/cc.py", "content": IDEA})
    if n == 1:
        return call("code_push", {"message": "claude code idea"})
    if n == 2:
        return call("submit_run", {"commit": data["commit"], "idea_path": "ideas/cc.py"})
    if n == 3:
        return call("run_status", {"run_id": data["run_id"], "wait_seconds": 300})
    return [{"type": "text", "text": "The run is scored; stopping here."}]


def test_claude_code_researcher_offline(referee, base, agent_name, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-claude-code-0123456789")
    token = referee.add_agent(agent_name)

    def settings(url: str) -> Settings:
        return Settings(
            workspace=base / agent_name,
            referee=str(referee.socket),
            token=token,
            backend="claude-code",
            model=MODEL,
            direction="confidence",
            base_url=url,
            public=referee.public,
            max_turns=20,
        )

    with FakeModel(research) as fake:
        built = build(settings(fake.url))
        assert built.researcher is None  # its own loop
        reason = built.run(MODEL)
        built.transcript.close()
    assert reason == "claude code session ended"
    records = built.transcript.records()
    start = next(r for r in records if r["type"] == "session_start")
    assert start["backend"] == "claude-code" and start["resumed"] is False
    used = [
        b["name"]
        for r in records
        if r["type"] == "message"
        for b in r["message"]["content"]
        if b["type"] == "tool_use"
    ]
    assert used == ["write_file", "code_push", "submit_run", "run_status"]
    results = [
        b
        for r in records
        if r["type"] == "message"
        for b in r["message"]["content"]
        if b["type"] == "tool_result"
    ]
    assert len(results) == 4 and not any(b["is_error"] for b in results), results
    status = json.loads(results[-1]["content"])
    assert status["status"] == "done" and HOME_TASK in status["released"]
    with referee.client(token) as http:
        runs = http.get("/runs", params={"agent": agent_name}).json()
    assert len(runs) == 1 and runs[0]["status"] == "done"
    # the idea was written in the sandbox, as the researcher's own uid
    idea = built.home.workspace / "ideas" / "cc.py"
    assert idea.read_text() == IDEA and idea.stat().st_uid not in (0, os.geteuid())
    # every request carried aar's tools only (built-ins off), and the system prompt with the direction
    for q in fake.requests:
        names = {t["name"] for t in q["body"].get("tools", [])}
        assert names and all(n.startswith(PREFIX) for n in names), names
    # spend: the fake server's usage x the price table, exactly (per response, trued up at the end)
    total = sum(
        (Usage(u["input"], u["output"], u["cache_write"], u["cache_read"]) for u in fake.usages), Usage()
    )
    assert built.budget.spend.usage == {MODEL: total} and built.budget.spend.turns == fake.turns == 5
    assert built.budget.usd == pytest.approx(PriceTable().cost(MODEL, total))
    assert built.budget.spend.official_runs == 1 and any(r["type"] == "official_run" for r in records)
    assert records[-1]["type"] == "session_end" and records[-1]["final"] is True
    assert "sk-ant-test" not in built.transcript.path.read_text()

    # resume: a new process, the same transcript; the CLI resumes its own session
    with FakeModel(lambda _b, _t: [{"type": "text", "text": "Resumed; nothing more to do."}]) as again:
        rebuilt = build(settings(again.url))
        rebuilt.run(MODEL)
        rebuilt.transcript.close()
    sent = json.dumps(again.requests[0]["body"]["messages"])
    assert "claude code idea" in sent and "ideas/cc.py" in sent  # the earlier turns came back from the CLI
    records = rebuilt.transcript.records()
    assert [r["resumed"] for r in records if r["type"] == "session_start"] == [False, True]
    assert rebuilt.budget.spend.turns == 6 and rebuilt.budget.usd > built.budget.usd
