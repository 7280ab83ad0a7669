"""Local models that write tool calls as text: the OpenAI-compatible backend reads Hermes/Qwen
``<tool_call>`` blocks, a bare JSON call (Llama 3.x) and Mistral's ``[TOOL_CALLS]`` as well as native
tool calls, through the real openai client against the fake model server (plain and streamed); a call
it cannot read comes back to the model as a tool error that says why, and the session goes on."""

from __future__ import annotations

import json

import pytest

from aar.agents.backends.openai import OpenAIBackend
from aar.agents.backends.textcalls import INVALID, parse_text_calls
from aar.agents.budget import Budget, Limits
from aar.agents.loop import LoopConfig, Researcher
from aar.agents.prices import PriceTable
from aar.agents.runner import LocalRunner
from aar.agents.tools import TOOLS, Toolbox, ToolContext
from aar.agents.transcript import Transcript
from tests.agents.fake_llm import FakeModel

SPECS = [t.spec() for t in TOOLS]
BEGIN = [{"role": "user", "content": [{"type": "text", "text": "begin"}]}]


def hermes(name: str, args: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def test_parse_hermes_blocks_with_text_around_them() -> None:
    text = "Let me look.\n" + hermes("read_file", {"path": "a.py"}) + "\nand\n" + hermes("leaderboard", {})
    rest, calls = parse_text_calls(text)
    assert rest == "Let me look.\n\nand"
    assert [(c.name, c.arguments, c.error) for c in calls] == [
        ("read_file", {"path": "a.py"}, None),
        ("leaderboard", {}, None),
    ]
    # generation stopped on the closing tag: the block runs to the end
    assert parse_text_calls('<tool_call>{"name": "tasks", "arguments": {}}')[1][0].name == "tasks"


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "shell", "arguments": {"command": "ls"}}',
        '{"name": "shell", "parameters": {"command": "ls"}}',  # Llama 3.x
        '```json\n{"name": "shell", "arguments": {"command": "ls"}}\n```',
        '{"name": "shell", "arguments": "{\\"command\\": \\"ls\\"}"}',  # arguments as a JSON string
        '{"type": "function", "function": {"name": "shell", "arguments": {"command": "ls"}}}',
        '[TOOL_CALLS] [{"name": "shell", "arguments": {"command": "ls"}}]',  # Mistral
        '[{"name": "shell", "arguments": {"command": "ls"}}]',
    ],
)
def test_parse_bare_json_calls(text: str) -> None:
    rest, calls = parse_text_calls(text)
    assert rest == "" and [(c.name, c.arguments, c.error) for c in calls] == [
        ("shell", {"command": "ls"}, None)
    ]


@pytest.mark.parametrize(
    "text",
    ["I think the answer is {x: 1}.", '{"answer": 42}', '{"name": "only a name"}', "[1, 2]", "{not json"],
)
def test_prose_and_other_json_are_not_calls(text: str) -> None:
    assert parse_text_calls(text) == (text, [])


@pytest.mark.parametrize(
    ("text", "name", "needle"),
    [
        ('<tool_call>{"name": "shell", "arguments": {"command": "ls"</tool_call>', "shell", "not valid JSON"),
        ('<tool_call>{"arguments": {"command": "ls"}}</tool_call>', INVALID, 'has no "name"'),
        ('<tool_call>{"name": "shell", "arguments": [1]}</tool_call>', "shell", "must be a JSON object"),
        ('<tool_call>{"name": "shell", "arguments": "{oops"}</tool_call>', "shell", "are not valid JSON"),
        ("<tool_call>[]</tool_call>", INVALID, "is empty"),
        ('<tool_call>"shell"</tool_call>', INVALID, "not an object"),
    ],
)
def test_malformed_calls_carry_an_error_that_says_how(text: str, name: str, needle: str) -> None:
    _rest, (call,) = parse_text_calls(text)
    assert call.name == name and needle in call.error and "<tool_call>{" in call.error


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("style", ["hermes", "json", "native"])
def test_backend_reads_each_style_from_the_server(style: str, stream: bool) -> None:
    args = {"path": "ideas/a.py", "content": "x = 1\n"}

    def script(_body, _turn):
        if style == "native":
            return [
                {"type": "text", "text": "writing"},
                {"type": "tool_use", "name": "write_file", "input": args},
            ]
        if style == "hermes":
            return [{"type": "text", "text": "writing\n" + hermes("write_file", args)}]
        return [{"type": "text", "text": json.dumps({"name": "write_file", "arguments": args})}]

    with FakeModel(script) as fake:
        out = OpenAIBackend("local-qwen", base_url=fake.url + "/v1", stream=stream).complete(
            "s", BEGIN, SPECS
        )
    assert out.stop_reason == "tool_use"
    assert [(b["name"], b["input"]) for b in out.tool_uses] == [("write_file", args)]
    assert out.text == ("" if style == "json" else "writing")
    assert "error" not in out.tool_uses[0]


