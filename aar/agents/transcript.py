"""The transcript: an append-only JSONL record of every message, tool call, usage and budget event.

It is the researcher's memory across crashes: ``restore`` rebuilds the conversation (honouring
compactions), the spend (usage by model, official runs, active seconds of earlier sessions) and the
tool calls that were started but never answered. Each line is flushed as it is written, so a
SIGKILL loses at most the line being written (a torn last line is ignored on restore).

The record types and the readers (``restore_records``, ``cached_records``) are ``aar.transcript_format``:
it sits below every part so the lab and the referee's dashboard read the file without importing this one.

Secrets never reach the file: every line passes through a ``Redactor`` that replaces the values of
API keys and tokens (from the environment and those handed to it) before it is written.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

# the format and its readers live below every part, so the dashboard and the lab read it too (re-exported)
from aar.transcript_format import Restored, cached_records, read_records, restore_records

__all__ = ["Redactor", "Restored", "Transcript", "cached_records", "read_records", "restore_records"]

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
