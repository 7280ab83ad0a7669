"""Tool calls that a model wrote as text instead of the API's ``tool_calls`` field.

Local models behind an OpenAI-compatible server often do: a server started without a tool-call parser
(vLLM without ``--enable-auto-tool-choice``, llama.cpp without ``--jinja``), a parser that gave up on a
malformed call (vLLM then passes the raw text on), or a model trained on another convention. We read
the conventions in use:

- Hermes / Qwen 2.5-3 / NousResearch: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any
  number of blocks, text around them (the closing tag may be missing when generation stopped on it);
- a bare JSON call: the whole reply is ``{"name": ..., "arguments" | "parameters": {...}}`` (Llama 3.x's
  JSON tool calling), a list of them, optionally in a Markdown code fence;
- Mistral's ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}]``.

A call we recognise as meant but cannot read (broken JSON, no name, arguments that are not an object)
is returned with an ``error``: the loop answers it with a tool error that says what was wrong and how
to write a call, so the model can fix it on its next turn instead of the run crashing. Plain prose is
never taken for a call: a bare JSON reply counts only with a string ``name`` and an arguments key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

INVALID = "invalid_tool_call"  # the name a call gets when none could be read (APIs require one)
HOW = 'write each call as <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>'
_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_MISTRAL = "[TOOL_CALLS]"


@dataclass
class TextCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the call was meant but could not be read


def _decode(raw: str) -> Any:
    """The first JSON value in ``raw`` (text after it is ignored: models add a stray brace or words)."""
    raw = raw.strip()
    fence = _FENCE.match(raw)
    if fence:
        raw = fence.group(1)
    value, _end = json.JSONDecoder().raw_decode(raw)
    return value


def _call(obj: Any, where: str) -> TextCall:
    """One decoded call object -> TextCall, with an error naming what is wrong."""
    if not isinstance(obj, dict):
        return TextCall(INVALID, error=f"{where} is a JSON {type(obj).__name__}, not an object; {HOW}")
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {"name", "arguments"}}
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return TextCall(INVALID, error=f'{where} has no "name"; {HOW}')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # the OpenAI wire convention: arguments as a JSON string
        try:
            args = json.loads(args or "{}")
        except ValueError as exc:
            return TextCall(name, error=f"{where}: the arguments of {name} are not valid JSON ({exc}); {HOW}")
    if not isinstance(args, dict):
        return TextCall(name, error=f"{where}: the arguments of {name} must be a JSON object; {HOW}")
    return TextCall(name, args)


def _name_hint(raw: str) -> str:
    m = re.search(r'"name"\s*:\s*"([A-Za-z0-9_.-]{1,64})"', raw)
    return m.group(1) if m else INVALID


def _decode_calls(raw: str, where: str) -> list[TextCall]:
    try:
        value = _decode(raw)
    except ValueError as exc:
        return [TextCall(_name_hint(raw), error=f"{where} is not valid JSON ({exc}); {HOW}")]
    items = value if isinstance(value, list) else [value]
    return [_call(v, where) for v in items] or [TextCall(INVALID, error=f"{where} is empty; {HOW}")]


def _looks_like_call(value: Any) -> bool:
    def one(v: Any) -> bool:
        if isinstance(v, dict) and isinstance(v.get("function"), dict):
            v = v["function"]
        return (
            isinstance(v, dict) and isinstance(v.get("name"), str) and ("arguments" in v or "parameters" in v)
        )

    return one(value) or (isinstance(value, list) and bool(value) and all(one(v) for v in value))


def parse_text_calls(text: str) -> tuple[str, list[TextCall]]:
    """(the text without its calls, the calls in order). No calls: (text, [])."""
    if "<tool_call>" in text:
        calls: list[TextCall] = []
        for i, m in enumerate(_BLOCK.finditer(text), 1):
            calls.extend(_decode_calls(m.group(1), f"<tool_call> block {i}"))
        return _BLOCK.sub("", text).strip(), calls
    stripped = text.strip()
    if stripped.startswith(_MISTRAL):
        return "", _decode_calls(stripped[len(_MISTRAL) :], _MISTRAL)
    if stripped[:1] in "{[" or stripped.startswith("```"):
        try:
            value = _decode(stripped)
        except ValueError:
            return text, []
        if _looks_like_call(value):
            items = value if isinstance(value, list) else [value]
            return "", [_call(v, "the JSON tool call") for v in items]
    return text, []
