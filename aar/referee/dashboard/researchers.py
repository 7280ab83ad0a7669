"""What the lab leaves in a researcher's home, read for humans: researcher.json, the transcript, spend.

Layout (set by `aar lab run`): ``<researchers_dir>/<name>/researcher.json`` and
``<researchers_dir>/<name>/state/transcript.jsonl``, in the format of ``aar.transcript_format``: that
module sits below both the researchers and the referee, so this one imports no researcher code, and
the dollars shown are those the transcript recorded (priced by the researcher's own table), so the
referee needs no price table. Names reach this module only after the routes checked them against the
Agent table and the agent name pattern, so a URL can never choose a path. Everything here tolerates
missing or malformed files: a researcher that has not started yet, or a lab that set no
researchers_dir, is a normal state, not an error.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from aar.referee.auth import NAME_RE
from aar.transcript_format import account, cached_records

TEXT_CHARS = 4000  # a message's text block
TOOL_CHARS = 1500  # a tool call's input or a tool result
INFO_KEYS = ("name", "direction", "backend", "model", "status", "stop_reason", "started_at", "updated_at")


@dataclass
class Summary:
    """One researcher's state as the overview and the researcher page show it."""

    status: str = "unknown"
    stop_reason: str | None = None
    direction: str | None = None
    backend: str | None = None
    model: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    usd: float | None = None  # as the transcript recorded it, priced by the researcher's own table
    unpriced: int = 0  # model responses recorded without a price
    tokens: int | None = None
    turns: int | None = None
    sessions: int = 0
    has_transcript: bool = False
    info: dict = field(default_factory=dict)  # researcher.json as written by the lab


def home(researchers_dir: Path | None, name: str) -> Path | None:
    if researchers_dir is None or not NAME_RE.match(name):
        return None
    return Path(researchers_dir) / name


def transcript_path(researchers_dir: Path | None, name: str) -> Path | None:
    base = home(researchers_dir, name)
    return None if base is None else base / "state" / "transcript.jsonl"


def read_info(researchers_dir: Path | None, name: str) -> dict:
    """researcher.json's known keys, as strings; {} when absent or unreadable."""
    base = home(researchers_dir, name)
    if base is None:
        return {}
    try:
        data = json.loads((base / "researcher.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(data[k]) for k in INFO_KEYS if data.get(k) is not None}


def records(path: Path | None) -> list[dict]:
    """Parsed transcript records, re-read only when the file changed (the overview reads them all)."""
    return cached_records(path)


def summarize(researchers_dir: Path | None, name: str) -> Summary:
    """researcher.json when the lab wrote one; otherwise status, backend and model from the transcript."""
    s = Summary()
    info = read_info(researchers_dir, name)
    s.info = info
    path = transcript_path(researchers_dir, name)
    recs = records(path)
    if recs and path is not None:
        s.has_transcript = True
        a = account(recs)
        s.usd, s.unpriced, s.tokens, s.turns, s.sessions = a.usd, a.unpriced, a.tokens, a.turns, a.sessions
        s.backend, s.model = a.backend, a.model
        s.started_at, s.updated_at = _when(a.started_at), _when(a.updated_at)
        s.status, s.stop_reason = a.status, a.stop_reason
    elif researchers_dir is not None:
        s.status = "not started"
    for key in ("status", "stop_reason", "direction", "backend", "model", "started_at", "updated_at"):
        if info.get(key):
            setattr(s, key, info[key])
    return s


def _when(t: object) -> str | None:
    if not isinstance(t, int | float):
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def _as_text(value: object, limit: int) -> str:
    """Tool inputs and results may be strings, dicts or content-block lists: show them as text."""
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, list) and all(isinstance(b, dict) and "text" in b for b in value):
        return clip("\n".join(str(b["text"]) for b in value), limit)
    return clip(json.dumps(value, ensure_ascii=False, default=str, indent=1), limit)


def _block(block: object) -> dict:
    """One content block of a message; the Claude Code backend names its blocks by class (TextBlock)."""
    if not isinstance(block, dict):
        return {"kind": "other", "text": _as_text(block, TOOL_CHARS)}
    kind = str(block.get("type", ""))
    if kind in ("text", "TextBlock"):
        return {"kind": "text", "text": clip(str(block.get("text", "")), TEXT_CHARS)}
    if kind in ("tool_use", "ToolUseBlock"):
        return {
            "kind": "tool_use",
            "name": str(block.get("name", "?")),
            "id": str(block.get("id", "")),
            "input": _as_text(block.get("input", {}), TOOL_CHARS),
        }
    if kind in ("tool_result", "ToolResultBlock"):
        return {
            "kind": "tool_result",
            "id": str(block.get("tool_use_id", "")),
            "text": _as_text(block.get("content", ""), TOOL_CHARS),
            "is_error": bool(block.get("is_error")),
        }
    if kind in ("thinking", "ThinkingBlock"):
        return {"kind": "thinking", "text": clip(str(block.get("thinking", "")), TEXT_CHARS)}
    return {"kind": "other", "text": _as_text(block, TOOL_CHARS)}


def events(recs: list[dict]) -> list[dict]:
    """Transcript records as display events, in order.

    A tool's answer is written twice (a ``tool_result`` record with its name and duration, then the
    user message that hands it to the model); it is shown once, from the record. ``tool_start`` is
    shown as the assistant's tool_use block.
    """
    out: list[dict] = []
    shown_results: set[str] = set()
    for rec in recs:
        kind = rec.get("type")
        base = {"type": kind, "when": _when(rec.get("t")), "session": rec.get("session")}
        if kind == "message":
            msg = rec.get("message") or {}
            blocks = msg.get("content")
            if isinstance(blocks, str):
                blocks = [{"type": "text", "text": blocks}]
            views = [_block(b) for b in blocks or []]
            views = [v for v in views if not (v["kind"] == "tool_result" and v["id"] in shown_results)]
            if views:
                out.append({**base, "role": str(msg.get("role", "?")), "blocks": views})
        elif kind == "tool_result":
            shown_results.add(str(rec.get("id", "")))
            out.append(
                {
                    **base,
                    "name": str(rec.get("name", "?")),
                    "text": _as_text(rec.get("content", ""), TOOL_CHARS),
                    "is_error": bool(rec.get("is_error")),
                    "seconds": rec.get("seconds"),
                }
            )
        elif kind == "usage":
            usage = rec.get("usage") or {}
            tokens = sum(v for v in usage.values() if isinstance(v, int))
            cost = rec.get("cost_usd")
            out.append({**base, "model": str(rec.get("model", "?")), "tokens": tokens, "cost": cost})
        elif kind in ("session_start", "session_end", "official_run", "compaction", "event"):
            out.append({**base, "text": _line(kind, rec)})
    return out


def _line(kind: str, rec: dict) -> str:
    if kind == "session_start":
        resumed = " (resumed)" if rec.get("resumed") else ""
        return f"session {rec.get('session')} started: {rec.get('backend')} / {rec.get('model')}{resumed}"
    if kind == "session_end":
        return f"session {rec.get('session')} ended: {rec.get('reason')}"
    if kind == "official_run":
        commit = str(rec.get("commit", ""))[:10]
        what = f"{rec.get('idea_path')} @ {commit} on {rec.get('task')}"
        return f"official run {rec.get('run_id')} submitted: {what}"
    if kind == "compaction":
        return f"context compacted: {rec.get('before')} messages -> {len(rec.get('messages') or [])}"
    return clip(f"{rec.get('what', 'event')}: {rec.get('error', '')}", TOOL_CHARS)
