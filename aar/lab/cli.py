"""`aar lab ...`: run (or resume) a campaign, re-serve a finished campaign's dashboard, rebuild its report.
`aar demo` (in aar.cli) is `aar lab run` on the bundled offline demo campaign."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
import yaml
from rich.console import Console

from aar.lab.campaign import Campaign, CampaignError, backend_problems, load

app = typer.Typer(
    help="The lab: campaigns of researchers, their referee, dashboard and report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)
CAMPAIGNS = Path(__file__).parent / "campaigns"


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def resolve(target: Path, out: Path | None, overrides: list[str]) -> tuple[Campaign, Path]:
    """A campaign file (out defaults to runs/<name>) or a campaign folder (resume it in place)."""
    if target.is_dir():
        file = target / "campaign.yaml"
        if not file.exists():
            fail(f"{target} is a folder without campaign.yaml: not a campaign folder")
        return load(file, overrides), out or target
    campaign = load(target, overrides)
    folder = out or Path("runs") / campaign.name
    return _keep_started_tier(campaign, target, folder, overrides), folder


def _keep_started_tier(campaign: Campaign, target: Path, folder: Path, overrides: list[str]) -> Campaign:
    """``tier: auto`` is resolved once, when a campaign starts: resuming a folder keeps the tier it was
    started with (its campaign copy says which), even where this CPU would now pick another (e.g. a demo
    begun on the fp32 tier, resumed by a version whose auto picks bf16). Otherwise the resume would be
    refused as another testbed, or mix two tiers' features."""
    copy = folder / "campaign.yaml"
    if campaign.testbed.tier_note is None or not copy.is_file():  # not auto, or a new campaign
        return campaign
    try:
        started = (yaml.safe_load(copy.read_text()) or {}).get("testbed", {}).get("tier")
    except (OSError, yaml.YAMLError):
        return campaign  # the lab's own check reports an unreadable folder
    if not isinstance(started, str) or started in ("auto", campaign.testbed.tier):
        return campaign
    console.print(f"tier auto: {folder} was started on the {started} tier, which it keeps", highlight=False)
    return load(target, [*overrides, f"testbed.tier={started}"])


def apply_minutes(campaign: Campaign, minutes: float | None) -> None:
    """--minutes M: every researcher's wall-clock budget becomes M (other budgets stay)."""
    if minutes is None:
        return
    campaign.defaults.budget.minutes = minutes
    for spec in campaign.researchers:
        if spec.budget is not None:
            spec.budget.minutes = minutes


def run_campaign(
    target: Path,
    *,
    out: Path | None = None,
    minutes: float | None = None,
    researchers: int | None = None,
    overrides: list[str] | None = None,
):
    from aar.lab.runner import Lab

    try:
        campaign, folder = resolve(target, out, overrides or [])
    except CampaignError as exc:
        fail(str(exc))
        raise
    apply_minutes(campaign, minutes)
    if researchers is not None:
        campaign.n_researchers = researchers
    missing = backend_problems(campaign, dict(os.environ))
    if missing:
        fail("; ".join(missing) + " (or set defaults.base_url for a proxy)")
    from aar.referee.datadir import DataDirError
    from aar.w2s.tasks import TaskDataError

    try:
        return Lab(campaign, folder, console=console).run()
    # RuntimeError: the referee failed (its log is named); TaskDataError / DataDirError: a task cannot
    # be built or carries no claim (too few rows for a split, a teacher at the majority rate)
    except (CampaignError, RuntimeError, TaskDataError, DataDirError) as exc:
        fail(str(exc))
        raise


def print_outcome(result) -> None:  # noqa: ANN001 (aar.lab.runner.LabResult)
    from aar.lab.report import terminal_table

    out = Console()
    if not out.is_terminal:
        out = Console(width=160)  # a log file has no width; keep the CI columns readable
    if result.snapshot.get("runs"):
        out.print(terminal_table(result.snapshot))
    console.print(f"campaign stopped: {result.stop_reason}")
    if result.report:
        console.print(f"report: {result.report}")
    if result.dashboard_url:
        console.print(
            f"dashboard (live while the campaign ran): {result.dashboard_url}\n"
            f"  browse it again with: aar lab serve {result.out}\n"
            f"  admin token: {result.out}/data/admin.token"
        )


