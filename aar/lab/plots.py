"""The report's figures, one function per PNG, each ``(snapshot, path) -> path``.

Figures are built with matplotlib's object API (``Figure``) on the Agg canvas, never through pyplot:
reports are drawn at the end of a campaign, possibly from a worker thread, on a machine without a
display, and pyplot's global figure registry is neither thread-safe nor needed. No global backend is
switched, so importing this module does not change an interactive session's matplotlib.

Every figure draws something readable even when the snapshot is empty (a plain message instead of
a blank axis), because an empty campaign still gets a report.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from aar.atomic import atomic_write
from aar.lab.report import (
    CI,
    Run,
    baselines,
    best_by_researcher,
    ci_of,
    held_out_results,
    held_out_tasks,
    home_ci,
    home_pgr,
    home_task,
    is_baseline,
    is_done,
    is_rejected,
    leaderboard,
    num,
    parse_time,
    researcher_names,
    run_id,
    run_label,
    runs,
    vanilla,
)

DPI = 120
BASELINE_COLOR = "0.55"
VANILLA_COLOR = "tab:gray"
TOP_RUNS = 15
PGR_FLOOR, PGR_CEIL = -3.0, 4.0  # hard axis clamp, even for point values
CI_SLACK = 0.5  # how far past the point values a CI may stretch an axis
FONT = 10


# -- shared helpers ----------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Render to memory, then replace the file atomically (a viewer never sees half a PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return atomic_write(Path(path), buf.getvalue())


def _message(ax, text: str) -> None:
    """A centred note in place of data, so an empty panel says why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=FONT + 2, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def researcher_colors(snapshot: dict) -> dict[str, str]:
    """One stable colour per researcher, shared by every figure."""
    palette = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "olive")]
    palette += ["tab:cyan", "navy", "gold", "teal", "crimson", "indigo", "sienna", "darkgreen"]
    return {name: palette[i % len(palette)] for i, name in enumerate(researcher_names(snapshot))}


def _color(run: Run, colors: dict[str, str]) -> str:
    return BASELINE_COLOR if is_baseline(run) else colors.get(str(run.get("author")), "black")


def _err(pgr: float, ci: CI) -> tuple[float, float] | None:
    """Asymmetric error-bar lengths, or None when the CI is undefined."""
    lo, hi = ci
    if lo is None or hi is None:
        return None
    return (max(pgr - lo, 0.0), max(hi - pgr, 0.0))


def _limits(points: list[float], ci_ends: Sequence[float] = ()) -> tuple[float, float]:
    """Axis range covering the point values plus 0 (weak) and 1 (ceiling), widened by the CIs only up
    to ``CI_SLACK`` beyond that: one run's huge interval (a tiny ceiling-weak gap) would otherwise
    squash every other run into a sliver. Such a bar simply runs off the axis."""
    pts = [v for v in points if v is not None and math.isfinite(v)] + [0.0, 1.0]
    lo, hi = min(pts), max(pts)
    ends = [v for v in ci_ends if v is not None and math.isfinite(v)]
    lo = max(min([lo, *ends]), lo - CI_SLACK, PGR_FLOOR)
    hi = min(max([hi, *ends]), hi + CI_SLACK, PGR_CEIL)
    pad = 0.06 * (hi - lo)
    return lo - pad, hi + pad


def _reference_lines(ax, vertical: bool) -> None:
    """Dotted 0 (= weak teacher) and 1 (= ceiling) lines, the two anchors of the PGR scale."""
    line = ax.axvline if vertical else ax.axhline
    line(0.0, color="0.35", lw=0.8, ls=":")
    line(1.0, color="0.35", lw=0.8, ls=":")


def _vanilla_band(ax, snapshot: dict, vertical: bool) -> list:
    """Dashed line + shaded CI for vanilla, returned as legend handles (empty when no vanilla)."""
    van = vanilla(snapshot)
    pgr = home_pgr(van) if van else None
    if pgr is None:
        return []
    lo, hi = home_ci(van)
    line, span = (ax.axvline, ax.axvspan) if vertical else (ax.axhline, ax.axhspan)
    line(pgr, color=VANILLA_COLOR, ls="--", lw=1.3)
    handles = [Line2D([], [], color=VANILLA_COLOR, ls="--", label=f"vanilla PGR {pgr:.3f}")]
    if lo is not None and hi is not None:
        span(lo, hi, color=VANILLA_COLOR, alpha=0.15, lw=0)
        handles.append(Patch(color=VANILLA_COLOR, alpha=0.15, label=f"vanilla 95% CI [{lo:.3f}, {hi:.3f}]"))
    return handles


# -- 1. progress over time ----------------------------------------------------------------------------


