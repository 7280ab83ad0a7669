"""The real anthropic and openai SDK clients against the fake model server: plain and streamed
responses, tool calls, 529/503 then success, and what the clients sent (cache_control on the system
prompt and tools, tool definitions, tool results, the key only in the auth header)."""

from __future__ import annotations

import json

import pytest

from aar.agents.backends.anthropic import AnthropicBackend
from aar.agents.backends.base import BackendUnavailable, RetryPolicy
from aar.agents.backends.openai import OpenAIBackend
from aar.agents.prices import Usage
from aar.agents.tools import TOOLS
from tests.agents.fake_llm import FakeModel, usage_for

SPECS = [t.spec() for t in TOOLS]
KEY_A, KEY_O = "sk-ant-test-KEY-abcdef123456", "sk-openai-test-KEY-abcdef123456"
CONVERSATION = [
    {"role": "user", "content": [{"type": "text", "text": "begin"}]},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "leaderboard", "input": {"limit": 2}}],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "[rows]", "is_error": False}],
    },
]


def script(_body: dict, turn: int) -> list[dict]:
    return [
        {"type": "text", "text": f"thinking about turn {turn}"},
        {"type": "tool_use", "name": "write_file", "input": {"path": "ideas/a.py", "content": "x = 1\n"}},
        {"type": "tool_use", "name": "leaderboard", "input": {"limit": 3}},
    ]


def fast_retry(**kw) -> RetryPolicy:
    return RetryPolicy(base=0.001, cap=0.01, **kw)


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY_A)
    monkeypatch.setenv("OPENAI_API_KEY", KEY_O)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_anthropic_tool_calls_usage_and_caching(stream: bool) -> None:
    with FakeModel(script, fail_first=1) as fake:  # a 529 overloaded first
        backend = AnthropicBackend("claude-test", base_url=fake.url, stream=stream, retry=fast_retry())
        out = backend.complete("SYSTEM PROMPT", CONVERSATION, SPECS, max_tokens=1234)
    assert [r["path"] for r in fake.requests] == ["/v1/messages", "/v1/messages"]
    assert out.stop_reason == "tool_use" and out.text == "thinking about turn 1"
    assert [(b["name"], b["input"]) for b in out.tool_uses] == [
        ("write_file", {"path": "ideas/a.py", "content": "x = 1\n"}),
        ("leaderboard", {"limit": 3}),
    ]
    u = usage_for(1)
    assert out.usage == Usage(u["input"], u["output"], u["cache_write"], u["cache_read"])
    sent = fake.requests[-1]
    body = sent["body"]
    auth = sent["headers"].get("x-api-key") or sent["headers"].get("authorization", "").removeprefix(
        "Bearer "
    )
    assert auth == KEY_A and body["max_tokens"] == 1234 and body["model"] == "claude-test"
    assert body["system"] == [
        {"type": "text", "text": "SYSTEM PROMPT", "cache_control": {"type": "ephemeral"}}
    ]
    assert [t["name"] for t in body["tools"]] == [s["name"] for s in SPECS]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][0]["input_schema"] == SPECS[0]["input_schema"]
    result = body["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "t1" and result["content"] == "[rows]"
    assert result["cache_control"] == {"type": "ephemeral"}  # the conversation prefix is cached too
    assert bool(body.get("stream")) == stream
    assert "cache_control" not in CONVERSATION[2]["content"][0]  # the caller's messages are not mutated


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_openai_tool_calls_usage_and_messages(stream: bool) -> None:
    with FakeModel(script, fail_first=1, fail_status=503) as fake:
        backend = OpenAIBackend("local-model", base_url=fake.url + "/v1", stream=stream, retry=fast_retry())
        out = backend.complete("SYSTEM PROMPT", CONVERSATION, SPECS, max_tokens=99)
    assert len(fake.requests) == 2 and out.stop_reason == "tool_use"
    assert [(b["name"], b["input"]) for b in out.tool_uses] == [
        ("write_file", {"path": "ideas/a.py", "content": "x = 1\n"}),
        ("leaderboard", {"limit": 3}),
    ]
    u = usage_for(1)
    assert out.usage == Usage(input=u["input"], output=u["output"], cache_read=u["cache_read"])
    sent = fake.requests[-1]
    body = sent["body"]
    assert sent["headers"]["authorization"] == f"Bearer {KEY_O}"
    assert body["messages"][0] == {"role": "system", "content": "SYSTEM PROMPT"}
    assert body["messages"][2]["tool_calls"][0]["function"] == {
        "name": "leaderboard",
        "arguments": json.dumps({"limit": 2}),
    }
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "[rows]"}
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "shell",
            "description": SPECS[0]["description"],
            "parameters": SPECS[0]["input_schema"],
        },
    }
    if stream:
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_retries_give_up_with_backend_unavailable() -> None:
    waits: list[float] = []
    with FakeModel(script, fail_first=100) as fake:
        backend = AnthropicBackend(
            "claude-test",
            base_url=fake.url,
            stream=False,
            retry=RetryPolicy(max_attempts=3, base=1.0, sleep=waits.append),
        )
        with pytest.raises(BackendUnavailable):
            backend.complete("s", CONVERSATION, SPECS)
    assert len(fake.requests) == 3 and len(waits) == 2 and waits[1] > waits[0] * 1.0 - 1e-9  # backoff grows


def test_openai_invalid_tool_json_reaches_the_toolbox_as_an_error() -> None:
    def bad(_body, _turn):
        return [{"type": "tool_use", "name": "shell", "input": {}, "raw": "{not json"}]

    with FakeModel(bad) as fake:
        out = OpenAIBackend("m", base_url=fake.url + "/v1", stream=False).complete("s", CONVERSATION, SPECS)
    assert out.tool_uses[0]["input"] == "{not json"
    from aar.agents.tools import Toolbox, ToolContext

    result = Toolbox(ToolContext(runner=None, referee=None)).call("shell", out.tool_uses[0]["input"])  # type: ignore[arg-type]
    assert result.is_error and "not valid JSON" in result.content
