"""The campaign report: Markdown + PNG plots, the demo summary and the end-of-campaign terminal table.

Everything here reads a *snapshot*: one dict collected from the referee's API when a campaign ends
(researchers, every official run including the baselines, flags). Reading a frozen snapshot rather
than the live referee keeps the report reproducible (``snapshot.json`` is written next to it, so it
can be re-rendered later) and lets the tests drive it with synthetic data.

The API sends an undefined PGR (ceiling-weak gap not significant) as ``null``; a snapshot built in
process may hold NaN instead. Both read as ``None`` here and print as "undefined", never as a number.
Failed runs have ``results: null``; every accessor tolerates missing keys and empty lists, because a
report that crashes at the end of a long campaign loses its most useful output.

Matplotlib is imported only by :func:`write_report` (through :mod:`aar.lab.plots`), so the summary
and the terminal table stay cheap to import.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from aar.atomic import atomic_write

log = logging.getLogger("aar.lab.report")

Run = dict[str, Any]
CI = tuple[float | None, float | None]

UNDEFINED = "undefined"
LEADERBOARD_ROWS = 50  # rows of the Markdown leaderboard; the rest stay in snapshot.json
TERMINAL_ROWS = 10


# -- JSON ---------------------------------------------------------------------------------------------


def json_safe(obj: Any) -> Any:
    """NaN/inf become null so the written JSON is standard (``json.dumps`` would emit bare ``NaN``)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _dump_json(obj: Any) -> str:
    return json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False) + "\n"


# -- reading values -------------------------------------------------------------------------------------


def num(v: Any) -> float | None:
    """A finite float, or None for null / NaN / anything unreadable (undefined PGR reads the same)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def ci_of(v: Any) -> CI:
    """A two-sided interval as (lo, hi); (None, None) when absent or malformed."""
    if not isinstance(v, list | tuple) or len(v) != 2:
        return (None, None)
    return (num(v[0]), num(v[1]))


def fmt(v: Any, digits: int = 3) -> str:
    x = num(v)
    return UNDEFINED if x is None else f"{x:.{digits}f}"


def fmt_ci(ci: Any) -> str:
    lo, hi = ci_of(ci)
    if lo is None or hi is None:
        return UNDEFINED
    return f"[{lo:.3f}, {hi:.3f}]"


def fmt_pgr(pgr: float | None, ci: CI) -> str:
    """``0.660 [0.510, 0.840]``; just "undefined" when the point value is undefined."""
    if pgr is None:
        return UNDEFINED
    return f"{pgr:.3f} {fmt_ci(ci)}" if None not in ci else f"{pgr:.3f}"


def parse_time(s: Any) -> datetime | None:
    """ISO time as an aware UTC datetime. The referee's SQLite drops the zone, so naive means UTC."""
    if isinstance(s, datetime):
        dt = s
    elif isinstance(s, str) and s:
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            return None
    else:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def fmt_time(s: Any) -> str:
    dt = parse_time(s)
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "unknown"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "unknown"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m} min"
    return f"{m} min {sec} s" if m else f"{sec} s"


# -- runs -----------------------------------------------------------------------------------------------


def runs(snapshot: dict) -> list[Run]:
    return [r for r in (snapshot.get("runs") or []) if isinstance(r, dict)]


def run_id(run: Run) -> int:
    """Numeric id for ordering; runs without one sort last."""
    try:
        return int(run.get("id"))
    except (TypeError, ValueError):
        return 1 << 62


def is_done(run: Run) -> bool:
    return run.get("status") == "done"


def is_baseline(run: Run) -> bool:
    return bool(run.get("baseline"))


def is_rejected(run: Run) -> bool:
    return run.get("review_state") == "rejected"


def home_result(run: Run) -> dict:
    """The run's result on its own task (the home task), else the one whose role is "home"."""
    res = run.get("results")
    if not isinstance(res, dict):
        return {}
    r = res.get(run.get("task"))
    if isinstance(r, dict):
        return r
    return next((v for v in res.values() if isinstance(v, dict) and v.get("role") == "home"), {})


def home_pgr(run: Run) -> float | None:
    return num(home_result(run).get("pgr"))


def home_ci(run: Run) -> CI:
    return ci_of(home_result(run).get("pgr_ci"))