def test_a_session_with_text_calls_survives_a_malformed_one(tmp_path) -> None:
    """Hermes call, a broken one, a bare JSON call, a native call, then prose: every call is answered,
    the broken one with an error naming the problem, and the history goes back as native tool calls."""
    (tmp_path / "ws").mkdir()
    plan = [
        "I'll write the idea.\n" + hermes("write_file", {"path": "ideas/t.py", "content": "A = 1\n"}),
        '<tool_call>{"name": "read_file", "arguments": {"path": "ideas/t.py"</tool_call>',
        json.dumps({"name": "read_file", "parameters": {"path": "ideas/t.py"}}),
        None,  # native
        "All done.",
    ]

    def script(body, _turn):
        n = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if n < len(plan) and plan[n] is None:
            return [
                {
                    "type": "tool_use",
                    "name": "edit_file",
                    "input": {"path": "ideas/t.py", "old": "1", "new": "2"},
                }
            ]
        return [{"type": "text", "text": plan[min(n, len(plan) - 1)]}]

    box = Toolbox(ToolContext(runner=LocalRunner(tmp_path / "ws", tmp_path / "ws"), referee=None))
    transcript = Transcript(tmp_path / "t.jsonl")
    with FakeModel(script) as fake:
        backend = OpenAIBackend("local-qwen", base_url=fake.url + "/v1", stream=True)
        researcher = Researcher(
            backend,
            box,
            transcript,
            Budget(Limits(turns=10), PriceTable()),
            "sys",
            "go",
            LoopConfig(max_idle_turns=1),
        )
        assert researcher.run() == "no tool use in 1 turns"
    results = [r for r in transcript.records() if r["type"] == "tool_result"]
    assert [(r["name"], r["is_error"]) for r in results] == [
        ("write_file", False),
        ("read_file", True),
        ("read_file", False),
        ("edit_file", False),
    ]
    assert results[1]["content"].startswith(
        "could not read your tool call: <tool_call> block 1 is not valid JSON"
    )
    assert "A = 1" in results[2]["content"]
    assert (tmp_path / "ws" / "ideas" / "t.py").read_text() == "A = 2\n"
    # what the server got back on the last turn: native tool_calls, tool messages, the error as text
    last = fake.requests[-1]["body"]["messages"]
    first_call = next(m for m in last if m["role"] == "assistant")
    assert first_call["content"] == "I'll write the idea."
    assert first_call["tool_calls"][0]["function"]["name"] == "write_file"
    tool_msgs = [m for m in last if m["role"] == "tool"]
    assert len(tool_msgs) == 4 and tool_msgs[1]["content"].startswith("ERROR: could not read your tool call")
    ids = [c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    assert len(ids) == len(set(ids)) == 4  # every call id unique across the conversation


def test_openai_text_backend_for_servers_without_tool_support(tmp_path) -> None:
    """``openai-text`` sends no ``tools`` field: the tools are in the system prompt, calls and results
    travel as <tool_call> / <tool_response> text, and the session works the same."""
    from aar.agents.backends.registry import create_backend

    (tmp_path / "ws").mkdir()

    def script(body, _turn):
        n = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if n == 0:
            return [{"type": "text", "text": hermes("write_file", {"path": "t.txt", "content": "T"})}]
        if n == 1:
            return [{"type": "text", "text": hermes("read_file", {"path": "t.txt"})}]
        return [{"type": "text", "text": "done"}]

    box = Toolbox(ToolContext(runner=LocalRunner(tmp_path / "ws", tmp_path / "ws"), referee=None))
    transcript = Transcript(tmp_path / "t.jsonl")
    with FakeModel(script) as fake:
        backend = create_backend("openai-text", "llama", base_url=fake.url + "/v1", stream=False)
        budget = Budget(Limits(turns=10), PriceTable())
        Researcher(backend, box, transcript, budget, "SYS", "go", LoopConfig(max_idle_turns=1)).run()
    results = [(r["name"], r["is_error"]) for r in transcript.records() if r["type"] == "tool_result"]
    assert results == [("write_file", False), ("read_file", False)]
    bodies = [q["body"] for q in fake.requests]
    assert all("tools" not in b for b in bodies) and len(bodies) == 3
    system = bodies[0]["messages"][0]["content"]
    assert system.startswith("SYS") and "<tools>" in system and '"name": "submit_run"' in system
    last = bodies[-1]["messages"]
    assert {m["role"] for m in last} == {"system", "user", "assistant"}  # no role "tool", no tool_calls
    assert all("tool_calls" not in m for m in last)
    assert last[2]["content"].startswith("<tool_call>") and '"write_file"' in last[2]["content"]
    assert last[3]["content"].startswith("<tool_response>\nwrote 1 bytes to t.txt")
    assert last[5]["content"].endswith("T\n</tool_response>")
