"""Assemble a researcher from its settings: home and sandbox, referee client, tools, backend, budget,
transcript and prompt. Used by ``aar agent run`` and by tests (no CLI parsing in between)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from aar.agents import prompts
from aar.agents.backends.base import RetryPolicy
from aar.agents.backends.registry import backend_info, create_backend
from aar.agents.budget import Budget, Limits
from aar.agents.home import AgentHome
from aar.agents.home import Limits as SandboxLimits
from aar.agents.loop import LoopConfig, Researcher
from aar.agents.prices import load_prices
from aar.agents.public import prepare_public
from aar.agents.referee import RefereeClient, RefereeUnavailable, is_socket_target
from aar.agents.runner import HomeRunner
from aar.agents.tools import Toolbox, ToolContext
from aar.agents.transcript import Redactor, Transcript

log = logging.getLogger("aar.agents")


@dataclass
class Settings:
    workspace: Path
    referee: str
    token: str | None
    backend: str = "scripted"
    model: str | None = None
    direction: str = ""
    budget_usd: float | None = None
    hours: float | None = None
    max_tokens_total: int | None = None
    max_runs: int | None = None
    max_turns: int | None = None
    base_url: str | None = None
    stream: bool = True
    prices: Path | None = None
    public: Path | None = None
    seed: int = 0
    user: str | None = None
    sandbox_backend: str | None = None
    shell_timeout: float = 300.0
    referee_max_wait: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    loop: LoopConfig = field(default_factory=LoopConfig)
    sandbox_limits: SandboxLimits = field(default_factory=SandboxLimits)


@dataclass
class Built:
    researcher: Researcher | None
    home: AgentHome
    toolbox: Toolbox
    transcript: Transcript
    budget: Budget
    system: str
    kickoff: str
    backend: str = "scripted"
    base_url: str | None = None

    def run(self, model: str | None = None) -> str:
        """Run the session: the aar loop, or the session runner of a backend with a loop of its own
        (called as ``runner(toolbox, transcript, budget, system, kickoff, model, base_url=...)``)."""
        if self.researcher is not None:
            return self.researcher.run()
        info = backend_info(self.backend)
        parts = (self.toolbox, self.transcript, self.budget, self.system, self.kickoff)
        return info.load()(*parts, model or info.default_model, base_url=self.base_url)


def build(s: Settings) -> Built:
    info = backend_info(s.backend)  # an unknown name or a missing SDK fails here, before any side effect
    info.check()
    socket = Path(s.referee) if is_socket_target(s.referee) else None
    home = AgentHome.open(
        s.workspace,
        user=s.user,
        referee_socket=socket,
        referee_token=s.token,
        limits=s.sandbox_limits,
        backend=s.sandbox_backend,
    )
    if s.public is not None:
        prepare_public(s.public, home.public, log=log.info)
    redactor = Redactor([s.token] if s.token else [])
    transcript = Transcript(home.state / "transcript.jsonl", redactor)
    budget = Budget(
        Limits(
            usd=s.budget_usd,
            tokens=s.max_tokens_total,
            hours=s.hours,
            official_runs=s.max_runs,
            turns=s.max_turns,
        ),
        load_prices(s.prices),
    )
    referee = RefereeClient(s.referee, s.token, max_wait=s.referee_max_wait)

    def on_run(run: dict) -> None:
        budget.add_official_run()
        transcript.write(
            "official_run",
            run_id=run["id"],
            commit=run["commit"],
            idea_path=run["idea_path"],
            task=run["task"],
        )

    ctx = ToolContext(
        runner=HomeRunner(home),
        referee=referee,
        shell_timeout=s.shell_timeout,
        official_runs_left=budget.runs_left,
        on_official_run=on_run,
        time_left=budget.time_left,
    )
    toolbox = Toolbox(ctx)
    try:
        tasks = referee.tasks()
        name = referee.me()["name"]
    except RefereeUnavailable:
        log.error("referee unreachable while building the prompt; continuing with an empty task card")
        tasks, name = [], None
    system = prompts.system_prompt(tasks, s.direction, toolbox.specs(), name)
    kickoff = prompts.kickoff(s.direction)
    researcher = None
    if not info.own_loop:
        backend = create_backend(
            s.backend,
            s.model,
            base_url=s.base_url,
            stream=s.stream,
            retry=s.retry,
            seed=s.seed,
            direction=s.direction,
        )
        researcher = Researcher(backend, toolbox, transcript, budget, system, kickoff, s.loop)
    return Built(researcher, home, toolbox, transcript, budget, system, kickoff, s.backend, s.base_url)


def run(s: Settings) -> str:
    built = build(s)
    try:
        return built.run(s.model)
    finally:
        built.transcript.close()