def held_out_results(run: Run) -> dict[str, dict]:
    """Results on every task other than the run's home task."""
    res = run.get("results")
    if not isinstance(res, dict):
        return {}
    home = run.get("task")
    return {t: r for t, r in res.items() if isinstance(r, dict) and t != home and r.get("role") != "home"}


def held_out_pgr(run: Run, task: str) -> float | None:
    return num(held_out_results(run).get(task, {}).get("pgr"))


def home_task(snapshot: dict) -> str | None:
    if snapshot.get("home_task"):
        return str(snapshot["home_task"])
    return next((str(r["task"]) for r in runs(snapshot) if r.get("task")), None)


def held_out_tasks(snapshot: dict) -> list[str]:
    """The declared held-out tasks, plus any that appear only in run results (older snapshots)."""
    home = home_task(snapshot)
    out = [str(t) for t in (snapshot.get("held_out_tasks") or []) if t != home]
    for r in runs(snapshot):
        out += [t for t in held_out_results(r) if t not in out and t != home]
    return out


def _pgr_desc(run: Run) -> tuple[bool, float, int]:
    """Sort key: home PGR descending, undefined last, ties in submission order."""
    pgr = home_pgr(run)
    return (pgr is None, -pgr if pgr is not None else 0.0, run_id(run))


def leaderboard(snapshot: dict) -> list[Run]:
    """Done researcher runs (rejected ones included, marked by their review state), best home PGR
    first, undefined last; ties keep submission order."""
    return sorted((r for r in runs(snapshot) if is_done(r) and not is_baseline(r)), key=_pgr_desc)


def baselines(snapshot: dict) -> dict[str, Run]:
    """Done baseline runs keyed by method (idea_path); a re-scored method keeps its latest run."""
    out: dict[str, Run] = {}
    for r in sorted((r for r in runs(snapshot) if is_done(r) and is_baseline(r)), key=run_id):
        out[str(r.get("idea_path") or r.get("commit") or f"run {r.get('id')}")] = r
    return out


def vanilla(snapshot: dict) -> Run | None:
    """The vanilla baseline run (train on weak labels): the bar every idea has to clear."""
    return baselines(snapshot).get("vanilla")


def _strength(run: Run) -> tuple[float, float, int]:
    """Ordering for "best": the CI lower bound first (a wide lucky interval should not win), then the
    point value, then the earlier run."""
    lo = home_ci(run)[0]
    return (lo if lo is not None else -math.inf, home_pgr(run) or 0.0, -run_id(run))


def best_of(candidates: Iterable[Run]) -> Run | None:
    """Best done, non-baseline, non-rejected run with a defined home PGR, or None."""
    eligible = [
        r
        for r in candidates
        if is_done(r) and not is_baseline(r) and not is_rejected(r) and home_pgr(r) is not None
    ]
    return max(eligible, key=_strength, default=None)


def best_run(snapshot: dict) -> Run | None:
    """The campaign's headline run: highest home-PGR CI lower bound among eligible runs."""
    return best_of(runs(snapshot))


def researcher_names(snapshot: dict) -> list[str]:
    """Researchers in campaign order, plus any non-baseline run author the snapshot didn't list."""
    names = [str(r.get("name")) for r in (snapshot.get("researchers") or []) if r.get("name")]
    for r in runs(snapshot):
        a = r.get("author")
        if a and not is_baseline(r) and str(a) not in names:
            names.append(str(a))
    return names


def best_by_researcher(snapshot: dict) -> dict[str, Run]:
    """Each researcher's best run by the same rule as :func:`best_run` (absent when none qualifies)."""
    out = {}
    for name in researcher_names(snapshot):
        best = best_of(r for r in runs(snapshot) if r.get("author") == name)
        if best is not None:
            out[name] = best
    return out


def ci_above_vanilla(snapshot: dict, run: Run | None = None) -> bool:
    """True only when the best run's (or ``run``'s) CI lies wholly above vanilla's CI: lo > vanilla hi.
    Anything undefined or missing is "no", so the claim is never made on missing evidence."""
    run = best_run(snapshot) if run is None else run
    van = vanilla(snapshot)
    if run is None or van is None:
        return False
    lo, hi = home_ci(run)[0], home_ci(van)[1]
    return lo is not None and hi is not None and lo > hi


