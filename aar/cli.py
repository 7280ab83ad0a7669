"""`aar ...`: a thin typer CLI that delegates to the parts."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from aar.agents.cli import app as agent_app
from aar.lab.cli import app as lab_app
from aar.referee.cli import app as referee_app

app = typer.Typer(
    help="aar: a lab of Automated Alignment Researchers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
w2s_app = typer.Typer(help="The weak-to-strong testbed.", no_args_is_help=True)
app.add_typer(w2s_app, name="w2s")
app.add_typer(referee_app, name="referee")
app.add_typer(agent_app, name="agent")
app.add_typer(lab_app, name="lab")

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> None:
    from rich.markup import escape

    # unwrapped and literal: a message names files and lines, and may quote a "[...]" value
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _fmt(v: float | None) -> str:
    return "undefined" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _fmt_ci(ci) -> str:
    lo, hi = ci
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return "-"
    return f"[{lo:.3f}, {hi:.3f}]"


@w2s_app.command("fetch-data")
def fetch_data_cmd(
    sdist: Path | None = typer.Option(
        None, "--sdist", help="A copy of bigbench-1.0.0.tar.gz (PyPI no longer serves it).", exists=True
    ),
) -> None:
    """Optional: put the BIG-bench task files (for the non-default BIG-bench tasks) in the private
    cache. The default testbed installs from PyPI and does not need this."""
    from aar.w2s.sources import fetch_data
    from aar.w2s.tasks import TaskDataError

    try:
        path = fetch_data(sdist)
    except (TaskDataError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    err.print(f"task data ready in {path}")


@w2s_app.command("tasks")
def tasks_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    sizes: bool = typer.Option(True, help="Load each task to count its split sizes."),
) -> None:
    """List the registered tasks with their domain, role and split sizes."""
    from aar.w2s.tasks import TaskDataError, load_task, task_specs

    out = []
    for spec in task_specs():
        entry = {"name": spec.name, "domain": spec.domain, "role": spec.role, "description": spec.description}
        if sizes:
            try:
                entry["sizes"] = load_task(spec.name).sizes()
            except TaskDataError as exc:
                entry["sizes"] = {}
                entry["error"] = str(exc)
        out.append(entry)
    order = {"home": 0, "visible": 1, "held_out": 2, "extra": 3}
    out.sort(key=lambda e: (order.get(e["role"], len(order)), e["name"]))
    if as_json:
        print(json.dumps(out, indent=2))
        return
    table = Table(title="aar tasks")
    for col in ("name", "role", "domain", "weak_train", "student_train", "dev", "final"):
        table.add_column(col)
    for e in out:
        s = e.get("sizes", {})
        table.add_row(
            e["name"],
            e["role"],
            e["domain"],
            *(str(s.get(k, "?")) for k in ("weak_train", "student_train", "dev", "final")),
        )
    console.print(table)


@w2s_app.command("run")
def run_cmd(
    task: str = typer.Option(None, help="Task name (default: the home task)."),
    method: str = typer.Option("vanilla", help="A built-in method name or a path to an idea file."),
    seeds: int = typer.Option(3, min=1, max=100, help="Number of seeds."),
    fast: bool = typer.Option(False, "--fast", help="Use the fast model tier (same as --tier fast)."),
    tier: str = typer.Option(
        "default",
        help="Tier: default, fast, bf16 (mpnet in bfloat16), published (SmolLM2 -> gemma-3 features) "
        "or lora (both LoRA-fine-tuned).",
    ),
    split: str = typer.Option("final", help="Score on 'final' (default) or 'dev'."),
    max_rows: int = typer.Option(None, help="Use a deterministic subset of this many rows."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    device: str = typer.Option("cpu", help="Where the lora tier trains: cpu or cuda."),
    task_file: str = typer.Option(
        None,
        "--task-file",
        help="A task of your own: PATH or key=value,... as in `aar referee init --task-file`.",
    ),
) -> None:
    """Run one method on one task: weak, ceiling and transfer accuracy, PGR with 95% CIs."""
    import time

    from aar.w2s import defaults
    from aar.w2s.experiment import prepare, run_method
    from aar.w2s.methods import IdeaError
    from aar.w2s.models import ModelUnavailable
    from aar.w2s.task_files import declare, parse_spec, register_task_file

    start = time.perf_counter()
    if split not in ("dev", "final"):
        _fail(f"--split must be 'dev' or 'final', got {split!r}")
    try:
        if task_file:  # --task defaults to its name
            name = register_task_file(declare(parse_spec(task_file))).name
            task = task or name
        task = task or defaults.HOME_TASK
        prep = prepare(
            task, "fast" if fast else tier, max_rows=max_rows, show_progress=not as_json, device=device
        )
        result = run_method(prep, method, seeds, split=split)
    except (KeyError, ValueError, IdeaError, ModelUnavailable) as exc:  # TaskDataError is a ValueError
        _fail(str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc))
        return
    data = result.to_json()
    data["seconds"] = round(time.perf_counter() - start, 3)
    if as_json:
        print(json.dumps(data))
        return
    table = Table(title=f"{task} / {method} / {seeds} seeds / {result.weak_model} -> {result.strong_model}")
    table.add_column("quantity")
    table.add_column("value")
    table.add_column("95% CI")
    table.add_row("weak acc", _fmt(data["weak_acc"]), _fmt_ci(data["weak_acc_ci"]))
    table.add_row("ceiling acc", _fmt(data["ceiling_acc"]), _fmt_ci(data["ceiling_acc_ci"]))
    table.add_row("transfer acc", _fmt(data["transfer_acc"]), _fmt_ci(data["transfer_acc_ci"]))
    gap = data["ceiling_acc"] - data["weak_acc"]
    table.add_row("gap (ceiling - weak)", _fmt(gap), _fmt_ci(data["gap_ci"]))
    table.add_row("PGR", _fmt(data["pgr"]), _fmt_ci(data["pgr_ci"]))
    console.print(table)
    console.print(f"{data['n_test']} test items, {data['seconds']:.1f} s")


@app.command("demo")
def demo_cmd(
    minutes: float = typer.Option(None, "--minutes", min=0.05, help="Each researcher's wall-clock budget."),
    agents: int = typer.Option(None, "--agents", min=1, max=9, help="Number of scripted researchers."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Campaign folder (summary.json goes here)."),
    tier: str = typer.Option(
        None,
        "--tier",
        help="Testbed tier (default: the demo's, fp32; `auto`: bf16 where the CPU runs it natively).",
    ),
) -> None:
    """The offline demo campaign: scripted researchers, a referee, a dashboard and a report."""
    from aar.lab.cli import demo

    demo(minutes, agents, out, tier=tier)


@w2s_app.command("demo")
def w2s_demo_cmd(
    fast: bool = typer.Option(False, "--fast", help="Use the fast model tier."),
    seeds: int = typer.Option(3, min=1, max=20),
) -> None:
    """The default W2S experiment: every baseline on the home and held-out tasks (no researchers)."""
    from aar.w2s.demo import run_demo

    run_demo(fast=fast, seeds=seeds, console=console)


def main() -> None:
    from aar.lab.procs import die_with_parent, kill_children, reset_signals

    reset_signals()  # SIGINT and SIGTERM are ours, whatever was inherited (ignored under `nohup ... &`)
    try:
        die_with_parent()
        app()
    except KeyboardInterrupt as exc:
        err.print("interrupted")
        sys.exit(128 + getattr(exc, "signum", 2))
    finally:
        kill_children()  # a sandboxed command (its own session) never outlives the aar process that ran it


if __name__ == "__main__":
    main()