def campaign_start(snapshot: dict) -> datetime | None:
    """The campaign's start, else its earliest run."""
    start = parse_time(snapshot.get("started_at"))
    if start is not None:
        return start
    times = [t for r in runs(snapshot) if (t := parse_time(r.get("created_at")))]
    return min(times, default=None)


def _minutes(t: datetime | None, start: datetime | None) -> float | None:
    return None if t is None or start is None else (t - start).total_seconds() / 60.0


def progress_points(snapshot: dict, name: str) -> list[tuple[float, float, float]]:
    """(minutes since start, that run's home PGR, running best) for the researcher's done, non-rejected
    runs with a defined home PGR, in finishing order."""
    start = campaign_start(snapshot)
    pts = []
    for r in runs(snapshot):
        if r.get("author") != name or is_baseline(r) or not is_done(r) or is_rejected(r):
            continue
        pgr = home_pgr(r)
        when = _minutes(parse_time(r.get("finished_at") or r.get("created_at")), start)
        if pgr is not None and when is not None:
            pts.append((when, pgr))
    pts.sort()
    out, best = [], -math.inf
    for when, pgr in pts:
        best = max(best, pgr)
        out.append((when, pgr, best))
    return out


def plot_progress(snapshot: dict, path: Path) -> Path:
    """Best official home PGR over time per researcher: step lines of the running best, faint dots for
    every run, vanilla's PGR and CI as the bar to clear."""
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    colors = researcher_colors(snapshot)
    end = _minutes(parse_time(snapshot.get("finished_at")), campaign_start(snapshot))
    values: list[float] = []
    handles = []
    for name in researcher_names(snapshot):
        pts = progress_points(snapshot, name)
        if not pts:
            continue
        xs, ys, best = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        x_end = max(end or 0.0, xs[-1])
        ax.step(xs + [x_end], best + [best[-1]], where="post", color=colors[name], lw=2)
        ax.scatter(xs, ys, color=colors[name], alpha=0.35, s=22, zorder=3)
        handles.append(
            Line2D([], [], color=colors[name], lw=2, marker="o", label=f"{name} (best {best[-1]:.3f})")
        )
        values += ys
    handles += _vanilla_band(ax, snapshot, vertical=False)
    if not values:
        _message(ax, "no official run with a defined home PGR yet")
    else:
        ax.set_ylim(*_limits(values + [home_pgr(vanilla(snapshot)) or 0.0]))
        ax.set_xlim(left=0)
        _reference_lines(ax, vertical=False)
        ax.grid(alpha=0.3)
    ax.set_xlabel("minutes since campaign start (run finished)", fontsize=FONT)
    ax.set_ylabel(f"best home PGR so far ({home_task(snapshot) or 'home task'})", fontsize=FONT)
    ax.set_title("Best official home PGR over time, per researcher", fontsize=FONT + 2)
    if handles:
        ax.legend(handles=handles, fontsize=FONT - 1, loc="best")
    return _save(fig, path)


# -- 2. leaderboard with CIs ---------------------------------------------------------------------------


def leaderboard_rows(snapshot: dict) -> list[Run]:
    """Top researcher runs plus every baseline with a defined home PGR, best first."""
    top = [r for r in leaderboard(snapshot) if home_pgr(r) is not None][:TOP_RUNS]
    base = [r for r in baselines(snapshot).values() if home_pgr(r) is not None]
    return sorted(top + base, key=lambda r: (-(home_pgr(r) or 0.0), run_id(r)))


def plot_leaderboard(snapshot: dict, path: Path) -> Path:
    """Final leaderboard: home PGR with 95% CI per run, baselines in grey, rejected runs hollow."""
    rows = leaderboard_rows(snapshot)
    fig = _figure(10, max(3.5, 0.38 * len(rows) + 1.8))
    ax = fig.add_subplot()
    colors = researcher_colors(snapshot)
    values: list[float] = []
    ends: list[float] = []
    for y, r in enumerate(reversed(rows)):
        pgr = home_pgr(r) or 0.0
        err = _err(pgr, home_ci(r))
        c = _color(r, colors)
        ax.errorbar(
            pgr,
            y,
            xerr=[[err[0]], [err[1]]] if err else None,
            fmt="o",
            color=c,
            mfc="white" if is_rejected(r) else c,
            capsize=3,
            ms=6,
        )
        values.append(pgr)
        ends += [pgr - err[0], pgr + err[1]] if err else []
    labels = [run_label(r) + (" [rejected]" if is_rejected(r) else "") for r in reversed(rows)]
    ax.set_yticks(range(len(rows)), labels, fontsize=FONT - 1)
    handles = _vanilla_band(ax, snapshot, vertical=True)
    if not rows:
        _message(ax, "no run with a defined home PGR")
    else:
        ax.set_xlim(*_limits(values, ends))
        _reference_lines(ax, vertical=True)
        ax.grid(axis="x", alpha=0.3)
        handles += [Line2D([], [], color=colors[a], marker="o", ls="", label=a) for a in _authors(rows)]
        handles += [Line2D([], [], color=BASELINE_COLOR, marker="o", ls="", label="baseline")]
    undefined = sum(home_pgr(r) is None for r in leaderboard(snapshot))
    note = f" ({undefined} run(s) with undefined PGR not shown)" if undefined else ""
    ax.set_xlabel(f"home PGR on {home_task(snapshot) or 'home task'}, 95% CI{note}", fontsize=FONT)
    ax.set_title("Leaderboard: official runs and baselines", fontsize=FONT + 2)
    if handles:
        ax.legend(handles=handles, fontsize=FONT - 1, loc="lower right")
    return _save(fig, path)


