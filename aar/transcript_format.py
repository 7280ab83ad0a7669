"""A researcher's transcript, as a format: its records, how they add up, and the reader every part uses.

The researchers write the transcript (``aar.agents.transcript.Transcript``, which also redacts
secrets); the lab's live table, its report and the referee's dashboard read it. The readers live here,
below every part (like ``aar.contract``), so the dashboard shows spend and status without importing
researcher code: agents and referee meet only over HTTP and through this documented file.

The file is JSONL, one record per line: ``{"type", "t" (unix seconds), "session" (1, 2, ... per
start of the researcher), ...}``. Types and their fields:

- ``session_start``: ``backend``, ``model``, ``resumed``
- ``message``: ``message`` (``{role, content}``, content a string or a list of content blocks)
- ``compaction``: ``messages`` (the conversation that replaces everything before it), ``before``
- ``usage``: one model response: ``model``, ``usage`` (``{input, output, cache_write, cache_read}``
  token counts, ``input`` excluding cached tokens), ``cost_usd`` (that response priced by the
  researcher's own price table when it was spent), ``total_usd`` (its budget's running total);
  ``adjust: true`` marks a true-up of a response already counted (not a new turn)
- ``tool_start`` / ``tool_result``: ``id``, ``name``, ``input`` / ``content``, ``is_error``, ``seconds``
- ``official_run``: ``run_id``, ``commit``, ``idea_path``, ``task``
- ``session_end``: ``reason``, ``final`` (the budget is spent, not an interruption), ``budget``
- ``event``: ``what``, ``error``

Dollars are read from the records, never re-priced: a reader needs no price table, and shows what the
researcher's budget counted (including a campaign's own prices). A line torn by a kill is skipped.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Usage:
    """Token counts of one or more turns. ``input`` excludes cached tokens (both APIs' totals are
    normalised to that by the backends)."""

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_read: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cache_write + other.cache_write,
            self.cache_read + other.cache_read,
        )

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_write + self.cache_read

    def to_dict(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_write": self.cache_write,
            "cache_read": self.cache_read,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Usage:
        return cls(
            int(d.get("input", 0)),
            int(d.get("output", 0)),
            int(d.get("cache_write", 0)),
            int(d.get("cache_read", 0)),
        )


@dataclass
class Spend:
    """What a researcher has used so far; its budget prices ``usage`` and enforces the limits."""

    usage: dict[str, Usage] = field(default_factory=dict)  # by model
    seconds_before: float = 0.0  # active seconds of earlier sessions
    official_runs: int = 0
    turns: int = 0


@dataclass
class Restored:
    """What a transcript's records add up to: enough for a researcher to resume where it stopped."""

    messages: list[dict] = field(default_factory=list)
    spend: Spend = field(default_factory=Spend)
    sessions: int = 0
    # tool_use ids of the last assistant message already answered (id -> result record)
    answered: dict[str, dict] = field(default_factory=dict)
    submitted_runs: list[dict] = field(default_factory=list)
    finished: str | None = None  # why the last session ended, if it ended cleanly
    final: bool = False  # ...and whether that end is for good (a budget spent, not an interruption)


def read_records(path: Path) -> list[dict]:
    """Every record of a transcript file, skipping a line torn by a kill; [] when there is no file."""
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a kill
    return out


def restore_records(records: list[dict]) -> Restored:
    """The conversation (honouring compactions), spend (usage by model, official runs, active seconds
    of earlier sessions) and open tool calls that ``records`` add up to."""
    r = Restored()
    session_span: dict[int, list[float]] = {}
    for rec in records:
        sess = rec.get("session", 0)
        span = session_span.setdefault(sess, [rec["t"], rec["t"]])
        span[1] = max(span[1], rec["t"])
        kind = rec["type"]
        if kind == "session_start":
            r.sessions = max(r.sessions, sess)
            r.finished, r.final = None, False
        elif kind == "message":
            r.messages.append(rec["message"])
            if rec["message"]["role"] == "assistant":
                r.answered = {}
        elif kind == "compaction":
            r.messages = list(rec["messages"])
        elif kind == "usage":
            model = rec["model"]
            r.spend.usage[model] = r.spend.usage.get(model, Usage()) + Usage.from_dict(rec["usage"])
            r.spend.turns += 0 if rec.get("adjust") else 1  # a true-up of a turn already counted
        elif kind == "tool_result":
            r.answered[rec["id"]] = rec
        elif kind == "official_run":
            r.spend.official_runs += 1
            r.submitted_runs.append(rec)
        elif kind == "session_end":
            r.finished, r.final = rec.get("reason"), bool(rec.get("final"))
    r.spend.seconds_before = sum(end - start for start, end in session_span.values())
    return r


@dataclass
class Account:
    """A researcher's spend and status as its transcript tells them, for people watching (the lab's
    table, the dashboard): no price table, no researcher code."""

    status: str = "not started"  # "not started", "running" or "stopped: <reason>"
    stop_reason: str | None = None
    backend: str | None = None  # of the latest session
    model: str | None = None
    started_at: float | None = None  # unix seconds of the first session's start
    updated_at: float | None = None  # of the latest record
    usd: float = 0.0  # the sum of the usage records' cost_usd
    unpriced: int = 0  # usage records without a cost_usd (not written by aar's researchers)
    tokens: int = 0
    turns: int = 0
    official_runs: int = 0
    sessions: int = 0
    seconds: float = 0.0  # active seconds over all sessions


def account(records: list[dict]) -> Account:
    """Spend and status from a transcript's records (see the module docstring for the format).

    "running" means a session started and has not written its end: a researcher killed without one
    looks running until it is restarted, which is the truth as far as the file can tell.
    """
    a = Account()
    records = [
        r
        for r in records
        if isinstance(r, dict) and isinstance(r.get("type"), str) and _float(r.get("t")) is not None
    ]
    if not records:
        return a
    try:
        restored = restore_records(records)
    except (KeyError, TypeError, ValueError, AttributeError):  # a hand-edited or foreign file
        return Account(status="unreadable transcript")
    a.sessions, a.turns = restored.sessions, restored.spend.turns
    a.official_runs = restored.spend.official_runs
    a.tokens = sum(u.total for u in restored.spend.usage.values())
    a.seconds = restored.spend.seconds_before
    for rec in records:
        if rec.get("type") != "usage":
            continue
        cost = rec.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            a.usd += float(cost)
        else:
            a.unpriced += 1
    starts = [r for r in records if r.get("type") == "session_start"]
    if starts:
        a.backend, a.model = _str(starts[-1].get("backend")), _str(starts[-1].get("model"))
        a.started_at = _float(starts[0].get("t"))
    a.updated_at = _float(records[-1].get("t"))
    if restored.finished is not None:
        a.status, a.stop_reason = f"stopped: {restored.finished}", restored.finished
    elif starts:
        a.status = "running"
    return a


def _str(v: object) -> str | None:
    return None if v is None else str(v)


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


_cache: dict[Path, tuple[tuple[int, int], list[dict]]] = {}  # one entry per file: its latest parse
_cache_lock = threading.Lock()


def cached_records(path: Path | None) -> list[dict]:
    """Read-only records for watchers (the lab's live table, the dashboard) that ask every few seconds:
    re-parsed only when the file's mtime or size changed. Never creates or writes anything."""
    if path is None:
        return []
    try:
        st = path.stat()
    except OSError:
        return []
    stamp = (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        recs = read_records(path)
    except OSError:
        return []
    with _cache_lock:
        _cache[path] = (stamp, recs)
    return recs
