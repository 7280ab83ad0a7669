"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, ollama, ...) via the ``openai`` SDK.

Translation from the neutral format: the system prompt becomes the first message; an assistant
turn's tool_use blocks become ``tool_calls``; each tool_result becomes a ``role: tool`` message.
Tool calls a model wrote as text (Hermes/Qwen ``<tool_call>`` blocks, a bare JSON call, Mistral's
``[TOOL_CALLS]``) become tool_use blocks when the response has no native ones (``textcalls``); a call
that cannot be read carries an ``error`` the loop sends back as the tool's result. In the history every
call goes back as a native ``tool_calls`` entry, which the server's chat template renders in the
model's own convention. Usage: ``prompt_tokens`` includes cached tokens
(``prompt_tokens_details.cached_tokens``), which we split out so prices apply per kind. The key comes
only from ``OPENAI_API_KEY`` (local servers often need none: a placeholder is sent then). Streaming asks
for usage in the final chunk.
"""

from __future__ import annotations

import json
import os

import openai

from aar.agents.backends.base import Backend, Completion, RetryPolicy, retry_after_seconds
from aar.agents.backends.textcalls import parse_text_calls
from aar.agents.prices import Usage

_STOP = {"tool_calls": "tool_use", "stop": "end_turn", "length": "max_tokens", "function_call": "tool_use"}


def to_openai(system: str, messages: list[dict]) -> list[dict]:
    out: list[dict] = [{"role": "system", "content": system}]
    for m in messages:
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        texts = [b["text"] for b in blocks if b["type"] == "text"]
        if m["role"] == "assistant":
            calls = [
                {
                    "id": b["id"],
                    "type": "function",
                    "function": {
                        "name": b["name"],
                        "arguments": b["input"] if isinstance(b["input"], str) else json.dumps(b["input"]),
                    },
                }
                for b in blocks
                if b["type"] == "tool_use"
            ]
            msg: dict = {"role": "assistant", "content": "\n".join(texts) or None}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
            continue
        for b in blocks:
            if b["type"] == "tool_result":
                content = b["content"] if isinstance(b["content"], str) else json.dumps(b["content"])
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": b["tool_use_id"],
                        "content": ("ERROR: " if b.get("is_error") else "") + content,
                    }
                )
        if texts:
            out.append({"role": "user", "content": "\n".join(texts)})
    return out


def to_tools(tools: list[dict]) -> list[dict]:
    return [
        {
            "type": "function",
            "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]},
        }
        for t in tools
    ]


def _args(raw: str | None):
    try:
        parsed = json.loads(raw or "{}")
        return parsed if isinstance(parsed, dict) else raw
    except ValueError:
        return raw or ""  # the toolbox answers "not valid JSON" to the model


def _usage(u) -> Usage:
    if u is None:
        return Usage()
    details = getattr(u, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    return Usage(input=(u.prompt_tokens or 0) - cached, output=u.completion_tokens or 0, cache_read=cached)


class OpenAIBackend(Backend):
    name = "openai"

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
        self.context_window = context_window or 128_000
        self.client = openai.OpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=os.environ.get("OPENAI_API_KEY") or "no-key",
            max_retries=0,
            timeout=timeout,
        )

    def request(self, system, messages, tools, max_tokens) -> dict:
        kw = {"model": self.model, "messages": to_openai(system, messages), "max_tokens": max_tokens}
        if tools:
            kw["tools"] = to_tools(tools)
        if self.stream:
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}
        return kw

    def _complete(self, system, messages, tools, max_tokens) -> Completion:
        kw = self.request(system, messages, tools, max_tokens)
        if not self.stream:
            resp = self.client.chat.completions.create(**kw)
            choice = resp.choices[0]
            text = choice.message.content or ""
            calls = [(c.id, c.function.name, c.function.arguments) for c in (choice.message.tool_calls or [])]
            finish, usage, model = choice.finish_reason, _usage(resp.usage), resp.model
        else:
            text, finish, usage, model = "", None, Usage(), self.model
            acc: dict[int, list] = {}
            for chunk in self.client.chat.completions.create(**kw):
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    text += delta.content or ""
                    for tc in delta.tool_calls or []:
                        slot = acc.setdefault(tc.index, [None, "", ""])
                        slot[0] = tc.id or slot[0]
                        if tc.function is not None:
                            slot[1] += tc.function.name or ""
                            slot[2] += tc.function.arguments or ""
                    finish = choice.finish_reason or finish
            calls = [tuple(acc[i]) for i in sorted(acc)]
        turn = sum(1 for m in messages if m["role"] == "assistant")  # ids unique across the conversation
        blocks: list[dict] = [
            {"type": "tool_use", "id": cid or f"call_{turn}_{i}", "name": name, "input": _args(raw)}
            for i, (cid, name, raw) in enumerate(calls)
        ]
        if not calls and text:  # a model (or a server without a tool parser) that writes its calls as text
            text, found = parse_text_calls(text)
            for i, c in enumerate(found):
                block = {"type": "tool_use", "id": f"text_{turn}_{i}", "name": c.name, "input": c.arguments}
                if c.error:
                    block["error"] = c.error  # answered by the loop with this message, not run
                blocks.append(block)
        content: list[dict] = [{"type": "text", "text": text}] if text else []
        content.extend(blocks)
        stop = "tool_use" if blocks else _STOP.get(finish or "stop", finish or "end_turn")
        return Completion(content, stop, usage, model or self.model)

    def _retryable(self, exc):
        if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
            return True, None
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            return status in (408, 409, 429) or status >= 500, retry_after_seconds(exc.response.headers)
        return False, None