@app.command("run")
def run_cmd(
    target: Path = typer.Argument(..., help="A campaign YAML file, or a campaign folder to resume."),
    minutes: float = typer.Option(None, "--minutes", min=0.05, help="Each researcher's wall-clock budget."),
    out: Path = typer.Option(None, "--out", help="Campaign folder (default runs/<name>)."),
    researchers: int = typer.Option(None, "--researchers", min=1, max=64, help="Override n_researchers."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a field, e.g. --set defaults.base_url=http://127.0.0.1:9000 (repeatable)."
    ),
    ray: str = typer.Option(
        None, "--ray", help="Official-run units on the Ray cluster at HOST:PORT (the campaign's ray.address)."
    ),
) -> None:
    """Run a campaign (or resume a killed one: run it again on the same folder)."""
    if ray:
        set_ = [*set_, f"ray.address={ray}"]
    result = run_campaign(target, out=out, minutes=minutes, researchers=researchers, overrides=set_)
    print_outcome(result)
    if result.stop_reason == "interrupted":
        raise typer.Exit(130)


@app.command("check")
def check_cmd(target: Path = typer.Argument(..., help="A campaign YAML file.")) -> None:
    """Validate a campaign file and print its researchers as resolved (no side effects)."""
    try:
        campaign = load(target)
    except CampaignError as exc:
        fail(str(exc))
        return
    data = campaign.model_dump()
    data["resolved_researchers"] = [r.model_dump() for r in campaign.resolved()]
    print(json.dumps(data, indent=2))


@app.command("serve")
def serve_cmd(
    folder: Path = typer.Argument(..., help="A campaign folder (runs/<name>)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
) -> None:
    """Serve a campaign's referee and dashboard again (e.g. to review runs after it finished)."""
    from aar.referee.cli import serve_cmd as referee_serve

    data = folder / "data"
    if not (data / "manifest.json").exists():
        fail(f"{folder} has no referee data (data/manifest.json): not a campaign folder")
    console.print(f"dashboard: http://{host}:{port}/ (admin token in {data}/admin.token); Ctrl-C stops")
    referee_serve(
        data=data,
        db=None,
        host=host,
        port=port,
        uds=None,
        port_file=None,
        workers=None,
        executor=None,
        log_level="warning",
    )


@app.command("report")
def report_cmd(folder: Path = typer.Argument(..., help="A campaign folder with snapshot.json.")) -> None:
    """Rebuild report.md and the plots from the campaign's last snapshot."""
    from aar.lab.report import write_report

    snap = folder / "snapshot.json"
    if not snap.exists():
        fail(f"{snap} not found: the campaign has not ended yet")
    path = write_report(folder, json.loads(snap.read_text()))
    console.print(f"report: {path}")


@app.command("export")
def export_cmd(
    folder: Path = typer.Argument(..., help="A finished campaign folder (runs/<name>, with snapshot.json)."),
    inspect: bool = typer.Option(False, "--inspect", help="Write an Inspect eval log (for `inspect view`)."),
    out: Path = typer.Option(None, "--out", help="Folder for the log (default FOLDER/inspect)."),
) -> None:
    """Export a finished campaign in another tool's format (today: Inspect's eval log)."""
    if not inspect:
        fail("choose a format: --inspect (an Inspect eval log, one sample per researcher)")
    try:
        from aar.lab.export_inspect import ExportError, export_inspect
    except ImportError as exc:
        fail(str(exc))
        return
    try:
        path = export_inspect(folder, out)
    except ExportError as exc:
        fail(str(exc))
        return
    console.print(f"inspect log: {path}\n  view it with: inspect view --log-dir {path.parent}")


def demo(minutes: float | None, agents: int | None, out: Path, *, tier: str | None = None) -> None:
    """The offline demo campaign; a finished earlier demo in ``out`` is kept under a new name.
    ``tier`` replaces the campaign's (``auto``), e.g. ``default`` for the fp32 figures on a bf16 CPU."""
    from aar.lab.layout import CampaignDir
    from aar.lab.report import write_summary

    state = CampaignDir(out).read_state()
    if state.get("status") == "budget":  # finished: start afresh; anything else is resumed
        kept = out.with_name(f"{out.name}-{state.get('created_at', 'old').replace(':', '')}")
        out.rename(kept)
        console.print(f"an earlier finished demo was moved to {kept}")
    overrides = [f"testbed.tier={tier}"] if tier else []
    result = run_campaign(
        CAMPAIGNS / "demo.yaml", out=out, minutes=minutes, researchers=agents, overrides=overrides
    )
    if result.snapshot.get("runs"):
        write_summary(out / "summary.json", result.snapshot)
        console.print(f"summary: {out / 'summary.json'}")
    print_outcome(result)
    if result.stop_reason == "interrupted":
        sys.exit(130)
