"""Anthropic Messages API through the official ``anthropic`` SDK: tool use, prompt caching, streaming.

Caching: the system prompt and the tool definitions are a stable prefix marked ``cache_control``
(ephemeral); the last block of the conversation is marked too, so each turn reads the previous
turn's prefix from cache. The API key comes only from the environment (``ANTHROPIC_API_KEY``, read
by the SDK); the SDK's own retries are off so ours (logged, with backoff) are the only ones.
"""

from __future__ import annotations

import copy
import os

import anthropic

from aar.agents.backends.base import Backend, Completion, RetryPolicy, retry_after_seconds
from aar.agents.prices import Usage

CONTEXT_WINDOWS = {"claude": 200_000}
_CACHE = {"type": "ephemeral"}


class AnthropicBackend(Backend):
    name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        stream: bool = True,
        retry: RetryPolicy | None = None,
        timeout: float = 600.0,
        context_window: int | None = None,
        **_ignored,
    ):
        super().__init__(retry)
        self.model = model
        self.stream = stream
        self.context_window = context_window or 200_000
        self.client = anthropic.Anthropic(
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL"), max_retries=0, timeout=timeout
        )

    def request(self, system: str, messages: list[dict], tools: list[dict], max_tokens: int) -> dict:
        tool_defs = copy.deepcopy(tools)
        if tool_defs:
            tool_defs[-1]["cache_control"] = _CACHE
        msgs = copy.deepcopy(messages)
        if msgs and isinstance(msgs[-1]["content"], list) and msgs[-1]["content"]:
            msgs[-1]["content"][-1]["cache_control"] = _CACHE
        kw = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": msgs,
            "system": [{"type": "text", "text": system, "cache_control": _CACHE}],
        }
        if tool_defs:
            kw["tools"] = tool_defs
        return kw

    def _complete(self, system, messages, tools, max_tokens) -> Completion:
        kw = self.request(system, messages, tools, max_tokens)
        if self.stream:
            with self.client.messages.stream(**kw) as stream:
                msg = stream.get_final_message()
        else:
            msg = self.client.messages.create(**kw)
        content = []
        for block in msg.content:
            if block.type == "text":
                content.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        u = msg.usage
        usage = Usage(
            input=u.input_tokens or 0,
            output=u.output_tokens or 0,
            cache_write=getattr(u, "cache_creation_input_tokens", None) or 0,
            cache_read=getattr(u, "cache_read_input_tokens", None) or 0,
        )
        return Completion(content, msg.stop_reason or "end_turn", usage, msg.model or self.model, raw=msg)

    def _retryable(self, exc):
        if isinstance(exc, anthropic.APIConnectionError | anthropic.APITimeoutError):
            return True, None
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            return status in (408, 409, 429) or status >= 500, retry_after_seconds(exc.response.headers)
        if isinstance(exc, anthropic.APIError) and "overloaded" in str(exc).lower():
            return True, None  # an error event in the middle of a stream
        return False, None
