"""The report's figures, one function per PNG, each ``(snapshot, path) -> path``.

Figures are built with matplotlib's object API (``Figure``) on the Agg canvas, never through pyplot:
reports are drawn at the end of a campaign, possibly from a worker thread, on a machine without a
display, and pyplot's global figure registry is neither thread-safe nor needed. No global backend is
switched, so importing this module does not change an interactive session's matplotlib.

Each takes the snapshot dict or the report's parsed :class:`aar.lab.report.View` (so a report parses
the runs once). PGRs are read through :mod:`aar.contract`: the public part of the home task ranks,
the private part and the held-out tasks confirm.

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
from aar.contract import AdminRun, Part, rank_key
from aar.lab.report import CI, View, drop, finite, parse_time, part_pgr, run_label

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


def researcher_colors(v: View) -> dict[str, str]:
    """One stable colour per researcher, shared by every figure."""
    palette = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "olive")]
    palette += ["tab:cyan", "navy", "gold", "teal", "crimson", "indigo", "sienna", "darkgreen"]
    return {name: palette[i % len(palette)] for i, name in enumerate(v.researcher_names())}


def _color(run: AdminRun, colors: dict[str, str]) -> str:
    return BASELINE_COLOR if run.baseline else colors.get(run.author, "black")


def _err(pgr: float, ci: CI) -> tuple[float, float] | None:
    """Asymmetric error-bar lengths, or None when a bound is missing (unbounded: no bar drawn)."""
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


def _vanilla_band(ax, v: View, vertical: bool, part: Part = "public") -> list:
    """Dashed line + shaded CI for vanilla's ``part``, returned as legend handles (empty when none)."""
    pgr, (lo, hi) = part_pgr(v.vanilla(), part)
    if pgr is None:
        return []
    line, span = (ax.axvline, ax.axvspan) if vertical else (ax.axhline, ax.axhspan)
    line(pgr, color=VANILLA_COLOR, ls="--", lw=1.3)
    handles = [Line2D([], [], color=VANILLA_COLOR, ls="--", label=f"vanilla {part} PGR {pgr:.3f}")]
    if lo is not None and hi is not None:
        span(lo, hi, color=VANILLA_COLOR, alpha=0.15, lw=0)
        handles.append(Patch(color=VANILLA_COLOR, alpha=0.15, label=f"vanilla 95% CI [{lo:.3f}, {hi:.3f}]"))
    return handles


# -- 1. progress over time ----------------------------------------------------------------------------


def campaign_start(v: View) -> datetime | None:
    """The campaign's start, else its earliest run."""
    start = parse_time(v.raw.get("started_at"))
    if start is not None:
        return start
    times = [t for r in v.runs if (t := parse_time(r.created_at))]
    return min(times, default=None)


def _minutes(t: datetime | None, start: datetime | None) -> float | None:
    return None if t is None or start is None else (t - start).total_seconds() / 60.0


def progress_points(v: View, name: str) -> list[tuple[float, float, float]]:
    """(minutes since start, that run's public home PGR, running best) for the researcher's done,
    non-rejected runs with a defined public PGR, in finishing order."""
    start = campaign_start(v)
    pts = []
    for r in v.runs:
        if r.author != name or r.baseline or r.status != "done" or r.review_state == "rejected":
            continue
        pgr = part_pgr(r, "public")[0]
        when = _minutes(parse_time(r.finished_at or r.created_at), start)
        if pgr is not None and when is not None:
            pts.append((when, pgr))
    pts.sort()
    out, best = [], -math.inf
    for when, pgr in pts:
        best = max(best, pgr)
        out.append((when, pgr, best))
    return out


