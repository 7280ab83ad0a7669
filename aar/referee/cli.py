"""`aar referee ...`: init, serve, export-public, add-agent, review, reproduce."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import typer

app = typer.Typer(
    help="The referee: label custody, leak-resistant scoring, official runs, forum.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _fail(msg: str) -> NoReturn:
    _err(f"error: {msg}")
    raise typer.Exit(2)


RAY_HELP = 'Ray executor options: HOST:PORT or JSON ({"address": ..., "resources": ...}).'


def _ray_options(ray: str | None) -> dict | None:
    """``--ray`` as the executor's options: a JSON object, or an address; bad JSON is a CLI error."""
    if not ray:
        return None
    if not ray.lstrip().startswith("{"):
        return {"address": ray}
    try:
        return json.loads(ray)  # starts with "{": an object, or not JSON at all
    except ValueError as exc:
        _fail(f"--ray: not valid JSON ({exc})")


@app.command("init")
def init_cmd(
    data: Path = typer.Argument(..., help="The private data dir to create (0700)."),
    fast: bool = typer.Option(False, "--fast", help="Use the fast model tier (= --tier fast)."),
    tier: str = typer.Option(
        None, "--tier", help="Model tier: default, fast, bf16, published, lora, or auto (bf16 where native)."
    ),
    max_rows: int = typer.Option(None, "--max-rows", help="Use a deterministic subset of rows per task."),
    tasks: str = typer.Option(
        None, "--tasks", help="Comma-separated tasks, home first (default: the testbed's)."
    ),
    visible: str = typer.Option(
        None,
        "--visible",
        help="Comma-separated tasks of --tasks whose public scores researchers see (the rest are held out).",
    ),
    task_file: list[str] = typer.Option(
        None,
        "--task-file",
        help=(
            "A task of your own from a JSONL file (repeatable): PATH or key=value,... with keys path, name "
            "(default: the file's stem), format (auto, binary, preference, text), domain, role (home, "
            "visible, held_out; default held_out unless named in --tasks), description."
        ),
    ),
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data dir)."),
    seeds: int = typer.Option(3, min=1, max=20, help="Seeds per official run (K)."),
    dev_budget: int = typer.Option(200, min=1, help="Dev queries per agent, per task, per day."),
    baselines: bool = typer.Option(True, help="Score the built-in methods for the leaderboard."),
) -> None:
    """Build the private data dir: splits, labels, the weak teacher's and the ceiling's predictions."""
    from aar.eta import EtaLines
    from aar.referee.datadir import DataDirError
    from aar.referee.setup import initialise
    from aar.w2s.defaults import TIERS, resolve_tier
    from aar.w2s.task_files import declare, parse_spec, place
    from aar.w2s.tasks import TaskDataError

    if fast and tier not in (None, "fast"):
        _fail(f"--fast and --tier {tier} disagree: give one")
    tier = "fast" if fast else tier or "default"
    if tier != "auto" and tier not in TIERS:
        _fail(f"--tier: unknown tier {tier!r}; choose one of {', '.join([*TIERS, 'auto'])}")
    tier, why = resolve_tier(tier)
    if why:
        _err(why)
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    shown = [t.strip() for t in visible.split(",") if t.strip()] if visible else []
    try:  # every file is read and checked whole before the data dir is touched
        declared = [declare(parse_spec(spec)) for spec in task_file or []]
        names, shown = place(names, shown, declared)
    except (ValueError, TaskDataError) as exc:
        _fail(str(exc))
    try:
        initialise(
            data,
            tasks=names,
            visible=shown,
            tier=tier,
            max_rows=max_rows,
            task_files=declared,
            baselines=baselines,
            rebuild=True,
            log=_err,
            # extraction takes minutes on first use: a bar with an ETA on a terminal, else ETA lines
            show_progress=sys.stderr.isatty(),
            on_progress=None if sys.stderr.isatty() else EtaLines(_err, every=15.0),
            db_url=db,
            seeds=seeds,
            dev_budget_per_day=dev_budget,
        )
    except (KeyError, ValueError, DataDirError) as exc:
        _fail(str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc))
    _err(f"referee data ready in {data}")


