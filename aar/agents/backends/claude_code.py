"""Claude Code as a researcher, through ``claude-agent-sdk`` (the ``claude-code`` extra; the SDK bundles
the ``claude`` CLI). Claude Code runs its own agent loop, so this is a session runner rather than a
turn-by-turn ``Backend`` (registered with ``own_loop=True``).

What it may touch: aar's tools, handed to the CLI as an in-process MCP server, are its only tools
(``tools=[]`` turns every built-in tool off: Bash, Read, Write would act outside the sandbox), so every
command and file access goes through the researcher's sandbox, as its own uid, like any backend's. The
CLI process itself runs outside the sandbox (it needs the model endpoint; the sandbox has no network),
with a private ``HOME`` under the researcher's state directory (root-only), no user or project
settings, no other MCP servers, and non-essential traffic (telemetry, update checks) off.

What it records: the same transcript as the aar loop. Assistant turns and tool results as neutral
``message`` records, one ``usage`` record per model response (priced by aar's price table, so budgets
and the dashboard add up the same way; the SDK's own ``total_cost_usd`` is kept beside it), and the
CLI's session id. Usage: per response from the stream's first event (whose output count is partial),
then trued up to the session's total when the CLI reports it (a ``usage`` record marked ``adjust``,
which restores spend but is not a turn).

Resume: a restarted researcher resumes the CLI's own session (``resume=<session id>``, kept under the
private HOME), so the model sees its whole earlier conversation; spend comes back from the transcript.
"""

from __future__ import annotations

import logging

from aar.agents import prompts
from aar.agents.budget import Budget
from aar.agents.prices import Usage
from aar.agents.tools import Toolbox
from aar.agents.transcript import Transcript

log = logging.getLogger("aar.agents")
SERVER = "aar"
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
}


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


def _usage(u: dict | None) -> Usage:
    u = u or {}
    return Usage(
        int(u.get("input_tokens") or 0),
        int(u.get("output_tokens") or 0),
        int(u.get("cache_creation_input_tokens") or 0),
        int(u.get("cache_read_input_tokens") or 0),
    )


def _tool_name(name: str) -> str:
    """``mcp__aar__write_file`` -> ``write_file``: the transcript speaks aar's tool names."""
    prefix = f"mcp__{SERVER}__"
    return name[len(prefix) :] if name.startswith(prefix) else name


def _neutral(block) -> dict | None:  # noqa: ANN001 (an SDK content block)
    from claude_agent_sdk import TextBlock, ToolResultBlock, ToolUseBlock

    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": _tool_name(block.name), "input": block.input}
    if isinstance(block, ToolResultBlock):
        content = block.content
        if isinstance(content, list):
            content = "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        return {
            "type": "tool_result",
            "tool_use_id": block.tool_use_id,
            "content": content or "",
            "is_error": bool(block.is_error),
        }
    return None  # thinking blocks and the like: not part of the research record


def _last_session_id(transcript: Transcript) -> str | None:
    for rec in reversed(transcript.records()):
        if rec["type"] == "event" and rec.get("what") == "claude_session" and rec.get("session_id"):
            return str(rec["session_id"])
    return None


