"""`aar lab export --inspect`: a finished campaign becomes an Inspect eval log written by inspect_ai's
writer and read back by its reader: one sample per researcher with its messages and tool calls, token
usage, its confirmed PGR as the score, and its runs, flags and direction as metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai", reason="the `inspect` extra is not installed")

from inspect_ai.log import read_eval_log  # noqa: E402

from aar.agents.budget import Budget, Limits  # noqa: E402
from aar.agents.loop import LoopConfig, Researcher  # noqa: E402
from aar.agents.prices import PriceTable, Usage  # noqa: E402
from aar.agents.runner import LocalRunner  # noqa: E402
from aar.agents.tools import Toolbox, ToolContext  # noqa: E402
from aar.agents.transcript import Transcript  # noqa: E402
from aar.lab.export_inspect import messages_of, usage_of  # noqa: E402
from aar.lab.report import View, compare, part_pgr  # noqa: E402
from tests.agents.fake_llm import FakeModel  # noqa: E402

AAR = [sys.executable, "-m", "aar.cli"]


def test_transcript_to_messages_and_usage(tmp_path: Path) -> None:
    """A real session (openai client, fake server: a native call, a text call, a broken one) converts
    to Inspect messages with every call and result, and to the server's token usage."""
    (tmp_path / "ws").mkdir()
    plan = [
        [{"type": "tool_use", "name": "write_file", "input": {"path": "a.txt", "content": "hi"}}],
        [
            {
                "type": "text",
                "text": '<tool_call>{"name": "read_file", "arguments": {"path": "a.txt"}}</tool_call>',
            }
        ],
        [{"type": "text", "text": '<tool_call>{"name": "read_file", "arguments": {</tool_call>'}],
        [{"type": "text", "text": "done"}],
    ]

    def script(body, _turn):
        return plan[min(sum(m["role"] == "assistant" for m in body["messages"]), len(plan) - 1)]

    transcript = Transcript(tmp_path / "t.jsonl")
    box = Toolbox(ToolContext(runner=LocalRunner(tmp_path / "ws", tmp_path / "ws"), referee=None))
    with FakeModel(script) as fake:
        from aar.agents.backends.openai import OpenAIBackend

        backend = OpenAIBackend("local-qwen", base_url=fake.url + "/v1", stream=False)
        budget = Budget(Limits(turns=10), PriceTable())
        Researcher(backend, box, transcript, budget, "sys", "go", LoopConfig(max_idle_turns=1)).run()
    records = transcript.records()
    msgs = messages_of(records, system="sys")
    assert [m.role for m in msgs] == ["system", "user", *["assistant", "tool"] * 3, "assistant"]
    calls = [m.tool_calls[0] for m in msgs if m.role == "assistant" and m.tool_calls]
    assert [(c.function, c.arguments) for c in calls[:2]] == [
        ("write_file", {"path": "a.txt", "content": "hi"}),
        ("read_file", {"path": "a.txt"}),
    ]
    assert calls[2].parse_error and "not valid JSON" in calls[2].parse_error
    tools = [m for m in msgs if m.role == "tool"]
    assert [t.function for t in tools] == ["write_file", "read_file", "read_file"]
    assert tools[1].text.endswith("\nhi") and tools[0].error is None and tools[2].error is not None
    (usage,) = usage_of(records).values()
    total = sum((Usage(u["input"], u["output"], 0, u["cache_read"]) for u in fake.usages), Usage())
    assert (usage.input_tokens, usage.output_tokens, usage.input_tokens_cache_read) == (
        total.input,
        total.output,
        total.cache_read,
    )


def test_export_a_finished_campaign_and_read_it_back(finished_campaign, tmp_path: Path) -> None:
    folder = finished_campaign.folder
    r = subprocess.run(
        [*AAR, "lab", "export", "--inspect", str(folder), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "inspect view" in r.stderr
    log = read_eval_log(str(tmp_path / "mini.eval"))
    snap = json.loads((folder / "snapshot.json").read_text())
    assert log.status == "success" and log.eval.task == "aar/mini"
    samples = {s.id: s for s in log.samples}  # one per researcher (the reader orders them its own way)
    assert len(log.samples) == len(samples) == 2 and set(samples) == {"prior", "confidence"}
    assert log.eval.dataset.sample_ids == [x["name"] for x in snap["researchers"]]
    view = View.of(snap)
    best = view.best_by_researcher()
    confirmed = {c.run.author: c.confirmed for c in compare(list(best.values()))}
    for info in snap["researchers"]:
        sample = samples[info["name"]]
        name = info["name"]
        meta = sample.metadata
        assert sample.input == info["direction"] == meta["direction"] and meta["backend"] == "scripted"
        lines = (folder / "researchers" / name / "state" / "transcript.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        n_results = sum(rec["type"] == "tool_result" for rec in records)
        assert sum(m.role == "tool" for m in sample.messages) == n_results > 0
        n_calls = sum(len(m.tool_calls or []) for m in sample.messages if m.role == "assistant")
        assert n_calls >= n_results
        assert "scripted" in sample.model_usage  # the scripted researcher spends no tokens, but is counted
        runs = [x["id"] for x in snap["runs"] if x.get("author") == name and not x["baseline"]]
        assert [x["run_id"] for x in meta["runs"]] == runs and runs
        assert meta["flags"] == [f for f in snap["flags"] if f.get("agent") == name]
        scores = sample.scores or {}
        if name not in best:  # no official run with a defined public PGR: nothing to score
            assert meta["best_run"] is None and not meta["confirmed"] and scores == {}
            continue
        assert meta["best_run"] == best[name].id and meta["confirmed"] == confirmed.get(name, False)
        assert scores["public_pgr"].value == pytest.approx(part_pgr(best[name], "public")[0])
        if meta["confirmed"]:
            assert scores["confirmed_pgr"].value == pytest.approx(part_pgr(best[name], "private")[0])
        else:
            assert "confirmed_pgr" not in scores
    names = {s.name: s for s in log.results.scores}
    assert names["confirmed_pgr"].scored_samples == sum(confirmed.values())


def test_export_errors_are_clear(tmp_path: Path) -> None:
    r = subprocess.run([*AAR, "lab", "export", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "choose a format: --inspect" in r.stderr
    r = subprocess.run([*AAR, "lab", "export", "--inspect", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "snapshot.json: not found" in r.stderr and "Traceback" not in r.stderr
