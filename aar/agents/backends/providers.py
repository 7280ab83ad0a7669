"""The built-in backends, registered by name with lazy loaders: naming them here imports no SDK (the
Anthropic and OpenAI clients load when a researcher uses them, claude-agent-sdk only for Claude Code).
Each registration carries the published list prices of its models (USD per million tokens), which the
price table reads; a campaign's own price file overrides them."""

from __future__ import annotations

from aar.agents.backends.registry import backend
from aar.agents.prices import Price

# cache write = 1.25x input (5-minute TTL), cache read = 0.1x input
CLAUDE_PRICES = {
    "claude-opus-4-6": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-5": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": Price(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-4-5": Price(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
}
OPENAI_PRICES = {
    "gpt-5": Price(1.25, 10.0, 0.0, 0.125),
    "gpt-5-mini": Price(0.25, 2.0, 0.0, 0.025),
    "gpt-4.1": Price(2.0, 8.0, 0.0, 0.50),
    "gpt-4o": Price(2.5, 10.0, 0.0, 1.25),
}


@backend(
    "anthropic",
    default_model="claude-sonnet-4-5",
    requires=("anthropic",),
    install="pip install anthropic",
    env_key="ANTHROPIC_API_KEY",
    prices=CLAUDE_PRICES,
    description="Anthropic Messages API: tool use, prompt caching, streaming",
)
def anthropic():
    from aar.agents.backends.anthropic import AnthropicBackend

    return AnthropicBackend


@backend(
    "openai",
    default_model="gpt-5-mini",
    requires=("openai",),
    install="pip install openai",
    env_key="OPENAI_API_KEY",
    prices=OPENAI_PRICES,
    description="any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, ollama); "
    "native tool calls or tool calls written as text",
)
def openai():
    from aar.agents.backends.openai import OpenAIBackend

    return OpenAIBackend


@backend(
    "openai-text",
    default_model="local",
    requires=("openai",),
    install="pip install openai",
    env_key="OPENAI_API_KEY",
    description="an OpenAI-compatible endpoint without tool support: tools in the system prompt, "
    "calls and results as <tool_call> / <tool_response> text",
)
def openai_text():
    from aar.agents.backends.openai_text import OpenAITextBackend

    return OpenAITextBackend


@backend(
    "claude-code",
    default_model="claude-sonnet-4-5",
    requires=("claude_agent_sdk",),
    install="pip install 'aar[claude-code]'",
    env_key="ANTHROPIC_API_KEY",
    prices=CLAUDE_PRICES,
    own_loop=True,
    description="Claude Code through claude-agent-sdk (runs its own loop; aar's tools over MCP)",
)
def claude_code():
    from aar.agents.backends.claude_code import run_claude_code

    return run_claude_code


@backend(
    "scripted",
    default_model="scripted",
    prices={"scripted": Price(0.0, 0.0)},
    description="the offline scripted researcher (no LLM): searches the method space with the same tools",
)
def scripted():
    from aar.agents.backends.scripted import ScriptedBackend

    return ScriptedBackend
