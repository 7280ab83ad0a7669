"""Claude Code as a researcher, through ``claude-agent-sdk`` (optional: ``pip install claude-agent-sdk``,
plus the ``claude`` CLI). Claude Code runs its own agent loop, so this is a session runner rather than
a turn-by-turn ``Backend``: our tools are handed to it as an in-process MCP server and are the only
tools it may use (``allowed_tools``; its built-in Bash/Read/Write would act outside our sandbox).
Permission mode stays "default": the CLI refuses bypassPermissions as root, and allowed_tools already
pre-approves exactly our tools. Messages and usage go to the same transcript; cost is the SDK's
``total_cost_usd`` when it reports one, else the price table applied to its usage.
"""

from __future__ import annotations

import logging

from aar.agents.budget import Budget
from aar.agents.prices import Usage
from aar.agents.tools import Toolbox
from aar.agents.transcript import Transcript

log = logging.getLogger("aar.agents")
SERVER = "aar"


def sdk_tools(toolbox: Toolbox):
    from claude_agent_sdk import create_sdk_mcp_server, tool

    def make(spec: dict):
        @tool(spec["name"], spec["description"], spec["input_schema"])
        async def handler(args: dict) -> dict:
            import anyio

            result = await anyio.to_thread.run_sync(toolbox.call, spec["name"], args)
            return {"content": [{"type": "text", "text": result.content}], "is_error": result.is_error}

        return handler

    specs = toolbox.specs()
    server = create_sdk_mcp_server(name=SERVER, version="1.0.0", tools=[make(s) for s in specs])
    return server, [f"mcp__{SERVER}__{s['name']}" for s in specs]


def run_claude_code(
    toolbox: Toolbox,
    transcript: Transcript,
    budget: Budget,
    system: str,
    prompt: str,
    model: str | None = None,
    max_turns: int = 500,
) -> str:
    try:
        import anyio
        from claude_agent_sdk import AssistantMessage, ClaudeAgentOptions, ResultMessage, query
    except ImportError as exc:
        raise RuntimeError(
            "the claude-code backend needs `pip install claude-agent-sdk` and the claude CLI"
        ) from exc
    server, allowed = sdk_tools(toolbox)
    options = ClaudeAgentOptions(
        system_prompt=system,
        mcp_servers={SERVER: server},
        allowed_tools=allowed,
        permission_mode="default",
        max_turns=max_turns,
        model=model,
        cwd=str(toolbox.ctx.runner.workspace),
    )
    restored = transcript.restore()
    budget.spend = restored.spend
    transcript.session = restored.sessions + 1
    transcript.write("session_start", backend="claude-code", model=model, resumed=bool(restored.messages))
    reason = "claude code session ended"

    async def main() -> str:
        async for message in query(prompt=prompt, options=options):
            if isinstance(message, AssistantMessage):
                blocks = [{"type": type(b).__name__, **getattr(b, "__dict__", {})} for b in message.content]
                transcript.write("message", message={"role": "assistant", "content": blocks})
            elif isinstance(message, ResultMessage):
                u = message.usage or {}
                usage = Usage(
                    u.get("input_tokens", 0),
                    u.get("output_tokens", 0),
                    u.get("cache_creation_input_tokens", 0),
                    u.get("cache_read_input_tokens", 0),
                )
                budget.add_usage(model or "claude-code", usage)
                transcript.write(
                    "usage",
                    model=model or "claude-code",
                    usage=usage.to_dict(),
                    cost_usd=message.total_cost_usd,
                    total_usd=budget.usd,
                )
            stop = budget.exhausted()
            if stop:
                return stop
        return reason

    reason = anyio.run(main)
    transcript.write("session_end", reason=reason, budget=budget.summary())
    return reason