def run_label(run: Run) -> str:
    """``author: idea_path (run id)``, the label used in tables and plots."""
    return f"{run.get('author') or '?'}: {run.get('idea_path') or '?'} (run {run.get('id', '?')})"


# -- summary (the demo's machine-readable result) ---------------------------------------------------


def _ci_list(ci: CI) -> list[float | None]:
    return [ci[0], ci[1]]


def summary_row(r: Run) -> dict:
    """One run as summary.json lists it."""
    return {
        "author": r.get("author"),
        "commit": r.get("commit"),
        "task": r.get("task"),
        "pgr": home_pgr(r),
        "pgr_ci": _ci_list(home_ci(r)),
        "held_out": {t: num(v.get("pgr")) for t, v in held_out_results(r).items()},
        "review": r.get("review_state"),
    }


def summary(snapshot: dict) -> dict:
    """``{"leaderboard": [...], "baselines": {...}}``: the few numbers a demo run is judged by."""
    board = [summary_row(r) for r in leaderboard(snapshot)]
    base = {m: {"pgr": home_pgr(r), "pgr_ci": _ci_list(home_ci(r))} for m, r in baselines(snapshot).items()}
    return {"leaderboard": board, "baselines": base}


def write_summary(path: Path, snapshot: dict) -> Path:
    return atomic_write(Path(path), _dump_json(summary(snapshot)))


# -- terminal ---------------------------------------------------------------------------------------


def terminal_table(snapshot: dict) -> Table:
    """The top of the leaderboard and the vanilla row, printed when a campaign ends."""
    tasks = held_out_tasks(snapshot)
    table = Table(title=f"official leaderboard (home task: {home_task(snapshot) or '?'})")
    for col, justify in [("#", "right"), ("author", "left"), ("idea", "left"), ("run", "right")]:
        table.add_column(col, justify=justify)
    table.add_column("home PGR [95% CI]", justify="right")
    for t in tasks:
        table.add_column(t, justify="right")
    table.add_column("review")
    for rank, r in enumerate(leaderboard(snapshot)[:TERMINAL_ROWS], 1):
        style = "dim" if is_rejected(r) else None
        table.add_row(*_terminal_cells(str(rank), r, tasks), style=style)
    van = vanilla(snapshot)
    if van is not None:
        table.add_section()
        table.add_row(*_terminal_cells("-", van, tasks), style="cyan")
    return table


def _terminal_cells(rank: str, r: Run, tasks: list[str]) -> list[str]:
    return [
        rank,
        str(r.get("author") or "?"),
        str(r.get("idea_path") or "?"),
        str(r.get("id", "?")),
        fmt_pgr(home_pgr(r), home_ci(r)),
        *[fmt(held_out_pgr(r, t)) for t in tasks],
        str(r.get("review_state") or ""),
    ]


# -- Markdown -------------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    s = "" if v is None else str(v)
    return " ".join(s.split()).replace("|", "\\|")


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _short(v: Any, n: int = 90) -> str:
    s = v if isinstance(v, str) else json.dumps(json_safe(v), default=str, sort_keys=True)
    return s if len(s) <= n else s[: n - 1] + "…"


def _code(v: Any) -> str:
    return f"`{v}`" if v else "?"


def headline(snapshot: dict) -> str:
    """One sentence: the best official run against vanilla, and whether the CIs separate."""
    best, van = best_run(snapshot), vanilla(snapshot)
    van_txt = f"vanilla {fmt_pgr(home_pgr(van), home_ci(van))}" if van else "vanilla: not available"
    if best is None:
        return f"best official run: none with a defined home PGR ({van_txt})."
    above = "yes" if ci_above_vanilla(snapshot, best) else "no"
    return (
        f"best official run: {best.get('author')}'s {best.get('idea_path')} (run {best.get('id')}): "
        f"home PGR {fmt_pgr(home_pgr(best), home_ci(best))} vs {van_txt}; CI above vanilla's CI: {above}"
    )


