"""LLM backends behind one small interface (``base.Backend``): Anthropic Messages, OpenAI-compatible
chat completions, Claude Code (claude-agent-sdk) and the offline scripted researcher."""

from __future__ import annotations

from aar.agents.backends.base import Backend, BackendUnavailable, Completion


def make_backend(kind: str, model: str | None = None, **options) -> Backend:
    """Build a backend by name: anthropic, openai, scripted (claude-code runs its own loop: see
    ``aar.agents.backends.claude_code``)."""
    if kind == "anthropic":
        from aar.agents.backends.anthropic import AnthropicBackend

        return AnthropicBackend(model or "claude-sonnet-4-5", **options)
    if kind == "openai":
        from aar.agents.backends.openai import OpenAIBackend

        return OpenAIBackend(model or "gpt-5-mini", **options)
    if kind == "scripted":
        from aar.agents.backends.scripted import ScriptedBackend

        return ScriptedBackend(**{k: v for k, v in options.items() if k in ("seed", "direction")})
    raise ValueError(f"unknown backend {kind!r}: anthropic, openai, claude-code or scripted")


__all__ = ["Backend", "BackendUnavailable", "Completion", "make_backend"]
