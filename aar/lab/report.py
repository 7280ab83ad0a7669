"""The campaign report: Markdown + PNG plots, the demo summary and the end-of-campaign terminal table.

Everything here reads a *snapshot*: one dict collected from the referee's API when a campaign ends
(researchers, every official run including the baselines, flags). Reading a frozen snapshot rather
than the live referee keeps the report reproducible (``snapshot.json`` is written next to it, so it
can be re-rendered later) and lets the tests drive it with synthetic data.

Runs are read through :mod:`aar.contract` (``AdminRun``), and "best" is its one rule: the highest
lower CI bound on the *public* part of the home task. The public part selects; the private part and
the held-out tasks only confirm. The headline is the first of the top ``k`` runs (public order) whose
paired private comparison with vanilla survives Holm correction over the ``k``.

A run that does not validate is skipped with a log line (a report that crashes at the end of a long
campaign loses its most useful output). NaN and infinities are read as null first: an undefined PGR
prints as "undefined", an infinite CI bound as unbounded.

Matplotlib is imported only by :func:`write_report` (through :mod:`aar.lab.plots`), so the summary
and the terminal table stay cheap to import.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.table import Table

from aar.atomic import atomic_write
from aar.contract import (
    CI,
    AdminRun,
    Part,
    PartScore,
    VsVanilla,
    best,
    ci_pair,
    finite,
    rank_key,
    ranked,
    top,
)
from aar.w2s.pgr import holm_adjusted

log = logging.getLogger("aar.lab.report")

UNDEFINED = "undefined"
ALPHA = 0.05
DEFAULT_TOP_K = 5
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


# -- formatting ---------------------------------------------------------------------------------------


num = finite


def fmt(v: Any, digits: int = 3) -> str:
    x = finite(v)
    return UNDEFINED if x is None else f"{x:.{digits}f}"


def fmt_signed(v: Any) -> str:
    x = finite(v)
    return UNDEFINED if x is None else f"{x:+.3f}"


def fmt_ci(ci: Any) -> str:
    """``[0.510, 0.840]``; a missing bound is unbounded (``-inf`` / ``inf``)."""
    lo, hi = ci_pair(ci)
    return f"[{'-inf' if lo is None else f'{lo:.3f}'}, {'inf' if hi is None else f'{hi:.3f}'}]"


def half_width(ci: Any) -> float | None:
    lo, hi = ci_pair(ci)
    return None if lo is None or hi is None else (hi - lo) / 2


def fmt_hw(ci: Any) -> str:
    hw = half_width(ci)
    return "± unbounded" if hw is None else f"± {hw:.3f}"


def fmt_pgr(pgr: Any, ci: Any) -> str:
    """``0.660 [0.510, 0.840]``; just "undefined" when the point value is undefined."""
    x = finite(pgr)
    return UNDEFINED if x is None else f"{x:.3f} {fmt_ci(ci)}"


def fmt_pgr_hw(pgr: Any, ci: Any) -> str:
    """``0.660 [0.510, 0.840] (± 0.165)``: a headline number with its CI width beside it."""
    x = finite(pgr)
    return UNDEFINED if x is None else f"{fmt_pgr(x, ci)} ({fmt_hw(ci)})"


def fmt_p(p: Any) -> str:
    x = finite(p)
    if x is None:
        return UNDEFINED
    return "<0.001" if x < 0.001 else f"{x:.3f}"


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


# -- reading runs -------------------------------------------------------------------------------------


def parse_run(raw: Any, level: int = logging.WARNING) -> AdminRun | None:
    """One snapshot run as an :class:`AdminRun`, or None (logged at ``level``) when it does not
    validate. NaN/inf read as null; runs from before ``submitted_by`` existed are credited to their
    author."""
    if not isinstance(raw, dict):
        log.log(level, "snapshot run skipped: not a mapping (%s)", type(raw).__name__)
        return None
    data = json_safe(raw)
    data.setdefault("submitted_by", data.get("author"))
    data.setdefault("reproduction", data.get("submitted_by") != data.get("author"))
    data.pop("view", None)
    try:
        return AdminRun.model_validate(data)
    except ValidationError as exc:
        log.log(
            level,
            "snapshot run %s skipped: %d validation error(s): %s",
            raw.get("id"),
            exc.error_count(),
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]),
        )
        return None


def parse_runs(raws: Any, level: int = logging.WARNING) -> list[AdminRun]:
    return [r for r in (parse_run(x, level) for x in (raws or [])) if r is not None]


def score(run: AdminRun | None, part: Part, task: str | None = None) -> PartScore | None:
    return None if run is None else run.score(part, task)


def pgr_of(s: PartScore | None) -> tuple[float | None, CI]:
    """(PGR, CI) of one part; (None, (None, None)) when absent or undefined."""
    if s is None:
        return None, (None, None)
    return finite(s.pgr), ci_pair(s.pgr_ci)


def part_pgr(run: AdminRun | None, part: Part, task: str | None = None) -> tuple[float | None, CI]:
    return pgr_of(score(run, part, task))


def drop(run: AdminRun | None, task: str | None = None) -> float | None:
    """Public minus private PGR on the home task (positive: the public number flattered the run)."""
    pub, _ = part_pgr(run, "public", task)
    priv, _ = part_pgr(run, "private", task)
    return None if pub is None or priv is None else pub - priv


def vs_vanilla(run: AdminRun | None, part: Part = "private") -> VsVanilla | None:
    res = None if run is None else run.result()
    return None if res is None else res.vs_vanilla.get(part)


def run_label(run: AdminRun) -> str:
    """``author: idea_path (run id)``, the label used in tables and plots."""
    return f"{run.author}: {run.idea_path} (run {run.id})"


@dataclass(frozen=True)
class Comparison:
    """One run's private comparison with vanilla, Holm-corrected over the runs compared with it."""

    run: AdminRun
    rank: int  # 1-based, in the order compared (the public rank for the top k)
    vs: VsVanilla | None
    holm_p: float | None

    @property
    def confirmed(self) -> bool:
        """Holm-corrected private test rejects at ALPHA and the paired private accuracy CI lies above 0."""
        if self.vs is None or self.holm_p is None or self.holm_p > ALPHA:
            return False
        diff, lo = finite(self.vs.acc_diff), ci_pair(self.vs.acc_diff_ci)[0]
        return diff is not None and diff > 0 and lo is not None and lo > 0