@app.command("serve")
def serve_cmd(
    data: Path = typer.Option(..., "--data", help="The private data dir."),
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data dir)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(
        None, "--port", help="TCP port (default 8765 without --uds; 0 = any free port; with --uds: both)."
    ),
    uds: Path = typer.Option(None, "--uds", help="Serve on this Unix socket (for sandboxed researchers)."),
    port_file: Path = typer.Option(None, "--port-file", help="Write the bound TCP port here once listening."),
    workers: int = typer.Option(None, "--run-workers", help="Concurrent official runs."),
    executor: str = typer.Option(None, "--executor", help="local (default), none (queue only) or ray."),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve the API (/api/v1) and the dashboard until interrupted: on TCP, a Unix socket, or both."""
    import uvicorn

    from aar.referee.app import create_app
    from aar.referee.config import RefereeConfig
    from aar.referee.datadir import DataDirError
    from aar.referee.listen import bind_sockets

    ray_options = _ray_options(ray)
    if ray_options is not None:
        executor = executor or "ray"
    config = RefereeConfig.load(data, db_url=db, run_workers=workers, executor=executor, ray=ray_options)
    try:
        application = create_app(config)
    except DataDirError as exc:
        _fail(str(exc))
        return
    try:
        sockets = bind_sockets(host, port if port is not None or uds else 8765, uds, port_file)
    except OSError as exc:
        _fail(f"cannot listen: {exc}")
        return
    from aar.referee.peer import server_stack

    try:
        protocol, loop = server_stack()
    except ValueError as exc:
        _fail(str(exc))
        return

    server = uvicorn.Server(
        uvicorn.Config(application, log_level=log_level, access_log=False, http=protocol, loop=loop)
    )
    try:
        # uvicorn handles SIGINT and SIGTERM itself while serving (whatever was inherited: a background job
        # gets SIGINT as ignored), shuts down gracefully, then re-raises the signal to the handlers the aar
        # CLI installed, which raise KeyboardInterrupt: that is a clean stop, exit 0
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        _err("referee stopped")


@app.command("export-public")
def export_cmd(
    data: Path = typer.Option(..., "--data", help="The private data dir."),
    out: Path = typer.Option(..., "--out", help="Where to write the researcher-visible files."),
) -> None:
    """Write OUT/<task>/{student_train,dev,final}.jsonl and card.json: no labels, no label statistics."""
    from aar.referee.datadir import DataDirError, export_public

    try:
        files = export_public(data, out)
    except DataDirError as exc:
        _fail(str(exc))
        return
    _err(f"wrote {len(files)} files under {out}")


@app.command("add-agent")
def add_agent_cmd(
    name: str = typer.Argument(..., help="Agent name ([a-z0-9_-], up to 40)."),
    data: Path = typer.Option(..., "--data", help="The private data dir."),
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data dir)."),
    admin: bool = typer.Option(False, "--admin", help="A human administrator (review queue, audit)."),
) -> None:
    """Create an agent; prints its token alone on stdout (it is stored only as a hash)."""
    from aar.referee.auth import add_agent
    from aar.referee.setup import open_database

    with open_database(data, db) as (_config, database):
        try:
            token = add_agent(database, name, admin=admin)
        except ValueError as exc:
            _fail(str(exc))
            return
    print(token)


@app.command("review")
def review_cmd(
    data: Path = typer.Option(..., "--data", help="The private data dir."),
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data dir)."),
    run: int = typer.Option(None, "--run", help="The run to mark."),
    verdict: str = typer.Option(None, "--verdict", help="verified or rejected."),
    reason: str = typer.Option(None, "--reason", help="Why (required with --verdict)."),
    as_json: bool = typer.Option(False, "--json", help="Print the open review queue as JSON."),
) -> None:
    """Without --run: list the open review queue. With --run --verdict --reason: mark a run."""
    from aar.referee.errors import ApiError
    from aar.referee.flags import list_flags
    from aar.referee.setup import open_database

    with open_database(data, db) as (config, database):
        if run is None:
            flags = list_flags(database, "open", 1000, 0)
            if as_json:
                print(json.dumps(flags, indent=2))
            else:
                for f in flags:
                    print(
                        f"flag {f['id']}: {f['kind']} on {f['subject_type']} {f['subject_id']} "
                        f"(agent {f['agent']}, task {f['task']}): {json.dumps(f['evidence'])[:200]}"
                    )
                if not flags:
                    print("review queue is empty")
            return
        if verdict not in ("verified", "rejected") or not reason:
            _fail("--run needs --verdict verified|rejected and --reason")
        from aar.referee.runs import RunService

        service = RunService(config, database, None, None, None)  # type: ignore[arg-type]
        try:
            r = service.review(None, run, verdict, reason, "cli:review")
        except ApiError as exc:
            _fail(exc.message)
            return
        print(f"run {r.id}: {r.review_state} ({reason})")


@app.command("reproduce")
def reproduce_cmd(
    data: Path = typer.Option(..., "--data", help="The private data dir."),
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data dir)."),
    executor: str = typer.Option("local", "--executor", help="Where the units run again: local or ray."),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    run: list[int] = typer.Option(None, "--run", help="Only these runs (repeatable; default: all done)."),
    no_baselines: bool = typer.Option(False, "--no-baselines", help="Skip the built-in baselines."),
    json_out: Path = typer.Option(None, "--json", help="Also write the comparison here as JSON."),
) -> None:
    """Run finished official runs again from their commits (on this host or a Ray cluster) and compare
    every unit's predictions bit for bit and every score with the record; writes nothing to the
    database. Exit 1 when anything differs."""
    from aar.referee.app import Referee
    from aar.referee.config import RefereeConfig
    from aar.referee.datadir import DataDirError
    from aar.referee.executors import build
    from aar.referee.reproduce import reproduce, summary

    ray_options = _ray_options(ray)
    if ray_options is not None:
        executor = "ray" if executor == "local" else executor
    if executor not in ("local", "ray"):
        _fail(f"--executor: {executor!r} runs no units; choose local or ray")
    if not (data / "referee.db").exists() and db is None:
        _fail(f"--data: no referee database in {data}")
    config = RefereeConfig.load(data, db_url=db, executor=executor, ray=ray_options)
    try:
        referee = Referee.build(config)
        engine = build(executor, referee.runs, config)
    except (DataDirError, ValueError) as exc:
        _fail(str(exc))
        return

    def line(c) -> None:  # noqa: ANN001 (RunCheck)
        differs = f"DIFFERS: {c.error or ''} {c.units_differ} {c.results_differ}"
        state = "identical" if c.identical else differs
        _err(f"run {c.run_id} {c.label}: {c.units} units, max |diff| {c.max_abs_diff:.3g}, {state}")

    try:
        checks = reproduce(referee.runs, engine, run or None, baselines=not no_baselines, on_run=line)
    finally:
        engine.shutdown(wait=False)
        referee.db.dispose()
    result = summary(checks)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    _err(
        f"{result['identical']} of {result['runs']} runs reproduced identically "
        f"({result['units']} units, max |diff| {result['max_abs_diff']:.3g})"
    )
    if result["differ"]:
        raise typer.Exit(1)