def plot_progress(snapshot: dict | View, path: Path) -> Path:
    """Best public home PGR over time per researcher: step lines of the running best, faint dots for
    every run, vanilla's public PGR and CI as the bar to clear."""
    v = View.of(snapshot)
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    colors = researcher_colors(v)
    end = _minutes(parse_time(v.raw.get("finished_at")), campaign_start(v))
    values: list[float] = []
    handles = []
    for name in v.researcher_names():
        pts = progress_points(v, name)
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
    handles += _vanilla_band(ax, v, vertical=False)
    if not values:
        _message(ax, "no official run with a defined public home PGR yet")
    else:
        ax.set_ylim(*_limits(values + [part_pgr(v.vanilla(), "public")[0] or 0.0]))
        ax.set_xlim(left=0)
        _reference_lines(ax, vertical=False)
        ax.grid(alpha=0.3)
    ax.set_xlabel("minutes since campaign start (run finished)", fontsize=FONT)
    ax.set_ylabel(f"best public PGR so far ({v.home or 'home task'})", fontsize=FONT)
    ax.set_title("Best official public home PGR over time, per researcher", fontsize=FONT + 2)
    if handles:
        ax.legend(handles=handles, fontsize=FONT - 1, loc="best")
    return _save(fig, path)


# -- 2. leaderboard with CIs ---------------------------------------------------------------------------


def leaderboard_rows(v: View) -> list[AdminRun]:
    """Top researcher runs plus every baseline with a defined public PGR, in the one rank order."""
    defined = [r for r in v.leaderboard() if part_pgr(r, "public")[0] is not None][:TOP_RUNS]
    base = [r for r in v.baselines().values() if part_pgr(r, "public")[0] is not None]
    return sorted(defined + base, key=rank_key)


def plot_leaderboard(snapshot: dict | View, path: Path) -> Path:
    """Final leaderboard: public home PGR (circles) and private (squares) with 95% CIs per run,
    baselines in grey, rejected runs hollow."""
    v = View.of(snapshot)
    rows = leaderboard_rows(v)
    fig = _figure(10, max(3.5, 0.45 * len(rows) + 1.8))
    ax = fig.add_subplot()
    colors = researcher_colors(v)
    values: list[float] = []
    ends: list[float] = []
    for y, r in enumerate(reversed(rows)):
        c = _color(r, colors)
        for part, marker, dy in (("public", "o", 0.15), ("private", "s", -0.15)):
            pgr, ci = part_pgr(r, part)
            if pgr is None:
                continue
            err = _err(pgr, ci)
            ax.errorbar(
                pgr,
                y + dy,
                xerr=[[err[0]], [err[1]]] if err else None,
                fmt=marker,
                color=c,
                mfc="white" if r.review_state == "rejected" or part == "private" else c,
                capsize=3,
                ms=6,
            )
            values.append(pgr)
            ends += [pgr - err[0], pgr + err[1]] if err else []
    labels = [run_label(r) + (" [rejected]" if r.review_state == "rejected" else "") for r in reversed(rows)]
    ax.set_yticks(range(len(rows)), labels, fontsize=FONT - 1)
    handles = _vanilla_band(ax, v, vertical=True)
    if not rows:
        _message(ax, "no run with a defined public PGR")
    else:
        ax.set_xlim(*_limits(values, ends))
        _reference_lines(ax, vertical=True)
        ax.grid(axis="x", alpha=0.3)
        handles += [Line2D([], [], color=colors[a], marker="o", ls="", label=a) for a in _authors(rows)]
        handles += [Line2D([], [], color=BASELINE_COLOR, marker="o", ls="", label="baseline")]
        handles += [Line2D([], [], color="0.2", marker="o", ls="", label="public")]
        handles += [Line2D([], [], color="0.2", marker="s", mfc="white", ls="", label="private")]
    undefined = sum(part_pgr(r, "public")[0] is None for r in v.leaderboard())
    note = f" ({undefined} run(s) with undefined public PGR not shown)" if undefined else ""
    ax.set_xlabel(f"PGR on {v.home or 'home task'}, 95% CI, ranked on public{note}", fontsize=FONT)
    ax.set_title("Leaderboard: official runs and baselines (public and private)", fontsize=FONT + 2)
    if handles:
        ax.legend(handles=handles, fontsize=FONT - 1, loc="lower right")
    return _save(fig, path)


def _authors(rows: list[AdminRun]) -> list[str]:
    out: list[str] = []
    for r in rows:
        if not r.baseline and r.author not in out:
            out.append(r.author)
    return out


# -- 3. per task: public, private and held-out ----------------------------------------------------------


