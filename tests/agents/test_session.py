"""A researcher completes a multi-step session (write idea, dev evaluate, push, submit, wait, post,
notebook) through the real anthropic / openai clients against the fake model server and a real
referee; then its recorded tokens and dollars must equal the fake server's usage times the price table."""

from __future__ import annotations

import json

import pytest

from aar.agents.backends.base import RetryPolicy
from aar.agents.factory import Settings, build
from aar.agents.loop import LoopConfig
from aar.agents.prices import Usage
from tests.agents.conftest import HELD_TASK, HOME_TASK
from tests.agents.fake_llm import FakeModel

IDEA = """import numpy as np


def run(ctx):
    keep = np.abs(ctx.weak - 0.5) > 0.2
    if keep.sum() < 20 or len(np.unique(ctx.weak[keep] >= 0.5)) < 2:
        keep = np.ones(len(ctx.weak), dtype=bool)
    return ctx.fit_head(ctx.train_x[keep], (ctx.weak[keep] >= 0.5).astype(float)).predict_proba(ctx.test_x)
"""
PRICES = {
    "fake-claude": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.3},
    "fake-gpt": {"input": 1.25, "output": 10.0, "cache_read": 0.125},
}


def last_results(body: dict) -> list[str]:
    """Tool result texts of the latest user turn, in either API's format."""
    msgs = body["messages"]
    if msgs and msgs[-1].get("role") == "user" and isinstance(msgs[-1]["content"], list):
        return [b["content"] for b in msgs[-1]["content"] if b.get("type") == "tool_result"]
    out = []
    for m in reversed(msgs):
        if m["role"] != "tool":
            break
        out.insert(0, m["content"])
    return out


def steps(body: dict, _turn: int) -> list[dict]:
    n = sum(1 for m in body["messages"] if m["role"] == "assistant")  # robust to retried requests
    prev = last_results(body)
    data = None
    if prev:
        try:
            data = json.loads(prev[-1])
        except ValueError:
            data = None

    def call(name: str, args) -> list[dict]:
        return [
            {"type": "text", "text": f"step {n}: {name}"},
            {"type": "tool_use", "name": name, "input": args},
        ]

    if n == 0:
        return call("write_file", {"path": "ideas/conf.py", "content": IDEA})
    if n == 1:
        return call("read_file", {"path": 7})  # bad arguments: an error result, the session goes on
    if n == 2:
        return call("dev_evaluate", {"idea_path": "ideas/conf.py"})
    if n == 3:
        return call("code_push", {"message": "confident margin 0.2"})
    if n == 4:
        return call("submit_run", {"commit": data["commit"], "idea_path": "ideas/conf.py"})
    if n == 5:
        return call("run_status", {"run_id": data["run_id"], "wait_seconds": 300})
    if n == 6:
        return call(
            "forum_post",
            {
                "title": "confident margin 0.2",
                "kind": "result",
                "cites": [data["run_id"]],
                "body": f"released {data['released']}",
            },
        )
    if n == 7:
        return call("notebook", {"action": "append", "text": "confident 0.2 posted"})
    return [{"type": "text", "text": "I am done for now."}]


@pytest.mark.parametrize(
    "backend,model,stream",
    [("anthropic", "fake-claude", True), ("openai", "fake-gpt", False)],
    ids=["anthropic-streamed", "openai-plain"],
)
def test_session_through_real_clients(
    referee, base, agent_name, tmp_path, monkeypatch, backend, model, stream
):
    secret = f"sk-test-{backend}-SECRET-0123456789"
    monkeypatch.setenv("ANTHROPIC_API_KEY" if backend == "anthropic" else "OPENAI_API_KEY", secret)
    token = referee.add_agent(agent_name)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    with FakeModel(steps, fail_first=1) as fake:  # the very first call is refused (529 / overloaded)
        settings = Settings(
            workspace=base / agent_name,
            referee=str(referee.socket),
            token=token,
            backend=backend,
            model=model,
            direction="confidence",
            base_url=fake.url + ("/v1" if backend == "openai" else ""),
            stream=stream,
            prices=prices,
            public=referee.public,
            max_turns=30,
            retry=RetryPolicy(base=0.01),
            loop=LoopConfig(max_idle_turns=1),
        )
        built = build(settings)
        reason = built.researcher.run()
        built.transcript.close()
    assert reason == "no tool use in 1 turns"
    records = built.transcript.records()
    results = {r["name"]: r for r in records if r["type"] == "tool_result"}
    assert results["read_file"]["is_error"] and "bad arguments" in results["read_file"]["content"]
    for name in (
        "write_file",
        "dev_evaluate",
        "code_push",
        "submit_run",
        "run_status",
        "forum_post",
        "notebook",
    ):
        assert not results[name]["is_error"], (name, results[name]["content"][:500])
    status = json.loads(results["run_status"]["content"])
    assert status["status"] == "done" and HOME_TASK in status["released"], status["error"]
    assert "results" not in status and HELD_TASK not in json.dumps(status)  # held out: never shown
    with referee.client(token) as http:
        runs = http.get("/runs", params={"agent": agent_name}).json()
        posts = http.get("/posts", params={"author": agent_name}).json()["items"]
    assert len(runs) == 1 and runs[0]["status"] == "done"
    assert posts[0]["cites"][0]["run_id"] == runs[0]["id"]
    # the system prompt carried the task card and the direction
    first = fake.requests[-1]["body"]
    system = first["system"][0]["text"] if backend == "anthropic" else first["messages"][0]["content"]
    assert HOME_TASK in system and "confidence" in system
    assert HELD_TASK not in system  # the held-out task is not even named
    # costs: tokens and dollars recorded == the fake server's usage fields x the price table, exactly
    usage = [r for r in records if r["type"] == "usage"]
    assert len(usage) == fake.turns == 9 and len(fake.requests) == 10
    total = Usage()
    for u in fake.usages:
        total = total + (
            Usage(u["input"], u["output"], u["cache_write"], u["cache_read"])
            if backend == "anthropic"
            else Usage(u["input"], u["output"], 0, u["cache_read"])
        )
    assert built.budget.spend.usage == {model: total}
    p = PRICES[model]
    expected = (
        total.input * p["input"]
        + total.output * p["output"]
        + total.cache_write * p.get("cache_write", 0)
        + total.cache_read * p["cache_read"]
    ) / 1_000_000
    assert built.budget.usd == expected
    end = records[-1]
    assert end["type"] == "session_end" and end["budget"]["usd"] == expected
    assert end["budget"]["usage"][model] == total.to_dict()
    # keys and tokens never reach the transcript
    text = built.transcript.path.read_text()
    assert secret not in text and token not in text