def _section_overview(snapshot: dict) -> str:
    start, end = parse_time(snapshot.get("started_at")), parse_time(snapshot.get("finished_at"))
    took = (end - start).total_seconds() if start and end else None
    pair = list(snapshot.get("model_pair") or [])
    models = f"weak {_code(pair[0])} -> strong {_code(pair[1])}" if len(pair) >= 2 else "unknown"
    held = ", ".join(_code(t) for t in held_out_tasks(snapshot)) or "none"
    all_runs = runs(snapshot)
    official = [r for r in all_runs if not is_baseline(r)]
    by_status: dict[str, int] = {}
    for r in official:
        by_status[str(r.get("status"))] = by_status.get(str(r.get("status")), 0) + 1
    status_txt = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"
    flags = [f for f in (snapshot.get("flags") or []) if isinstance(f, dict)]
    n_open = sum(f.get("state") == "open" for f in flags)
    return "\n".join(
        [
            f"- **when**: {fmt_time(snapshot.get('started_at'))} to {fmt_time(snapshot.get('finished_at'))}"
            f" ({fmt_duration(took)})",
            f"- **stop reason**: {snapshot.get('stop_reason') or 'unknown'}",
            f"- **home task**: {_code(home_task(snapshot))}; **held-out tasks**: {held}",
            f"- **models**: {models}",
            f"- **official runs**: {len(official)} ({status_txt}); **baselines**: {len(baselines(snapshot))}",
            f"- **flags**: {len(flags)} ({n_open} open)",
        ]
    )


def _count(v: Any, fallback: Any = "?") -> Any:
    x = num(v)
    return fallback if x is None else int(x)


def _section_researchers(snapshot: dict) -> str:
    best = best_by_researcher(snapshot)
    rows = []
    listed = {str(r.get("name")): r for r in (snapshot.get("researchers") or []) if isinstance(r, dict)}
    for name in researcher_names(snapshot):
        info = listed.get(name, {})
        b = best.get(name)
        backend = str(info.get("backend") or "?") + (f" / {info['model']}" if info.get("model") else "")
        spend = num(info.get("spend_usd"))
        rows.append(
            [
                name,
                info.get("direction") or "",
                backend,
                info.get("status") or "?",
                f"${spend:.2f}" if spend is not None else "?",
                f"{int(info['tokens']):,}" if num(info.get("tokens")) is not None else "?",
                _count(info.get("turns")),
                _count(info.get("official_runs"), sum(r.get("author") == name for r in runs(snapshot))),
                _count(info.get("posts")),
                f"{fmt_pgr(home_pgr(b), home_ci(b))} (run {b.get('id')})" if b else "none",
            ]
        )
    if not rows:
        return "_no researchers took part._"
    headers = ["researcher", "direction", "backend / model", "status", "spend", "tokens", "turns"]
    headers += ["official runs", "posts", "best home PGR [CI]"]
    return md_table(headers, rows)


def _section_leaderboard(snapshot: dict) -> str:
    board = leaderboard(snapshot)
    if not board:
        return "_no official run finished._"
    tasks = held_out_tasks(snapshot)
    rows = [
        [
            rank,
            r.get("author"),
            r.get("idea_path"),
            r.get("id"),
            fmt_pgr(home_pgr(r), home_ci(r)),
            fmt(home_result(r).get("transfer_acc")),
            *[fmt(held_out_pgr(r, t)) for t in tasks],
            r.get("review_state") or "",
        ]
        for rank, r in enumerate(board[:LEADERBOARD_ROWS], 1)
    ]
    headers = ["rank", "author", "idea", "run", "home PGR [CI]", "transfer acc"]
    headers += [f"{t} PGR" for t in tasks] + ["review"]
    more = len(board) - LEADERBOARD_ROWS
    tail = f"\n\n_{more} more runs are in `snapshot.json`._" if more > 0 else ""
    return md_table(headers, rows) + tail


def _section_baselines(snapshot: dict) -> str:
    base = baselines(snapshot)
    if not base:
        return "_no baseline was scored._"
    tasks = held_out_tasks(snapshot)
    rows = [
        [
            method,
            r.get("id"),
            fmt_pgr(home_pgr(r), home_ci(r)),
            fmt(home_result(r).get("transfer_acc")),
            fmt(home_result(r).get("weak_acc")),
            fmt(home_result(r).get("ceiling_acc")),
            *[fmt(held_out_pgr(r, t)) for t in tasks],
        ]
        for method, r in sorted(base.items(), key=lambda kv: _pgr_desc(kv[1]))
    ]
    headers = ["method", "run", "home PGR [CI]", "transfer acc", "weak acc", "ceiling acc"]
    return md_table(headers + [f"{t} PGR" for t in tasks], rows)


