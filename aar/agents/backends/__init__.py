"""LLM backends behind one small interface (``base.Backend``), registered by name (``registry``):
Anthropic Messages, OpenAI-compatible chat completions, Claude Code (claude-agent-sdk) and the offline
scripted researcher are built in (``providers``); a backend of your own is one file with ``@backend``."""

from __future__ import annotations

from aar.agents.backends.base import Backend, BackendUnavailable, Completion
from aar.agents.backends.registry import (
    BackendInfo,
    BackendMissingDependency,
    UnknownBackend,
    backend,
    backend_info,
    backend_names,
    create_backend,
)


def make_backend(kind: str, model: str | None = None, **options) -> Backend:
    """Build a turn-by-turn backend by its registered name (kept for callers of the old if-chain)."""
    return create_backend(kind, model, **options)


__all__ = [
    "Backend",
    "BackendInfo",
    "BackendMissingDependency",
    "BackendUnavailable",
    "Completion",
    "UnknownBackend",
    "backend",
    "backend_info",
    "backend_names",
    "create_backend",
    "make_backend",
]