def _authors(rows: list[Run]) -> list[str]:
    out: list[str] = []
    for r in rows:
        if not is_baseline(r) and str(r.get("author")) not in out:
            out.append(str(r.get("author")))
    return out


# -- 3. home vs held-out -------------------------------------------------------------------------------


def transfer_entries(snapshot: dict) -> list[tuple[str, Run]]:
    """(label, run): each researcher's best run, then every baseline."""
    out = [
        (f"{name}: {r.get('idea_path')} ({r.get('id')})", r)
        for name, r in best_by_researcher(snapshot).items()
    ]
    return out + [(method, r) for method, r in baselines(snapshot).items()]


def _task_pgr(run: Run, task: str, home: str | None) -> tuple[float | None, CI]:
    if task == home:
        return home_pgr(run), home_ci(run)
    res = held_out_results(run).get(task, {})
    return num(res.get("pgr")), ci_of(res.get("pgr_ci"))


def plot_home_vs_heldout(snapshot: dict, path: Path) -> Path:
    """Grouped bars per method: home PGR next to each held-out task's PGR. An idea that only wins at
    home is overfitting the home task (or the scorer)."""
    entries = transfer_entries(snapshot)
    home = home_task(snapshot)
    tasks = [t for t in [home, *held_out_tasks(snapshot)] if t]
    fig = _figure(max(8.0, 1.1 * len(entries) + 3), 5.5)
    ax = fig.add_subplot()
    if not entries or not tasks:
        _message(ax, "no run or baseline with a defined home PGR")
        ax.set_title("Home vs held-out PGR", fontsize=FONT + 2)
        return _save(fig, path)
    width = 0.8 / len(tasks)
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"]
    values: list[float] = []
    ends: list[float] = []
    for j, task in enumerate(tasks):
        for i, (_, run) in enumerate(entries):
            x = i - 0.4 + width * (j + 0.5)
            pgr, ci = _task_pgr(run, task, home)
            if pgr is None:
                ax.text(x, 0, "undef.", rotation=90, ha="center", va="bottom", fontsize=FONT - 3, color="0.4")
                continue
            err = _err(pgr, ci)
            ax.bar(x, pgr, width, color=palette[j % len(palette)], alpha=0.85 if task == home else 0.6)
            if err:
                ax.errorbar(x, pgr, yerr=[[err[0]], [err[1]]], fmt="none", ecolor="0.2", capsize=2, lw=0.8)
                ends += [pgr - err[0], pgr + err[1]]
            values.append(pgr)
    ax.set_xticks(range(len(entries)), [e[0] for e in entries], rotation=30, ha="right", fontsize=FONT - 1)
    ax.set_ylim(*_limits(values, ends))
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="0.35", lw=0.8, ls=":")
    ax.grid(axis="y", alpha=0.3)
    labels = [f"{t} ({'home' if t == home else 'held-out'})" for t in tasks]
    handles = [
        Patch(color=palette[j % len(palette)], alpha=0.85 if j == 0 else 0.6, label=lab)
        for j, lab in enumerate(labels)
    ]
    ax.legend(handles=handles, fontsize=FONT - 1, loc="best")
    ax.set_ylabel("PGR (95% CI)", fontsize=FONT)
    ax.set_title("Home vs held-out PGR: each researcher's best run and the baselines", fontsize=FONT + 2)
    return _save(fig, path)


# -- 4. spend ------------------------------------------------------------------------------------------


def spend_rows(snapshot: dict) -> list[tuple[str, float, int, int]]:
    """(name, USD, tokens, official runs) per researcher; missing counts are taken from the runs."""
    listed = {str(r.get("name")): r for r in (snapshot.get("researchers") or []) if isinstance(r, dict)}
    out = []
    for name in researcher_names(snapshot):
        info = listed.get(name, {})
        n_runs = num(info.get("official_runs"))
        if n_runs is None:
            n_runs = sum(r.get("author") == name and not is_baseline(r) for r in runs(snapshot))
        out.append((name, num(info.get("spend_usd")) or 0.0, int(num(info.get("tokens")) or 0), int(n_runs)))
    return out