def _section_unfinished(snapshot: dict) -> str | None:
    """Failed, cancelled and still-pending runs: a failure pattern is itself a finding."""
    rows = [
        [r.get("id"), r.get("author"), r.get("idea_path"), r.get("status"), _short(r.get("error") or "", 120)]
        for r in sorted(runs(snapshot), key=run_id)
        if not is_done(r)
    ]
    return md_table(["run", "author", "idea", "status", "error"], rows) if rows else None


def _section_flags(snapshot: dict) -> str:
    flags = [f for f in (snapshot.get("flags") or []) if isinstance(f, dict)]
    if not flags:
        return "_no flags raised._"
    rows = [
        [
            f.get("id"),
            f.get("kind"),
            f"{f.get('subject_type') or '?'} {f.get('subject_id', '')}".strip(),
            f.get("agent") or "",
            f.get("task") or "",
            f.get("state") or "?",
            f.get("resolution") or "",
            _short(f.get("evidence") or {}),
        ]
        for f in flags
    ]
    return md_table(["id", "kind", "subject", "agent", "task", "state", "resolution", "evidence"], rows)


HOW_TO_READ = """\
- **PGR** (performance gap recovered) = (transfer acc - weak acc) / (ceiling acc - weak acc), all on
  the same held-back `final` items: 0 means the strong student only matched its weak teacher, 1 means
  it reached the ceiling trained on true labels.
- **undefined** PGR: the ceiling-weak gap is not significantly positive (its 95% CI includes 0), so
  the ratio would be noise, whatever its point value. Undefined runs sort last.
- **CIs** are 95% paired bootstrap intervals over items and seeds (weak, student and ceiling
  resampled together). "CI above vanilla's CI" means the best run's lower bound exceeds vanilla's
  upper bound: a conservative test, not a p-value.
- **best run** is the non-rejected run with the highest CI *lower bound*, so one lucky, wide
  interval does not win. Held-out PGRs show whether an idea transfers beyond the home task.
- **review**: `verified` / `rejected` are the referee's verdicts; `unreviewed` runs are not yet
  checked. Flags are the referee's automatic integrity checks (see the flags table)."""


def render_markdown(snapshot: dict, images: dict[str, str], errors: dict[str, str] | None = None) -> str:
    """The report text. ``images``: caption -> path relative to the report; ``errors``: caption ->
    why that plot is missing."""
    parts = [
        f"# Campaign report: {snapshot.get('campaign') or 'unnamed'}",
        _section_overview(snapshot),
        "## Headline",
        headline(snapshot),
        "## Researchers",
        _section_researchers(snapshot),
        "## Leaderboard (official runs, home PGR)",
        _section_leaderboard(snapshot),
        "## Baselines",
        _section_baselines(snapshot),
    ]
    unfinished = _section_unfinished(snapshot)
    if unfinished:
        parts += ["## Runs that did not finish", unfinished]
    parts += ["## Flags", _section_flags(snapshot), "## Plots"]
    parts += [f"### {caption}\n\n![{caption}]({rel})" for caption, rel in images.items()]
    parts += [f'_plot "{caption}" could not be drawn: {err}_' for caption, err in (errors or {}).items()]
    parts += ["## How to read this report", HOW_TO_READ]
    return "\n\n".join(parts) + "\n"


def write_snapshot(out_dir: Path, snapshot: dict) -> Path:
    """snapshot.json: what the report was made from (standard JSON: NaN written as null)."""
    return atomic_write(Path(out_dir) / "snapshot.json", _dump_json(snapshot))


def write_report(out_dir: Path, snapshot: dict) -> Path:
    """Write ``report.md``, ``plots/*.png`` and ``snapshot.json`` under ``out_dir``; return the report
    path. A plot that fails is logged and named in the report instead of losing the whole report."""
    from aar.lab import plots  # matplotlib only when a report is actually drawn

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_snapshot(out_dir, snapshot)
    images: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, caption, draw in plots.FIGURES:
        try:
            path = draw(snapshot, out_dir / "plots" / f"{name}.png")
            images[caption] = path.relative_to(out_dir).as_posix()
        except Exception as exc:  # a broken figure must not cost the report
            log.warning("plot %s failed", name, exc_info=True)
            errors[caption] = f"{type(exc).__name__}: {exc}"
    return atomic_write(out_dir / "report.md", render_markdown(snapshot, images, errors))