def compare(candidates: list[AdminRun]) -> list[Comparison]:
    """Holm over every candidate; one without a private comparison (or a p-value) counts as p = 1, so
    it still widens the correction instead of silently shrinking it."""
    vs = [vs_vanilla(r) for r in candidates]
    ps = [1.0 if v is None or finite(v.p_value) is None else float(v.p_value) for v in vs]
    adj = holm_adjusted(ps) if ps else []
    return [
        Comparison(r, i, v, None if v is None or finite(v.p_value) is None else adj[i - 1])
        for i, (r, v) in enumerate(zip(candidates, vs, strict=True), 1)
    ]


# -- the snapshot, read once ----------------------------------------------------------------------------


def _k(v: Any) -> int:
    try:
        k = int(v)
    except (TypeError, ValueError):
        return DEFAULT_TOP_K
    return k if k >= 1 else DEFAULT_TOP_K


@dataclass(frozen=True)
class View:
    """A snapshot parsed once: its valid runs as AdminRuns and the campaign's task roles."""

    raw: dict
    runs: list[AdminRun]
    home: str | None
    visible: list[str]
    held_out: list[str]
    k: int

    @classmethod
    def of(cls, snapshot: dict | View | None) -> View:
        if isinstance(snapshot, View):
            return snapshot
        snap = snapshot if isinstance(snapshot, dict) else {}
        runs = parse_runs(snap.get("runs"))
        home = str(snap["home_task"]) if snap.get("home_task") else next((r.task for r in runs), None)

        def role_tasks(key: str, role: str) -> list[str]:
            out = [str(t) for t in (snap.get(key) or []) if t != home]
            for r in runs:
                out += [t for t, res in (r.results or {}).items() if res.role == role and t not in out]
            return [t for t in out if t != home]

        return cls(
            snap,
            runs,
            home,
            role_tasks("visible_tasks", "visible"),
            role_tasks("held_out_tasks", "held_out"),
            _k(snap.get("report_top_k", DEFAULT_TOP_K)),
        )

    # runs

    def researcher_runs(self) -> list[AdminRun]:
        return [r for r in self.runs if not r.baseline]

    def leaderboard(self) -> list[AdminRun]:
        """Done researcher runs (rejected ones included, marked by their review state) in the one rank
        order; runs without a public score last."""
        return ranked(self.researcher_runs())

    def baselines(self) -> dict[str, AdminRun]:
        """Done baseline runs keyed by method (idea_path); a re-scored method keeps its latest run."""
        out: dict[str, AdminRun] = {}
        for r in sorted((r for r in self.runs if r.baseline and r.status == "done"), key=lambda r: r.id):
            out[r.idea_path or r.commit or f"run {r.id}"] = r
        return out

    def vanilla(self) -> AdminRun | None:
        """The vanilla baseline run (train on weak labels): the bar every idea has to clear."""
        return self.baselines().get("vanilla")

    def best(self) -> AdminRun | None:
        return best(self.runs)

    def top_k(self) -> list[Comparison]:
        """The k best runs by the public rank, each compared with vanilla on private, Holm over the k."""
        return compare(top(self.runs, self.k))

    def headline(self) -> Comparison | None:
        """The first confirmed run in public order (selected on public, so its private is not)."""
        return next((c for c in self.top_k() if c.confirmed), None)

    def baseline_comparisons(self) -> dict[str, Comparison]:
        """Each non-vanilla baseline with a private comparison, Holm over those compared."""
        base = {m: r for m, r in self.baselines().items() if m != "vanilla" and vs_vanilla(r) is not None}
        return {m: c for m, c in zip(base, compare(list(base.values())), strict=True)}

    def researcher_names(self) -> list[str]:
        """Researchers in campaign order, plus any non-baseline run author the snapshot didn't list."""
        names = [str(r.get("name")) for r in self.researchers() if r.get("name")]
        for r in self.researcher_runs():
            if r.author not in names:
                names.append(r.author)
        return names

    def researchers(self) -> list[dict]:
        return [r for r in (self.raw.get("researchers") or []) if isinstance(r, dict)]

    def best_by_researcher(self) -> dict[str, AdminRun]:
        """Each researcher's best run by the one rule (absent when none qualifies)."""
        out = {}
        for name in self.researcher_names():
            b = best(r for r in self.runs if r.author == name)
            if b is not None:
                out[name] = b
        return out

    def ci_above_vanilla(self, run: AdminRun | None) -> bool:
        """True only when ``run``'s private CI lies wholly above vanilla's private CI. Anything undefined
        or missing is "no", so the claim is never made on missing evidence."""
        van = self.vanilla()
        if run is None or van is None:
            return False
        lo, hi = part_pgr(run, "private")[1][0], part_pgr(van, "private")[1][1]
        return lo is not None and hi is not None and lo > hi

    def flags(self) -> list[dict]:
        return [f for f in (self.raw.get("flags") or []) if isinstance(f, dict)]