def transfer_entries(v: View) -> list[tuple[str, AdminRun]]:
    """(label, run): the top k by public rank, then every baseline."""
    out = [(f"{c.run.author}: {c.run.idea_path} ({c.run.id})", c.run) for c in v.top_k()]
    return out + [(method, r) for method, r in v.baselines().items()]


def task_parts(v: View) -> list[tuple[str, Part, str]]:
    """(task, part, legend label) in figure order: home public and private, each visible task's
    public and private, each held-out task (private only: nobody saw any of it)."""
    out: list[tuple[str, Part, str]] = []
    for task, role in [(v.home, "home"), *[(t, "visible") for t in v.visible]]:
        if task:
            out += [
                (task, "public", f"{task} public ({role})"),
                (task, "private", f"{task} private ({role})"),
            ]
    return out + [(t, "private", f"{t} (held-out)") for t in v.held_out]


def plot_home_vs_heldout(snapshot: dict | View, path: Path) -> Path:
    """Grouped bars per run: home public and private PGR, then each held-out task's. An idea that only
    wins on the public part is fitted to what researchers saw; one that only wins at home is
    overfitting the home task."""
    v = View.of(snapshot)
    entries = transfer_entries(v)
    parts = task_parts(v)
    fig = _figure(max(8.0, 1.3 * len(entries) + 3), 5.5)
    ax = fig.add_subplot()
    if not entries or not parts:
        _message(ax, "no run or baseline with a defined public PGR")
        ax.set_title("Public, private and held-out PGR", fontsize=FONT + 2)
        return _save(fig, path)
    width = 0.8 / len(parts)
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
    values: list[float] = []
    ends: list[float] = []
    for j, (task, part, _) in enumerate(parts):
        for i, (_, run) in enumerate(entries):
            x = i - 0.4 + width * (j + 0.5)
            pgr, ci = part_pgr(run, part, task if task != v.home else None)
            if pgr is None:
                ax.text(x, 0, "undef.", rotation=90, ha="center", va="bottom", fontsize=FONT - 3, color="0.4")
                continue
            err = _err(pgr, ci)
            hatch = "//" if part == "public" else None
            ax.bar(x, pgr, width, color=palette[j % len(palette)], alpha=0.8, hatch=hatch, edgecolor="white")
            if err:
                ax.errorbar(x, pgr, yerr=[[err[0]], [err[1]]], fmt="none", ecolor="0.2", capsize=2, lw=0.8)
                ends += [pgr - err[0], pgr + err[1]]
            values.append(pgr)
    ax.set_xticks(range(len(entries)), [e[0] for e in entries], rotation=30, ha="right", fontsize=FONT - 1)
    ax.set_ylim(*_limits(values, ends))
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="0.35", lw=0.8, ls=":")
    ax.grid(axis="y", alpha=0.3)
    handles = [
        Patch(
            facecolor=palette[j % len(palette)],
            alpha=0.8,
            hatch="//" if part == "public" else None,
            label=lab,
        )
        for j, (_, part, lab) in enumerate(parts)
    ]
    ax.legend(handles=handles, fontsize=FONT - 1, loc="best")
    ax.set_ylabel("PGR (95% CI)", fontsize=FONT)
    ax.set_title(
        f"Public, private and held-out PGR: the top {v.k} by public PGR and the baselines", fontsize=FONT + 2
    )
    return _save(fig, path)


# -- 4. public -> private drop --------------------------------------------------------------------------


