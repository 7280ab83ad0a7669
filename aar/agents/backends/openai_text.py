"""``openai-text``: an OpenAI-compatible endpoint that knows nothing of tools (llama.cpp's server without
``--jinja``, a plain completion proxy, a model served without a tool-call parser). The tools are not sent
as the API's ``tools`` field, which such servers refuse or ignore; they are described in the system
prompt in the Hermes convention that open models are trained on, the model writes its calls as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` text (read by ``textcalls``, like the
``openai`` backend does), and the history goes back as plain text: each call as the block the model
wrote, each result as a ``<tool_response>`` block in the next user message.
"""

from __future__ import annotations

import json

from aar.agents.backends.openai import OpenAIBackend
from aar.agents.backends.textcalls import HOW


def tools_prompt(tools: list[dict]) -> str:
    """The tool list as the system prompt's last section (Hermes convention: JSON in <tools> tags)."""
    listed = "\n".join(
        json.dumps({"name": t["name"], "description": t["description"], "parameters": t["input_schema"]})
        for t in tools
    )
    return (
        "\n\n# Tools\n\nYou can call these tools (JSON Schema of each one's arguments):\n"
        f"<tools>\n{listed}\n</tools>\n\nTo call tools, {HOW}; one block per call, as many as you need. "
        "Each result comes back in a <tool_response> block."
    )


def _call_text(block: dict) -> str:
    args = block["input"] if isinstance(block["input"], dict) else {}
    return f"<tool_call>\n{json.dumps({'name': block['name'], 'arguments': args})}\n</tool_call>"


def to_text_messages(system: str, messages: list[dict], tools: list[dict]) -> list[dict]:
    """The neutral conversation as plain chat messages: no tool_calls, no role "tool"."""
    out: list[dict] = [{"role": "system", "content": system + (tools_prompt(tools) if tools else "")}]
    for m in messages:
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        parts = []
        for b in blocks:
            if b["type"] == "text":
                parts.append(b["text"])
            elif b["type"] == "tool_use":
                parts.append(_call_text(b))
            elif b["type"] == "tool_result":
                content = b["content"] if isinstance(b["content"], str) else json.dumps(b["content"])
                error = "ERROR: " if b.get("is_error") else ""
                parts.append(f"<tool_response>\n{error}{content}\n</tool_response>")
        out.append({"role": m["role"], "content": "\n".join(parts)})
    return out


class OpenAITextBackend(OpenAIBackend):
    name = "openai-text"

    def request(self, system, messages, tools, max_tokens) -> dict:
        kw = {
            "model": self.model,
            "messages": to_text_messages(system, messages, tools),
            "max_tokens": max_tokens,
        }
        if self.stream:
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}
        return kw
