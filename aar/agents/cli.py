"""`aar agent ...`: run a researcher, run one command in its sandbox, serve its tools over MCP, call one
tool (inside the sandbox), show its spend."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

import typer

app = typer.Typer(
    help="The researchers: sandboxed agents with tools.", no_args_is_help=True, pretty_exceptions_enable=False
)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _token(token: str | None) -> str | None:
    return token or os.environ.get("AAR_REFEREE_TOKEN")


def _known_backend(name: str) -> str:
    """--backend's check against the registry: an unknown name or a missing SDK is a usage error."""
    from aar.agents.backends.registry import BackendMissingDependency, UnknownBackend, backend_info

    try:
        backend_info(name).check()
    except (UnknownBackend, BackendMissingDependency) as exc:
        raise typer.BadParameter(str(exc)) from None
    return name


@app.command("backends")
def backends_cmd(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """The registered backends: default model, API key variable, missing packages, what each is."""
    from aar.agents.backends.registry import backend_info, backend_names

    rows = []
    for name in backend_names():
        info = backend_info(name)
        rows.append(
            {
                "name": name,
                "default_model": info.default_model,
                "env_key": info.env_key,
                "missing": info.missing(),
                "install": info.install if info.missing() else None,
                "own_loop": info.own_loop,
                "models_priced": sorted(info.prices),
                "description": info.description,
                "module": info.module,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = f"missing {', '.join(r['missing'])} ({r['install']})" if r["missing"] else "ready"
        typer.echo(f"{r['name']:<14} {r['default_model'] or '-':<20} {state}: {r['description']}")


@app.command("run", context_settings={"allow_interspersed_args": True})
def run_cmd(
    referee: str = typer.Option(
        ..., "--referee", help="The referee: http(s)://host:port or a Unix socket path."
    ),
    token: str = typer.Option(
        None, "--token", help="The agent's referee token (default $AAR_REFEREE_TOKEN)."
    ),
    backend: str = typer.Option(
        "scripted",
        "--backend",
        callback=_known_backend,
        help="A registered backend (`aar agent backends` lists them; $AAR_PLUGINS adds your own).",
    ),
    model: str = typer.Option(None, "--model", help="Model name (priced by the price table)."),
    direction: str = typer.Option("", "--direction", help="The researcher's starting direction."),
    budget_usd: float = typer.Option(None, "--budget-usd", help="Stop after this many dollars."),
    hours: float = typer.Option(None, "--hours", help="Stop after this much active wall-clock time."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Stop after this many tokens in all."),
    max_runs: int = typer.Option(None, "--max-runs", help="Official runs allowed."),
    max_turns: int = typer.Option(None, "--max-turns", help="Model turns allowed (a runaway-loop guard)."),
    workspace: Path = typer.Option(..., "--workspace", help="The researcher's home (created if needed)."),
    public: Path = typer.Option(
        None, "--public", help="The referee's public export (`aar referee export-public`)."
    ),
    base_url: str = typer.Option(
        None, "--base-url", help="Model endpoint (OpenAI-compatible servers, proxies)."
    ),
    prices: Path = typer.Option(None, "--prices", help="JSON/YAML price table overriding the defaults."),
    seed: int = typer.Option(0, "--seed", help="Seed of the scripted researcher."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Stream model responses."),
    user: str = typer.Option(None, "--user", help="The agent's system user (root only; default per home)."),
    referee_grace: float = typer.Option(
        90.0, "--referee-grace", help="Stop after the referee refused connections this long (s; 0: never)."
    ),
    deadline_grace: float = typer.Option(
        15.0, "--deadline-grace", help="Stop whatever is running this long after the wall-clock budget (s)."
    ),
    exit_grace: float = typer.Option(
        15.0, "--exit-grace", help="Exit at once if still running this long after being told to stop (s)."
    ),
    log_level: str = typer.Option("info", "--log-level"),
    gpus: bool = typer.Option(
        False, "--gpus", help="Bind the GPU device nodes into the researcher's sandbox (e.g. the lora tier)."
    ),
) -> None:
    """Run a researcher until a budget is spent; resumes from its transcript if it was stopped.

    A watchdog enforces the wall clock even inside a hung tool call or model request, and stops the
    researcher when its referee has gone away; either way the transcript gets its session_end."""
    from aar.agents.budget import Watchdog
    from aar.agents.factory import Settings
    from aar.agents.home import Limits as SandboxLimits

    _logging(log_level)
    settings = Settings(
        workspace=workspace,
        referee=referee,
        token=_token(token),
        backend=backend,
        model=model,
        direction=direction,
        budget_usd=budget_usd,
        hours=hours,
        max_tokens_total=max_tokens,
        max_runs=max_runs,
        max_turns=max_turns,
        base_url=base_url,
        stream=stream,
        prices=prices,
        public=public,
        seed=seed,
        user=user,
        sandbox_limits=SandboxLimits(gpus=gpus),
    )
    watchdog = Watchdog(
        referee=referee, referee_grace=referee_grace, deadline_grace=deadline_grace, exit_grace=exit_grace
    )
    reason = _run_watched(settings, watchdog)
    typer.echo(f"researcher stopped: {reason}", err=True)


def _run_watched(settings, watchdog) -> str:  # noqa: ANN001 (factory.Settings, budget.Watchdog)
    """``factory.run`` under the watchdog (armed before the referee is first asked for anything)."""
    from aar.agents.budget import Stopped
    from aar.agents.factory import build
    from aar.sandbox.reap import kill_children

    built = None

    def hard_exit(reason: str, final: bool) -> None:  # the watchdog's last resort, from its thread
        closed = False
        if built is not None:
            closer = threading.Thread(target=_close_session, args=(built, reason, final), daemon=True)
            closer.start()
            closer.join(5.0)  # the main thread may hold the transcript's lock forever
            closed = not closer.is_alive()
        kill_children()
        sys.stderr.flush()
        os._exit(0 if closed else 1)

    watchdog.hard_exit = hard_exit
    watchdog.start()
    try:
        built = build(settings)
        watchdog.watch(built.budget)
        return built.run(settings.model)
    except KeyboardInterrupt as exc:  # outside the loop's own handling (start-up, the claude-code backend)
        if built is None:
            if isinstance(exc, Stopped):  # the referee is gone before the session began: nothing to close
                return exc.reason
            raise
        reason = getattr(exc, "reason", "interrupted")
        _close_session(built, reason, bool(getattr(exc, "final", False)))
        return reason
    finally:
        watchdog.stop()
        if built is not None:
            built.transcript.close()
        kill_children()  # sandboxed commands run in sessions of their own: none outlives the researcher


def _close_session(built, reason: str, final: bool) -> None:  # noqa: ANN001 (factory.Built)
    """Write session_end if this process's session is still open in the transcript."""
    t = built.transcript
    last = next((r for r in reversed(t.records()) if r["type"] in ("session_start", "session_end")), None)
    if t.session and last is not None and last["type"] == "session_start" and last["session"] == t.session:
        t.write("session_end", reason=reason, final=final, budget=built.budget.summary())


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_cmd(
    ctx: typer.Context,
    workspace: Path = typer.Option(..., "--workspace", help="The researcher's home."),
    referee: str = typer.Option(None, "--referee", help="Referee Unix socket to bind in."),
    token: str = typer.Option(None, "--token"),
    timeout: float = typer.Option(
        300.0, "--timeout", help="Seconds before the command's process group dies."
    ),
    user: str = typer.Option(None, "--user"),
) -> None:
    """Run one command (after --) in the researcher's sandbox, like its shell tool; exit code passed on."""
    from aar.agents.home import AgentHome

    cmd = list(ctx.args)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        typer.echo("usage: aar agent exec --workspace DIR -- CMD ...", err=True)
        raise typer.Exit(2)
    socket = Path(referee) if referee and not referee.startswith("http") else None
    home = AgentHome.open(workspace, user=user, referee_socket=socket, referee_token=_token(token))
    r = home.exec(cmd, timeout=timeout)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.timed_out:
        sys.stderr.write(f"[aar agent exec: killed after {timeout} s]\n")
    raise typer.Exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)


@app.command("mcp")
def mcp_cmd(
    workspace: Path = typer.Option(..., "--workspace"),
    referee: str = typer.Option(..., "--referee"),
    token: str = typer.Option(None, "--token"),
    user: str = typer.Option(None, "--user"),
) -> None:
    """Serve the researcher's tools as an MCP server on stdio (commands run in its sandbox)."""
    from aar.agents.home import AgentHome
    from aar.agents.mcp_server import serve_stdio
    from aar.agents.referee import RefereeClient, is_socket_target
    from aar.agents.runner import HomeRunner
    from aar.agents.tools import Toolbox, ToolContext

    tok = _token(token)
    home = AgentHome.open(
        workspace,
        user=user,
        referee_socket=Path(referee) if is_socket_target(referee) else None,
        referee_token=tok,
    )
    serve_stdio(Toolbox(ToolContext(runner=HomeRunner(home), referee=RefereeClient(referee, tok))))


@app.command("tool")
def tool_cmd(
    name: str = typer.Argument(..., help="Tool name, or 'list'."),
    json_args: str = typer.Option("{}", "--json-args", help="The tool's arguments as a JSON object."),
) -> None:
    """Call one tool from inside the sandbox (referee via $AAR_REFEREE, token via $AAR_REFEREE_TOKEN)."""
    from aar.agents.client import run_tool

    raise typer.Exit(run_tool(name, json_args))


@app.command("status")
def status_cmd(workspace: Path = typer.Option(..., "--workspace")) -> None:
    """Spend and progress of a researcher, from its transcript."""
    from aar.agents.budget import Budget, Limits
    from aar.agents.prices import PriceTable
    from aar.agents.transcript import Transcript

    t = Transcript(workspace / "state" / "transcript.jsonl")
    r = t.restore()
    b = Budget(Limits(), PriceTable(), r.spend)
    out = b.summary()
    out["seconds"] = round(r.spend.seconds_before, 1)
    out["sessions"], out["messages"], out["last_stop"] = r.sessions, len(r.messages), r.finished
    out["runs"] = [x["run_id"] for x in r.submitted_runs]
    typer.echo(json.dumps(out, indent=2))