# module-level shortcuts over a snapshot dict (or a View)


def runs(snapshot: dict | View) -> list[AdminRun]:
    return View.of(snapshot).runs


def leaderboard(snapshot: dict | View) -> list[AdminRun]:
    return View.of(snapshot).leaderboard()


def baselines(snapshot: dict | View) -> dict[str, AdminRun]:
    return View.of(snapshot).baselines()


def vanilla(snapshot: dict | View) -> AdminRun | None:
    return View.of(snapshot).vanilla()


def best_run(snapshot: dict | View) -> AdminRun | None:
    return View.of(snapshot).best()


def top_k(snapshot: dict | View) -> list[Comparison]:
    return View.of(snapshot).top_k()


def headline_run(snapshot: dict | View) -> Comparison | None:
    return View.of(snapshot).headline()


# -- summary (the demo's machine-readable result) ---------------------------------------------------


def _pc(pgr_ci: tuple[float | None, CI]) -> dict:
    pgr, ci = pgr_ci
    return {"pgr": pgr, "ci": list(ci)}


def _vs_json(vs: VsVanilla | None) -> dict | None:
    if vs is None:
        return None
    return {
        "acc_diff": finite(vs.acc_diff),
        "acc_diff_ci": list(ci_pair(vs.acc_diff_ci)),
        "pgr_diff": finite(vs.pgr_diff),
        "pgr_diff_ci": list(ci_pair(vs.pgr_diff_ci)),
        "p_value": finite(vs.p_value),
    }


def _held_json(v: View, r: AdminRun) -> dict:
    return {t: _pc(part_pgr(r, "private", t)) for t in v.held_out}


def _visible_json(v: View, r: AdminRun) -> dict:
    return {t: {p: _pc(part_pgr(r, p, t)) for p in ("public", "private")} for t in v.visible}


