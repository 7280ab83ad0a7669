"""A fake model server on loopback speaking enough of the Anthropic Messages API (JSON and SSE, tool_use,
usage with cache tokens, 529 overloaded) and of OpenAI chat completions (JSON and streamed chunks,
tool_calls, usage with cached tokens) for the real SDK clients to talk to. It records every request.

What it answers is decided by ``script(request_json, turn) -> list of blocks`` where a block is
{"type": "text", "text"} or {"type": "tool_use", "name", "input"}; usage per turn is deterministic.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def usage_for(turn: int) -> dict:
    """Deterministic usage of the n-th successful answer (1-based)."""
    return {
        "input": 100 + 7 * turn,
        "output": 20 + 3 * turn,
        "cache_write": 1000 if turn == 1 else 0,
        "cache_read": 0 if turn == 1 else 1000 + turn,
    }


class FakeModel:
    def __init__(
        self, script: Callable[[dict, int], list[dict]], fail_first: int = 0, fail_status: int = 529
    ):
        self.script = script
        self.fail_first, self.fail_status = fail_first, fail_status
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.turns = 0  # successful answers
        self.usages: list[dict] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeModel:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next(self, body: dict) -> tuple[list[dict], dict] | None:
        with self._lock:
            if len(self.requests) <= self.fail_first:
                return None
            self.turns += 1
            turn = self.turns
            usage = usage_for(turn)
            self.usages.append(usage)
        blocks = self.script(body, turn)
        for i, b in enumerate(blocks):
            if b["type"] == "tool_use":
                b.setdefault("id", f"toolu_{turn:03d}_{i}")
        return blocks, usage

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, events: list[tuple[str | None, dict | str]]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                for name, data in events:
                    payload = data if isinstance(data, str) else json.dumps(data)
                    chunk = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
                    self.wfile.write(chunk.encode())
                    self.wfile.flush()
                self.close_connection = True

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                nxt = fake._next(body)
                path = self.path.split("?", 1)[0]  # Claude Code's CLI asks /v1/messages?beta=true
                if path.endswith("/messages"):
                    if nxt is None:
                        return self._json(
                            fake.fail_status,
                            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                        )
                    return self._anthropic(body, *nxt)
                if path.endswith("/chat/completions"):
                    if nxt is None:
                        return self._json(
                            fake.fail_status, {"error": {"message": "overloaded", "type": "server"}}
                        )
                    return self._openai(body, *nxt)
                self._json(404, {"error": "no such path"})

            # -- Anthropic ---------------------------------------------------------------------
            def _anthropic(self, body, blocks, u):
                content = []
                for b in blocks:
                    if b["type"] == "text":
                        content.append({"type": "text", "text": b["text"]})
                    else:
                        content.append(
                            {"type": "tool_use", "id": b["id"], "name": b["name"], "input": b["input"]}
                        )
                stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
                usage = {
                    "input_tokens": u["input"],
                    "output_tokens": u["output"],
                    "cache_creation_input_tokens": u["cache_write"],
                    "cache_read_input_tokens": u["cache_read"],
                }
                msg = {
                    "id": f"msg_{fake.turns}",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                }
                if not body.get("stream"):
                    return self._json(200, msg)
                start = {**msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
                events: list = [("message_start", {"type": "message_start", "message": start})]
                for i, c in enumerate(content):
                    if c["type"] == "text":
                        events.append(
                            (
                                "content_block_start",
                                {
                                    "type": "content_block_start",
                                    "index": i,
                                    "content_block": {"type": "text", "text": ""},
                                },
                            )
                        )
                        half = len(c["text"]) // 2
                        for piece in (c["text"][:half], c["text"][half:]):
                            events.append(
                                (
                                    "content_block_delta",
                                    {
                                        "type": "content_block_delta",
                                        "index": i,
                                        "delta": {"type": "text_delta", "text": piece},
                                    },
                                )
                            )
                    else:
                        events.append(
                            (
                                "content_block_start",
                                {
                                    "type": "content_block_start",
                                    "index": i,
                                    "content_block": {**c, "input": {}},
                                },
                            )
                        )
                        raw = json.dumps(c["input"])
                        half = len(raw) // 2
                        for piece in (raw[:half], raw[half:]):
                            events.append(
                                (
                                    "content_block_delta",
                                    {
                                        "type": "content_block_delta",
                                        "index": i,
                                        "delta": {"type": "input_json_delta", "partial_json": piece},
                                    },
                                )
                            )
                    events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
                events.append(
                    (
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": usage,
                        },
                    )
                )
                events.append(("message_stop", {"type": "message_stop"}))
                self._sse(events)

            # -- OpenAI ------------------------------------------------------------------------
            def _openai(self, body, blocks, u):
                text = "".join(b["text"] for b in blocks if b["type"] == "text") or None
                calls = [
                    {
                        "id": b["id"],
                        "type": "function",
                        "function": {"name": b["name"], "arguments": b.get("raw") or json.dumps(b["input"])},
                    }
                    for b in blocks
                    if b["type"] == "tool_use"
                ]
                finish = "tool_calls" if calls else "stop"
                usage = {
                    "prompt_tokens": u["input"] + u["cache_read"],
                    "completion_tokens": u["output"],
                    "total_tokens": u["input"] + u["cache_read"] + u["output"],
                    "prompt_tokens_details": {"cached_tokens": u["cache_read"]},
                }
                base = {"id": f"chatcmpl-{fake.turns}", "created": 0, "model": body["model"]}
                if not body.get("stream"):
                    msg = {"role": "assistant", "content": text}
                    if calls:
                        msg["tool_calls"] = calls
                    return self._json(
                        200,
                        {
                            **base,
                            "object": "chat.completion",
                            "usage": usage,
                            "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                        },
                    )
                chunk = {**base, "object": "chat.completion.chunk"}
                events: list = [
                    (
                        None,
                        {
                            **chunk,
                            "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
                        },
                    )
                ]
                if text:
                    for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                        events.append(
                            (
                                None,
                                {
                                    **chunk,
                                    "choices": [
                                        {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                                    ],
                                },
                            )
                        )
                for i, c in enumerate(calls):
                    args = c["function"]["arguments"]
                    first = {
                        "index": i,
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["function"]["name"], "arguments": args[: len(args) // 2]},
                    }
                    rest = {"index": i, "function": {"arguments": args[len(args) // 2 :]}}
                    for tc in (first, rest):
                        events.append(
                            (
                                None,
                                {
                                    **chunk,
                                    "choices": [
                                        {"index": 0, "delta": {"tool_calls": [tc]}, "finish_reason": None}
                                    ],
                                },
                            )
                        )
                events.append(
                    (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                )
                events.append((None, {**chunk, "choices": [], "usage": usage}))
                events.append((None, "[DONE]"))
                self._sse(events)

        return Handler
