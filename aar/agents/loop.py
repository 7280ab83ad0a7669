"""The research loop: ask the backend for a turn, run its tool calls, record everything, repeat until
a budget is spent; resume from the transcript after a crash.

Resume: the transcript gives back the conversation, the spend and the tool calls that were started
but not answered (a kill between a tool's start and its result): those are run again (the tools
that matter are idempotent: ``submit_run`` first looks for an identical run of ours, so a restart
never submits the same run twice), the ones already answered are not.

Compaction: when the last turn's prompt (input + cache reads + cache writes) passes ``compact_at`` of
the backend's context window, the model writes a summary that replaces the conversation (recorded as
a ``compaction`` record); its notebook is appended to the new first message.

Stops: budgets are checked between turns; a Ctrl-C, a SIGTERM or the watchdog (``budget.Watchdog``: the
wall clock inside a hung tool call or model request, a referee gone for good) interrupts whatever runs,
and every way out writes ``session_end`` with its reason and whether the stop is final.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from aar.agents import prompts
from aar.agents.backends.base import Backend, BackendUnavailable, Completion
from aar.agents.budget import Budget
from aar.agents.tools import Toolbox, ToolResult
from aar.agents.transcript import Transcript

log = logging.getLogger("aar.agents")


@dataclass
class LoopConfig:
    max_tokens: int = 8192
    compact_at: float = 0.8
    max_idle_turns: int = 3  # text-only turns in a row before we stop (the model has given up)
    unavailable_wait: float = 60.0  # pause after a backend gave up retrying, before trying again
    run_grace_turns: int = 8  # turns allowed after the last official run (to read and post its result)


@dataclass
class Researcher:
    backend: Backend
    toolbox: Toolbox
    transcript: Transcript
    budget: Budget
    system: str
    kickoff: str
    config: LoopConfig = field(default_factory=LoopConfig)
    sleep: object = time.sleep

    def _record_message(self, messages: list[dict], message: dict) -> None:
        messages.append(message)
        self.transcript.write("message", message=message)

    def _run_tool(self, block: dict) -> dict:
        self.transcript.write("tool_start", id=block["id"], name=block["name"], input=block["input"])
        start = time.monotonic()
        if block.get("error"):  # a call the backend could not read (written as text): say why, run nothing
            result = ToolResult(f"could not read your tool call: {block['error']}", True)
        else:
            result: ToolResult = self.toolbox.call(block["name"], block["input"])
        self.transcript.write(
            "tool_result",
            id=block["id"],
            name=block["name"],
            content=result.content,
            is_error=result.is_error,
            seconds=round(time.monotonic() - start, 3),
        )
        return {
            "type": "tool_result",
            "tool_use_id": block["id"],
            "content": result.content,
            "is_error": result.is_error,
        }

    def _answer(self, messages: list[dict], blocks: list[dict], answered: dict[str, dict]) -> None:
        results = []
        for block in blocks:
            done = answered.get(block["id"])
            if done is not None:
                results.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": block["id"],
                        "content": done["content"],
                        "is_error": done["is_error"],
                    }
                )
            else:
                results.append(self._run_tool(block))
        self._record_message(messages, {"role": "user", "content": results})

    def _stop_reason(self, turns_since_run: int) -> str | None:
        reason = self.budget.exhausted()
        if reason:
            return reason
        left = self.budget.runs_left()
        if left == 0 and turns_since_run >= self.config.run_grace_turns:
            return f"official-run budget spent ({self.budget.spend.official_runs} runs)"
        return None

    def _complete(self, messages: list[dict], tools: list[dict]) -> Completion | None:
        try:
            return self.backend.complete(self.system, messages, tools, self.config.max_tokens)
        except BackendUnavailable as exc:
            log.error("model endpoint unavailable: %s; waiting %.0f s", exc, self.config.unavailable_wait)
            self.transcript.write("event", what="backend_unavailable", error=str(exc)[:500])
            self.sleep(self.config.unavailable_wait)
            return None

    def _account(self, completion: Completion) -> None:
        self.budget.add_usage(completion.model, completion.usage)
        self.transcript.write(
            "usage",
            model=completion.model,
            usage=completion.usage.to_dict(),
            cost_usd=self.budget.prices.cost(completion.model, completion.usage),
            total_usd=self.budget.usd,
        )

    def _maybe_compact(self, messages: list[dict], completion: Completion) -> list[dict]:
        window = self.backend.context_window
        u = completion.usage
        if not window or u.input + u.cache_read + u.cache_write < self.config.compact_at * window:
            return messages
        last = messages[-1]
        request = [
            *messages[:-1],
            {"role": last["role"], "content": [*last["content"], {"type": "text", "text": prompts.COMPACT}]},
        ]
        summary = ""
        done = self._complete(request, [])
        if done is not None:
            self._account(done)
            summary = done.text
        if not summary:  # could not summarise: keep the recent tail that starts cleanly
            tail = messages[-10:]
            while tail and (
                tail[0]["role"] != "user" or any(b["type"] == "tool_result" for b in tail[0]["content"])
            ):
                tail = tail[1:]
            new = tail or [{"role": "user", "content": [{"type": "text", "text": self.kickoff}]}]
        else:
            notebook = self.toolbox.call("notebook", {"action": "read", "max_chars": 6000}).content
            new = [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": (
                                f"{self.kickoff}\n\nSummary of your work so far (context compacted):\n"
                                f"{summary}\n\n"
                                f"Your notebook (tail):\n{notebook}"
                            ),
                        }
                    ],
                }
            ]
        self.transcript.write("compaction", messages=new, before=len(messages))
        log.info("context compacted: %d messages -> %d", len(messages), len(new))
        return list(new)

    def run(self) -> str:
        restored = self.transcript.restore()
        self.budget.spend = restored.spend
        self.transcript.session = restored.sessions + 1
        self.transcript.write(
            "session_start",
            backend=self.backend.name,
            model=self.backend.model,
            resumed=bool(restored.messages),
        )
        tools = self.toolbox.specs()
        messages = list(restored.messages)
        turns_since_run = 10**9 if not restored.submitted_runs else 0
        runs_before = self.budget.spend.official_runs
        idle = 0
        reason = "stopped"
        final = False
        try:  # from here on every way out writes session_end (a resumed tool call may be the long one)
            if not messages:
                self._record_message(
                    messages, {"role": "user", "content": [{"type": "text", "text": self.kickoff}]}
                )
            elif messages[-1]["role"] == "assistant":
                pending = [b for b in messages[-1]["content"] if b["type"] == "tool_use"]
                if pending:
                    log.info("resuming: answering %d tool call(s) the last session left open", len(pending))
                    self._answer(messages, pending, restored.answered)
                else:
                    self._record_message(
                        messages, {"role": "user", "content": [{"type": "text", "text": prompts.NUDGE}]}
                    )
            while True:
                reason = self._stop_reason(turns_since_run)
                if reason:
                    break
                completion = self._complete(messages, tools)
                if completion is None:
                    continue
                self._account(completion)
                self._record_message(messages, {"role": "assistant", "content": completion.content})
                if completion.done:
                    reason = "the researcher declared its work finished"
                    break
                calls = completion.tool_uses
                if not calls:
                    idle += 1
                    if idle >= self.config.max_idle_turns:
                        reason = f"no tool use in {idle} turns"
                        break
                    self._record_message(
                        messages, {"role": "user", "content": [{"type": "text", "text": prompts.NUDGE}]}
                    )
                    continue
                idle = 0
                self._answer(messages, calls, {})
                turns_since_run += 1
                if self.budget.spend.official_runs > runs_before:
                    runs_before, turns_since_run = self.budget.spend.official_runs, 0
                messages = self._maybe_compact(messages, completion)
            # final: a budget was spent or the researcher chose to stop; a resumed session would stop again
            final = True
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, or the watchdog (budget.Stopped: its own reason)
            reason = getattr(exc, "reason", "interrupted")
            final = bool(getattr(exc, "final", False))
        self.transcript.write("session_end", reason=reason, final=final, budget=self.budget.summary())
        log.info("researcher stopped: %s", reason)
        return reason