def _run_json(v: View, r: AdminRun) -> dict:
    return {
        "run_id": r.id,
        "author": r.author,
        "commit": r.commit,
        "idea_path": r.idea_path,
        "task": r.task,
        "public": _pc(part_pgr(r, "public")),
        "private": _pc(part_pgr(r, "private")),
        "drop": drop(r),
        "visible": _visible_json(v, r),
        "held_out": _held_json(v, r),
        "review": r.review_state,
    }


def _headline_json(v: View, c: Comparison | None) -> dict | None:
    if c is None:
        return None
    r = c.run
    (priv, priv_ci), (pub, pub_ci) = part_pgr(r, "private"), part_pgr(r, "public")
    return {
        "run_id": r.id,
        "author": r.author,
        "idea_path": r.idea_path,
        "commit": r.commit,
        "private_pgr": priv,
        "private_ci": list(priv_ci),
        "private_half_width": half_width(priv_ci),
        "public_pgr": pub,
        "public_ci": list(pub_ci),
        "drop": drop(r),
        "held_out": _held_json(v, r),
        "vs_vanilla": _vs_json(c.vs),
        "holm_p": c.holm_p,
        "private_ci_above_vanilla": v.ci_above_vanilla(r),
    }


def summary(snapshot: dict | View) -> dict:
    """The numbers a campaign is judged by (see the module docstring of :mod:`aar.lab.report` and
    ``HOW_TO_READ``): the leaderboard, the baselines, vanilla, the top k with their Holm-corrected
    private comparisons, and the headline (the first confirmed of the k, or null)."""
    v = View.of(snapshot)
    board = [{"rank": i, **_run_json(v, r)} for i, r in enumerate(v.leaderboard(), 1)]
    comps = v.baseline_comparisons()
    base = {}
    for m, r in v.baselines().items():
        c = comps.get(m)
        base[m] = {
            **{k: val for k, val in _run_json(v, r).items() if k not in ("author", "review", "task")},
            "vs_vanilla": _vs_json(c.vs if c else None),
            "holm_p": c.holm_p if c else None,
            "beats_vanilla": bool(c and c.confirmed),
        }
    van = v.vanilla()
    top_rows = [
        {
            "rank": c.rank,
            **_run_json(v, c.run),
            "vs_vanilla": _vs_json(c.vs),
            "holm_p": c.holm_p,
            "confirmed": c.confirmed,
        }
        for c in v.top_k()
    ]
    head = v.headline()
    return {
        "k": v.k,
        "alpha": ALPHA,
        "leaderboard": board,
        "baselines": base,
        "vanilla": None
        if van is None
        else {
            "run_id": van.id,
            "public": _pc(part_pgr(van, "public")),
            "private": _pc(part_pgr(van, "private")),
        },
        "top_k": top_rows,
        "confirmed": head is not None,
        "headline": _headline_json(v, head),
    }


def write_summary(path: Path, snapshot: dict | View) -> Path:
    return atomic_write(Path(path), _dump_json(summary(snapshot)))


# -- the headline sentence --------------------------------------------------------------------------


def _held_txt(v: View, r: AdminRun) -> str:
    parts = [f"{t} {fmt_pgr_hw(*part_pgr(r, 'private', t))}" for t in v.held_out]
    return ", ".join(parts) if parts else "none"


def headline(snapshot: dict | View) -> str:
    """One paragraph: the best confirmed run's private numbers, or plainly that none was confirmed."""
    v = View.of(snapshot)
    van = v.vanilla()
    van_txt = f"vanilla private PGR {fmt_pgr(*part_pgr(van, 'private'))}" if van else "vanilla: not available"
    comps = v.top_k()
    c = next((c for c in comps if c.confirmed), None)
    if c is None:
        if not comps:
            return f"no run was confirmed: no eligible official run has a defined public PGR ({van_txt})."
        return (
            f"no run was confirmed: none of the top {len(comps)} runs by public PGR beats vanilla on the "
            f"private part after Holm correction over {len(comps)} (alpha {ALPHA}) ({van_txt})."
        )
    r = c.run
    vs = c.vs
    assert vs is not None  # confirmed
    parts = [
        f"best confirmed run: {r.author}'s {r.idea_path} (run {r.id}), "
        f"number {c.rank} of the top {len(comps)} by public PGR",
        f"private PGR {fmt_pgr_hw(*part_pgr(r, 'private'))}",
        f"public PGR {fmt_pgr_hw(*part_pgr(r, 'public'))}",
        f"public -> private drop {fmt(drop(r))}",
        f"held-out PGR: {_held_txt(v, r)}",
        f"private accuracy vs vanilla {fmt_signed(vs.acc_diff)} {fmt_ci(vs.acc_diff_ci)}, "
        f"PGR diff {fmt_signed(vs.pgr_diff)} {fmt_ci(vs.pgr_diff_ci)}, Holm p {fmt_p(c.holm_p)}",
        van_txt,
        f"private CI above vanilla's private CI: {'yes' if v.ci_above_vanilla(r) else 'no'}",
    ]
    return parts[0] + ": " + "; ".join(parts[1:])