def plot_drop(snapshot: dict | View, path: Path) -> Path:
    """The top k by public rank: public PGR (left) to private PGR (right) with CIs, one line per run,
    vanilla's private CI as a band. Lines that fall steeply are numbers fitted to the public part."""
    v = View.of(snapshot)
    comps = v.top_k()
    fig = _figure(8, 5.5)
    ax = fig.add_subplot()
    if not comps:
        _message(ax, "no eligible run to compare")
        ax.set_title("Public -> private drop of the top runs", fontsize=FONT + 2)
        return _save(fig, path)
    colors = researcher_colors(v)
    values: list[float] = []
    ends: list[float] = []
    handles = _vanilla_band(ax, v, vertical=False, part="private")
    n = len(comps)
    for i, c in enumerate(comps):
        r = c.run
        dx = 0.12 * (i - (n - 1) / 2) / max(n, 1)
        xs, ys = [], []
        for x, part in ((0.0, "public"), (1.0, "private")):
            pgr, ci = part_pgr(r, part)
            if pgr is None:
                continue
            err = _err(pgr, ci)
            ax.errorbar(
                x + dx,
                pgr,
                yerr=[[err[0]], [err[1]]] if err else None,
                fmt="o" if c.confirmed else "s",
                color=colors.get(r.author, "black"),
                mfc="white" if not c.confirmed else None,
                capsize=3,
                ms=6,
            )
            xs.append(x + dx)
            ys.append(pgr)
            values.append(pgr)
            ends += [pgr - err[0], pgr + err[1]] if err else []
        if len(xs) == 2:
            ax.plot(xs, ys, color=colors.get(r.author, "black"), lw=1.2, alpha=0.8)
        d = drop(r)
        label = f"#{c.rank} {run_label(r)}: drop {'undefined' if d is None else f'{d:+.3f}'}"
        handles.append(
            Line2D(
                [],
                [],
                color=colors.get(r.author, "black"),
                marker="o" if c.confirmed else "s",
                mfc=None if c.confirmed else "white",
                label=label + (" (confirmed)" if c.confirmed else ""),
            )
        )
    ax.set_xticks([0, 1], ["public (selected on)", "private (never shown)"], fontsize=FONT)
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylim(*_limits(values, ends))
    _reference_lines(ax, vertical=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylabel(f"PGR on {v.home or 'home task'} (95% CI)", fontsize=FONT)
    ax.set_title(f"Public -> private: the top {v.k} by public PGR", fontsize=FONT + 2)
    ax.legend(handles=handles, fontsize=FONT - 2, loc="best")
    return _save(fig, path)


# -- 5. spend ------------------------------------------------------------------------------------------


def spend_rows(snapshot: dict | View) -> list[tuple[str, float, int, int]]:
    """(name, USD, tokens, official runs) per researcher; missing counts are taken from the runs."""
    v = View.of(snapshot)
    listed = {str(r.get("name")): r for r in v.researchers()}
    out = []
    for name in v.researcher_names():
        info = listed.get(name, {})
        n_runs = finite(info.get("official_runs"))
        if n_runs is None:
            n_runs = sum(r.author == name for r in v.researcher_runs())
        out.append(
            (name, finite(info.get("spend_usd")) or 0.0, int(finite(info.get("tokens")) or 0), int(n_runs))
        )
    return out


def _tokens(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def plot_spend(snapshot: dict | View, path: Path) -> Path:
    """Two panels: USD spent (annotated with tokens) and official runs used, per researcher. Offline
    backends spend nothing, so the run counts keep the figure informative."""
    v = View.of(snapshot)
    rows = spend_rows(v)
    fig = _figure(max(9.0, 1.2 * len(rows) * 2 + 3), 4.5)
    ax_usd, ax_runs = fig.subplots(1, 2)
    if not rows:
        for ax in (ax_usd, ax_runs):
            _message(ax, "no researchers")
    else:
        colors = researcher_colors(v)
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


# -- 6. flags ------------------------------------------------------------------------------------------


def flag_counts(snapshot: dict | View) -> dict[str, dict[str, int]]:
    """kind -> state -> count."""
    out: dict[str, dict[str, int]] = {}
    for f in View.of(snapshot).flags():
        by_state = out.setdefault(str(f.get("kind") or "?"), {})
        state = str(f.get("state") or "?")
        by_state[state] = by_state.get(state, 0) + 1
    return out


def plot_flags(snapshot: dict | View, path: Path) -> Path:
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
FIGURES: list[tuple[str, str, Callable[[dict | View, Path], Path]]] = [
    ("progress", "Best official public home PGR over time", plot_progress),
    ("leaderboard", "Leaderboard with 95% CIs (public and private)", plot_leaderboard),
    ("home_vs_heldout", "Public, private and held-out PGR of the top runs", plot_home_vs_heldout),
    ("drop", "Public -> private drop of the top runs", plot_drop),
    ("spend", "Spend and official runs per researcher", plot_spend),
    ("flags", "Flags raised", plot_flags),
]
