"""The transcript format's reader: what the dashboard and the lab show equals what the budget counted."""

from __future__ import annotations

import json

import pytest

from aar.agents.budget import Budget, Limits
from aar.agents.prices import Price, PriceTable, Usage
from aar.agents.transcript import Transcript
from aar.transcript_format import account, cached_records


def test_account_of_a_transcript_written_by_a_researcher_matches_its_budget(tmp_path):
    """Dollars come from the records, priced when spent by the researcher's own (campaign) table."""
    prices = PriceTable({"own-model": Price(input=3.0, output=15.0, cache_read=0.3)})
    budget = Budget(Limits(usd=10), prices)
    t = Transcript(tmp_path / "transcript.jsonl")
    t.session = 1
    t.write("session_start", backend="anthropic", model="own-model", resumed=False)
    responses = [(Usage(1000, 200, 0, 5000), {}), (Usage(10, 5), {}), (Usage(0, 40), {"adjust": True})]
    for usage, extra in responses:
        if extra:
            budget.spend.usage["own-model"] = budget.spend.usage["own-model"] + usage
        else:
            budget.add_usage("own-model", usage)
        t.write(
            "usage",
            model="own-model",
            usage=usage.to_dict(),
            cost_usd=prices.cost("own-model", usage),
            total_usd=budget.usd,
            **extra,
        )
    t.write("official_run", run_id="r1", commit="abc", idea_path="idea.py", task="navigate")
    t.write("session_end", reason="dollar budget spent", final=True, budget=budget.summary())
    t.close()

    a = account(cached_records(t.path))
    assert a.usd == pytest.approx(budget.usd, rel=1e-12) and a.usd > 0
    assert a.tokens == budget.tokens and a.turns == 2 == budget.spend.turns  # a true-up is not a turn
    assert (a.official_runs, a.sessions, a.unpriced) == (1, 1, 0)
    assert (a.status, a.stop_reason) == ("stopped: dollar budget spent", "dollar budget spent")
    assert (a.backend, a.model) == ("anthropic", "own-model")


def test_status_unpriced_records_and_a_torn_file(tmp_path):
    path = tmp_path / "transcript.jsonl"
    assert account(cached_records(path)).status == "not started"  # no file yet
    lines = [
        {"type": "session_start", "t": 10.0, "session": 1, "backend": "openai", "model": "local"},
        {"type": "usage", "t": 11.0, "session": 1, "model": "local", "usage": {"input": 7}},  # no cost_usd
        {"type": "usage", "t": 12.0, "session": 1, "model": "local", "usage": {"output": 3}, "cost_usd": 0.5},
        "not a record",
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"type": "mess')  # torn by a kill
    a = account(cached_records(path))
    assert (a.status, a.usd, a.unpriced, a.tokens, a.turns) == ("running", 0.5, 1, 10, 2)
    assert (a.started_at, a.updated_at, a.seconds) == (10.0, 12.0, 2.0)
    assert account([{"type": "usage", "t": 1.0}]).status == "unreadable transcript"  # a foreign file