def run_claude_code(
    toolbox: Toolbox,
    transcript: Transcript,
    budget: Budget,
    system: str,
    prompt: str,
    model: str | None = None,
    *,
    base_url: str | None = None,
    max_turns: int = 500,
) -> str:
    try:
        import anyio
        from claude_agent_sdk import (
            AssistantMessage,
            ClaudeAgentOptions,
            ResultMessage,
            SystemMessage,
            UserMessage,
            query,
        )
    except ImportError as exc:
        raise RuntimeError("the claude-code backend needs `pip install 'aar[claude-code]'`") from exc
    server, allowed = sdk_tools(toolbox)
    home = transcript.path.parent / "claude-home"  # the state dir: root-only, never in the sandbox
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**QUIET_ENV, "HOME": str(home)}
    if base_url:
        env["ANTHROPIC_BASE_URL"] = base_url
    restored = transcript.restore()
    budget.spend = restored.spend
    transcript.session = restored.sessions + 1
    resume = _last_session_id(transcript) if restored.messages else None
    turns_left = budget.limits.turns - budget.spend.turns if budget.limits.turns else max_turns
    options = ClaudeAgentOptions(
        system_prompt=system,
        tools=[],
        mcp_servers={SERVER: server},
        strict_mcp_config=True,
        allowed_tools=allowed,
        permission_mode="default",
        setting_sources=[],
        max_turns=max(1, min(max_turns, turns_left)),
        model=model,
        cwd=str(toolbox.ctx.runner.workspace),
        env=env,
        resume=resume,
        stderr=lambda line: log.debug("claude: %s", line.rstrip()),
    )
    priced = model or "claude-code"
    transcript.write("session_start", backend="claude-code", model=priced, resumed=bool(resume))
    state = {"reason": "claude code session ended", "final": True}

    def account(usage: Usage, **extra) -> None:
        if extra.get("adjust"):
            budget.spend.usage[priced] = budget.spend.usage.get(priced, Usage()) + usage
        else:
            budget.add_usage(priced, usage)
        transcript.write(
            "usage",
            model=priced,
            usage=usage.to_dict(),
            cost_usd=budget.prices.cost(priced, usage),
            total_usd=budget.usd,
            **extra,
        )

    async def main() -> None:
        pending: dict = {}  # the assistant message being assembled (the CLI sends one block at a time)
        seen: Usage = Usage()  # usage accounted per response in this query, for the true-up at the end

        def flush() -> None:
            if pending.get("content"):
                transcript.write("message", message={"role": "assistant", "content": pending["content"]})
            pending.clear()

        text = prompt if resume is None else prompts.NUDGE
        async for message in query(prompt=text, options=options):
            if isinstance(message, SystemMessage) and message.subtype == "init":
                sid = message.data.get("session_id")
                transcript.write("event", what="claude_session", session_id=sid, resumed=resume)
            elif isinstance(message, AssistantMessage):
                mid = message.message_id or id(message)
                if pending.get("id") != mid:
                    flush()
                    pending.update(id=mid, content=[])
                    usage = _usage(message.usage)
                    seen = seen + usage
                    account(usage)
                pending["content"].extend(b for b in map(_neutral, message.content) if b is not None)
            elif isinstance(message, UserMessage):
                flush()
                blocks = [b for b in map(_neutral, message.content or []) if b is not None]
                if blocks and isinstance(message.content, list):
                    transcript.write("message", message={"role": "user", "content": blocks})
            elif isinstance(message, ResultMessage):
                flush()
                total = _usage(message.usage)
                extra = Usage(
                    max(0, total.input - seen.input),
                    max(0, total.output - seen.output),
                    max(0, total.cache_write - seen.cache_write),
                    max(0, total.cache_read - seen.cache_read),
                )
                if extra.total:
                    account(extra, adjust=True, sdk_cost_usd=message.total_cost_usd)
                if message.subtype == "error_max_turns":
                    state.update(reason=f"turn limit reached ({budget.limits.turns or max_turns})")
                elif message.is_error:
                    state.update(reason=f"claude code stopped: {message.subtype}", final=False)
            stop = budget.exhausted()
            if stop:
                flush()
                state["reason"] = stop
                return

    try:
        anyio.run(main)
    except KeyboardInterrupt as exc:
        state.update(reason=getattr(exc, "reason", "interrupted"), final=bool(getattr(exc, "final", False)))
    except Exception as exc:  # noqa: BLE001 (the CLI failed: recorded, and the lab restarts the researcher)
        state.update(reason=f"claude code failed: {type(exc).__name__}: {str(exc)[:300]}", final=False)
        log.error("claude code failed: %s", exc)
    transcript.write("session_end", reason=state["reason"], final=state["final"], budget=budget.summary())
    if not state["final"] and str(state["reason"]).startswith("claude code failed"):
        raise RuntimeError(state["reason"])
    return str(state["reason"])
