"""The transcript: an append-only JSONL record of every message, tool call, usage and budget event.

It is the researcher's memory across crashes: ``restore`` rebuilds the conversation (honouring
compactions), the spend (usage by model, official runs, active seconds of earlier sessions) and the
tool calls that were started but never answered. Each line is flushed as it is written, so a
SIGKILL loses at most the line being written (a torn last line is ignored on restore).

Secrets never reach the file: every line passes through a ``Redactor`` that replaces the values of
API keys and tokens (from the environment and those handed to it) before it is written.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aar.agents.budget import Spend
from aar.agents.prices import Usage

_SECRET_NAME = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD|AUTH)", re.I)


class Redactor:
    """Replaces known secret values (>= 8 characters) by ``[REDACTED]``."""

    def __init__(self, secrets: list[str] | None = None, *, from_env: bool = True):
        values = [s for s in (secrets or []) if s]
        if from_env:
            values += [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v]
        self.secrets = sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 8 and secret not in self.secrets:
            self.secrets = sorted([*self.secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "[REDACTED]")
        return text


@dataclass
class Restored:
    messages: list[dict] = field(default_factory=list)
    spend: Spend = field(default_factory=Spend)
    sessions: int = 0
    # tool_use ids of the last assistant message already answered (id -> result record)
    answered: dict[str, dict] = field(default_factory=dict)
    submitted_runs: list[dict] = field(default_factory=list)
    finished: str | None = None  # why the last session ended, if it ended cleanly
    final: bool = False  # ...and whether that end is for good (a budget spent, not an interruption)


class Transcript:
    def __init__(self, path: Path, redactor: Redactor | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact = redactor or Redactor()
        self._lock = threading.Lock()
        self._handle = None
        self.session = 0

    def _open(self):
        if self._handle is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._handle = os.fdopen(fd, "a", encoding="utf-8")
            self._repair_tail()
        return self._handle

    def _repair_tail(self) -> None:
        """A kill mid-write leaves a line without its newline: end it, so the next record parses."""
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._handle.write("\n")
                    self._handle.flush()

    def write(self, type_: str, **fields) -> dict:
        record = {"type": type_, "t": time.time(), "session": self.session, **fields}
        line = self.redact(json.dumps(record, default=str, ensure_ascii=False))
        with self._lock:
            handle = self._open()
            handle.write(line + "\n")
            handle.flush()
            if type_ in ("official_run", "session_end"):
                os.fsync(handle.fileno())
        return record

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def records(self) -> list[dict]:
        return read_records(self.path)

    def restore(self) -> Restored:
        return restore_records(self.records())

    def usage_records(self) -> list[dict]:
        return [r for r in self.records() if r["type"] == "usage"]


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
    """The conversation, spend and open tool calls that ``records`` add up to (see the module docstring)."""
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