# -- terminal ---------------------------------------------------------------------------------------


def terminal_table(snapshot: dict | View) -> Table:
    """The top of the leaderboard (public rank) with private, drop, held-out and the top k's
    confirmation, then the vanilla row; the headline sentence is the caption."""
    v = View.of(snapshot)
    comps = {c.run.id: c for c in v.top_k()}
    table = Table(title=f"official leaderboard (home task: {v.home or '?'})", caption=headline(v))
    for col, justify in [("#", "right"), ("author", "left"), ("idea", "left"), ("run", "right")]:
        table.add_column(col, justify=justify)
    for col in ["public PGR [95% CI]", "private PGR [95% CI]", "drop", *v.held_out]:
        table.add_column(col, justify="right")
    table.add_column(f"Holm p (top {v.k})", justify="right")
    table.add_column("confirmed")
    table.add_column("review")
    for rank, r in enumerate(v.leaderboard()[:TERMINAL_ROWS], 1):
        style = "dim" if r.review_state == "rejected" else None
        table.add_row(*_terminal_cells(v, str(rank), r, comps.get(r.id)), style=style)
    van = v.vanilla()
    if van is not None:
        table.add_section()
        table.add_row(*_terminal_cells(v, "-", van, None), style="cyan")
    return table


def _terminal_cells(v: View, rank: str, r: AdminRun, c: Comparison | None) -> list[str]:
    return [
        rank,
        r.author,
        r.idea_path,
        str(r.id),
        fmt_pgr(*part_pgr(r, "public")),
        fmt_pgr(*part_pgr(r, "private")),
        fmt(drop(r)),
        *[fmt_pgr(*part_pgr(r, "private", t)) for t in v.held_out],
        "" if c is None else fmt_p(c.holm_p),
        "" if c is None else ("yes" if c.confirmed else "no"),
        r.review_state,
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


def _section_overview(v: View) -> str:
    snap = v.raw
    start, end = parse_time(snap.get("started_at")), parse_time(snap.get("finished_at"))
    took = (end - start).total_seconds() if start and end else None
    pair = list(snap.get("model_pair") or [])
    models = f"weak {_code(pair[0])} -> strong {_code(pair[1])}" if len(pair) >= 2 else "unknown"
    if snap.get("tier"):  # the tier as run (a campaign's ``auto`` resolved), e.g. bf16
        models += f" (tier {_code(snap['tier'])})"
    held = ", ".join(_code(t) for t in v.held_out) or "none"
    visible = ", ".join(_code(t) for t in v.visible) or "none"
    official = v.researcher_runs()
    by_status: dict[str, int] = {}
    for r in official:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    status_txt = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"
    flags = v.flags()
    n_open = sum(f.get("state") == "open" for f in flags)
    skipped = len(snap.get("runs") or []) - len(v.runs)
    lines = [
        f"- **when**: {fmt_time(snap.get('started_at'))} to {fmt_time(snap.get('finished_at'))}"
        f" ({fmt_duration(took)})",
        f"- **stop reason**: {snap.get('stop_reason') or 'unknown'}",
        f"- **home task**: {_code(v.home)}; **visible tasks**: {visible}; **held-out tasks**: {held}",
        f"- **models**: {models}",
        f"- **official runs**: {len(official)} ({status_txt}); **baselines**: {len(v.baselines())}",
        f"- **flags**: {len(flags)} ({n_open} open)",
    ]
    if skipped:
        lines.append(f"- **unreadable runs skipped**: {skipped} (not in the contract's shape; see the log)")
    return "\n".join(lines)


def _count(v: Any, fallback: Any = "?") -> Any:
    x = finite(v)
    return fallback if x is None else int(x)


def _section_researchers(v: View) -> str:
    best_of = v.best_by_researcher()
    rows = []
    listed = {str(r.get("name")): r for r in v.researchers()}
    for name in v.researcher_names():
        info = listed.get(name, {})
        b = best_of.get(name)
        backend = str(info.get("backend") or "?") + (f" / {info['model']}" if info.get("model") else "")
        spend = finite(info.get("spend_usd"))
        rows.append(
            [
                name,
                info.get("direction") or "",
                backend,
                info.get("status") or "?",
                f"${spend:.2f}" if spend is not None else "?",
                f"{int(info['tokens']):,}" if finite(info.get("tokens")) is not None else "?",
                _count(info.get("turns")),
                _count(info.get("official_runs"), sum(r.author == name for r in v.researcher_runs())),
                _count(info.get("posts")),
                f"{fmt_pgr(*part_pgr(b, 'public'))} (run {b.id})" if b else "none",
                fmt_pgr(*part_pgr(b, "private")) if b else "",
            ]
        )
    if not rows:
        return "_no researchers took part._"
    headers = ["researcher", "direction", "backend / model", "status", "spend", "tokens", "turns"]
    headers += ["official runs", "posts", "best public PGR [CI]", "its private PGR [CI]"]
    return md_table(headers, rows)


def _vs_cells(c: Comparison | None) -> list[str]:
    if c is None or c.vs is None:
        return ["not compared", "", "", ""]
    vs = c.vs
    return [
        f"{fmt_signed(vs.acc_diff)} {fmt_ci(vs.acc_diff_ci)}",
        UNDEFINED if finite(vs.pgr_diff) is None else f"{fmt_signed(vs.pgr_diff)} {fmt_ci(vs.pgr_diff_ci)}",
        fmt_p(vs.p_value),
        fmt_p(c.holm_p),
    ]


def _vs_headers(n: int) -> list[str]:
    return ["private acc diff vs vanilla [CI]", "private PGR diff [CI]", "p", f"Holm p (over {n})"]


def _section_top_k(v: View) -> str:
    comps = v.top_k()
    if not comps:
        return "_no eligible run (done, not rejected, defined public PGR) to compare._"
    rows = [
        [
            c.rank,
            c.run.id,
            c.run.author,
            c.run.idea_path,
            fmt_pgr(*part_pgr(c.run, "public")),
            fmt_pgr_hw(*part_pgr(c.run, "private")),
            fmt(drop(c.run)),
            *[fmt_pgr(*part_pgr(c.run, "private", t)) for t in v.held_out],
            *_vs_cells(c),
            "yes" if c.confirmed else "no",
        ]
        for c in comps
    ]
    headers = ["public rank", "run", "author", "idea", "public PGR [CI]", "private PGR [CI] (± half-width)"]
    headers += ["drop", *[f"{t} PGR [CI]" for t in v.held_out]]
    headers += _vs_headers(len(comps))
    return md_table(headers + ["confirmed"], rows)


def _section_leaderboard(v: View) -> str:
    board = v.leaderboard()
    if not board:
        return "_no official run finished._"
    rows = [
        [
            rank,
            r.author,
            r.idea_path,
            r.id,
            fmt_pgr(*part_pgr(r, "public")),
            fmt_pgr(*part_pgr(r, "private")),
            fmt(drop(r)),
            *[fmt_pgr(*part_pgr(r, "private", t)) for t in v.held_out],
            r.review_state,
        ]
        for rank, r in enumerate(board[:LEADERBOARD_ROWS], 1)
    ]
    headers = ["rank", "author", "idea", "run", "public PGR [CI]", "private PGR [CI]", "drop"]
    headers += [f"{t} PGR [CI]" for t in v.held_out] + ["review"]
    more = len(board) - LEADERBOARD_ROWS
    tail = f"\n\n_{more} more runs are in `snapshot.json`._" if more > 0 else ""
    return md_table(headers, rows) + tail


def _section_baselines(v: View) -> str:
    base = v.baselines()
    if not base:
        return "_no baseline was scored._"
    comps = v.baseline_comparisons()
    rows = []
    for method, r in sorted(base.items(), key=lambda kv: rank_key(kv[1])):
        c = comps.get(method)
        priv = score(r, "private")
        cmp_cells = ["(the reference)", "", "", ""] if method == "vanilla" else _vs_cells(c)
        rows.append(
            [
                method,
                r.id,
                fmt_pgr(*part_pgr(r, "public")),
                fmt_pgr(*part_pgr(r, "private")),
                fmt(priv.transfer_acc if priv else None),
                fmt(priv.weak_acc if priv else None),
                fmt(priv.ceiling_acc if priv else None),
                *[fmt_pgr(*part_pgr(r, "private", t)) for t in v.held_out],
                *cmp_cells,
                "" if method == "vanilla" else ("yes" if c and c.confirmed else "no"),
            ]
        )
    headers = ["method", "run", "public PGR [CI]", "private PGR [CI]", "private transfer acc", "weak acc"]
    headers += ["ceiling acc", *[f"{t} PGR [CI]" for t in v.held_out]]
    headers += _vs_headers(len(comps))
    return md_table(headers + ["beats vanilla"], rows)


def _section_unfinished(v: View) -> str | None:
    """Failed, cancelled and still-pending runs: a failure pattern is itself a finding."""
    rows = [
        [r.id, r.author, r.idea_path, r.status, _short(r.error or "", 120)]
        for r in sorted(v.runs, key=lambda r: r.id)
        if r.status != "done"
    ]
    return md_table(["run", "author", "idea", "status", "error"], rows) if rows else None


def _section_flags(v: View) -> str:
    flags = v.flags()
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
- **public / private / held-out**: the home task's `final` split has two disjoint parts. Researchers
  were shown (rounded, released) scores on the **public** part only; the **private** part was never
  shown to them while the campaign ran. **Held-out** tasks are other tasks nobody saw at all: every
  one of their `final` items is private. The **drop** is public minus private PGR: a large drop says
  the public number was fitted rather than earned.
- **selection on public only**: runs are ranked by the lower 95% CI bound of their *public* PGR (one
  lucky, wide interval does not win). The top k are chosen this way, so their private numbers are not
  selected on and estimate honestly what the choice is worth.
- **confirmed**: a top-k run whose paired comparison with vanilla on the private part (same items and
  seeds; accuracy difference with its 95% CI and p-value) rejects at 0.05 after **Holm** correction
  over the k runs compared, with a positive accuracy difference whose CI excludes 0. The headline is
  the first confirmed run in public order, not the best private one. Baselines are compared the same
  way, Holm-corrected over the baselines compared: "beats vanilla" only where Holm survives.
- **undefined** PGR: the ceiling-weak gap is under 3 standard errors, so the ratio would be noise,
  whatever its point value. Undefined runs sort last. A CI bound printed as `inf` is unbounded.
- **CIs** are 95% paired bootstrap intervals over items and seeds (weak, student and ceiling
  resampled together); "± x" is the half-width. "Private CI above vanilla's private CI" means the
  run's lower bound exceeds vanilla's upper bound: a conservative check next to the paired test.
- **review**: `verified` / `rejected` are the referee's verdicts; `unreviewed` runs are not yet
  checked. Flags are the referee's automatic integrity checks (see the flags table)."""


def render_markdown(
    snapshot: dict | View, images: dict[str, str], errors: dict[str, str] | None = None
) -> str:
    """The report text. ``images``: caption -> path relative to the report; ``errors``: caption ->
    why that plot is missing."""
    v = View.of(snapshot)
    parts = [
        f"# Campaign report: {v.raw.get('campaign') or 'unnamed'}",
        _section_overview(v),
        "## Headline",
        headline(v),
        f"### Top {v.k} by public PGR, confirmed on private",
        _section_top_k(v),
        "## Researchers",
        _section_researchers(v),
        "## Leaderboard (official runs, ranked on public home PGR)",
        _section_leaderboard(v),
        "## Baselines",
        _section_baselines(v),
    ]
    unfinished = _section_unfinished(v)
    if unfinished:
        parts += ["## Runs that did not finish", unfinished]
    parts += ["## Flags", _section_flags(v), "## Plots"]
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
    v = View.of(snapshot)
    images: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, caption, draw in plots.FIGURES:
        try:
            path = draw(v, out_dir / "plots" / f"{name}.png")
            images[caption] = path.relative_to(out_dir).as_posix()
        except Exception as exc:  # a broken figure must not cost the report
            log.warning("plot %s failed", name, exc_info=True)
            errors[caption] = f"{type(exc).__name__}: {exc}"
    return atomic_write(out_dir / "report.md", render_markdown(v, images, errors))
