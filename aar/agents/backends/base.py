"""The backend interface: one call turns (system prompt, messages, tool specs) into one assistant turn.

Messages use one neutral format (Anthropic's content blocks, which carry everything both APIs need)::

    {"role": "user" | "assistant", "content": [
        {"type": "text", "text": ...},
        {"type": "tool_use", "id": ..., "name": ..., "input": {...}},               # assistant
        {"type": "tool_result", "tool_use_id": ..., "content": "...", "is_error": bool},  # user
    ]}

Each backend translates to and from its API, normalises usage (``input`` excludes cached tokens;
cache writes and reads counted apart) and retries transient failures (429, 5xx, 529 overloaded,
connection errors) with exponential backoff, honouring ``retry-after``; after ``max_attempts`` it
raises ``BackendUnavailable``, which the loop logs and waits out instead of crashing.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aar.agents.prices import Usage

log = logging.getLogger("aar.agents")


class BackendUnavailable(Exception):
    """The model endpoint kept failing (after retries)."""


@dataclass
class Completion:
    content: list[dict]
    stop_reason: str  # end_turn | tool_use | max_tokens | ...
    usage: Usage
    model: str
    done: bool = False  # the backend declares the research finished (scripted researcher)
    raw: Any = field(default=None, repr=False)

    @property
    def tool_uses(self) -> list[dict]:
        return [b for b in self.content if b["type"] == "tool_use"]

    @property
    def text(self) -> str:
        return "\n".join(b["text"] for b in self.content if b["type"] == "text")


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    base: float = 1.0
    cap: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return min(self.cap, self.base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


class Backend(ABC):
    name: str = "base"
    model: str = ""
    context_window: int | None = None  # tokens; None: never compact

    def __init__(self, retry: RetryPolicy | None = None):
        self.retry = retry or RetryPolicy()

    @abstractmethod
    def _complete(self, system: str, messages: list[dict], tools: list[dict], max_tokens: int) -> Completion:
        """One API call, no retries."""

    def _retryable(self, exc: Exception) -> tuple[bool, float | None]:
        """(retry?, seconds the server asked us to wait)."""
        return False, None

    def complete(
        self, system: str, messages: list[dict], tools: list[dict], max_tokens: int = 8192
    ) -> Completion:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._complete(system, messages, tools, max_tokens)
            except Exception as exc:  # noqa: BLE001 (classified below)
                retry, after = self._retryable(exc)
                if not retry:
                    raise
                if attempt >= self.retry.max_attempts:
                    raise BackendUnavailable(f"{self.name} failed {attempt} times: {exc}") from exc
                wait = self.retry.delay(attempt, after)
                log.warning(
                    "%s call failed (%s: %s); retry %d in %.1f s",
                    self.name,
                    type(exc).__name__,
                    str(exc)[:200],
                    attempt,
                    wait,
                )
                self.retry.sleep(wait)


def retry_after_seconds(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