def _tokens(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def plot_spend(snapshot: dict, path: Path) -> Path:
    """Two panels: USD spent (annotated with tokens) and official runs used, per researcher. Offline
    backends spend nothing, so the run counts keep the figure informative."""
    rows = spend_rows(snapshot)
    fig = _figure(max(9.0, 1.2 * len(rows) * 2 + 3), 4.5)
    ax_usd, ax_runs = fig.subplots(1, 2)
    if not rows:
        for ax in (ax_usd, ax_runs):
            _message(ax, "no researchers")
    else:
        colors = researcher_colors(snapshot)
        names = [r[0] for r in rows]
        bar_colors = [colors[n] for n in names]
        usd = ax_usd.bar(names, [r[1] for r in rows], color=bar_colors)
        ax_usd.bar_label(usd, labels=[f"${r[1]:.2f}\n{_tokens(r[2])} tok" for r in rows], fontsize=FONT - 1)
        if all(r[1] == 0 for r in rows):
            ax_usd.set_ylim(0, 1)
            ax_usd.text(0.5, 0.6, "no paid API spend", transform=ax_usd.transAxes, ha="center", color="0.4")
        else:
            ax_usd.set_ylim(0, max(r[1] for r in rows) * 1.3)
        n_runs = ax_runs.bar(names, [r[3] for r in rows], color=bar_colors)
        ax_runs.bar_label(n_runs, fontsize=FONT - 1)
        ax_runs.set_ylim(0, max(max(r[3] for r in rows) * 1.25, 1))
        ax_runs.yaxis.get_major_locator().set_params(integer=True)
        for ax in (ax_usd, ax_runs):
            ax.tick_params(axis="x", labelrotation=20, labelsize=FONT - 1)
            ax.grid(axis="y", alpha=0.3)
    ax_usd.set_ylabel("USD", fontsize=FONT)
    ax_usd.set_title("Spend per researcher (tokens annotated)", fontsize=FONT + 1)
    ax_runs.set_ylabel("official runs", fontsize=FONT)
    ax_runs.set_title("Official runs per researcher", fontsize=FONT + 1)
    return _save(fig, path)


# -- 5. flags ------------------------------------------------------------------------------------------


def flag_counts(snapshot: dict) -> dict[str, dict[str, int]]:
    """kind -> state -> count."""
    out: dict[str, dict[str, int]] = {}
    for f in snapshot.get("flags") or []:
        if isinstance(f, dict):
            by_state = out.setdefault(str(f.get("kind") or "?"), {})
            state = str(f.get("state") or "?")
            by_state[state] = by_state.get(state, 0) + 1
    return out


def plot_flags(snapshot: dict, path: Path) -> Path:
    """Integrity flags raised by the referee, by kind, stacked by state (open / closed)."""
    counts = flag_counts(snapshot)
    kinds = sorted(counts)
    fig = _figure(8, max(3.0, 0.5 * len(kinds) + 1.8))
    ax = fig.add_subplot()
    if not kinds:
        _message(ax, "no flags raised\n(the referee's integrity checks found nothing)")
        ax.set_title("Flags raised", fontsize=FONT + 2)
        return _save(fig, path)
    states = sorted({s for c in counts.values() for s in c}, key=lambda s: (s != "open", s))
    state_colors = {"open": "tab:red", "closed": "tab:green"}
    left = [0] * len(kinds)
    for s in states:
        vals = [counts[k].get(s, 0) for k in kinds]
        bars = ax.barh(kinds, vals, left=left, color=state_colors.get(s, "tab:gray"), label=s)
        ax.bar_label(bars, labels=[str(v) if v else "" for v in vals], label_type="center", color="white")
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_xlim(0, max(left) * 1.15 + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(axis="y", labelsize=FONT)
    ax.set_xlabel("flags", fontsize=FONT)
    ax.set_title(f"Flags raised ({sum(left)} in all), by kind and state", fontsize=FONT + 2)
    ax.legend(fontsize=FONT - 1, loc="lower right")
    return _save(fig, path)


# name (file stem), caption, function: the order they appear in the report
FIGURES: list[tuple[str, str, Callable[[dict, Path], Path]]] = [
    ("progress", "Best official home PGR over time", plot_progress),
    ("leaderboard", "Leaderboard with 95% CIs", plot_leaderboard),
    ("home_vs_heldout", "Home vs held-out PGR", plot_home_vs_heldout),
    ("spend", "Spend and official runs per researcher", plot_spend),
    ("flags", "Flags raised", plot_flags),
]
