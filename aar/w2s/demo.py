"""The default W2S experiment: every baseline on the home task and the held-out tasks.

``aar w2s demo`` prints one table per task (private part of final, each method against vanilla,
Holm-corrected) and writes ``runs/w2s-demo/results.json`` and a Markdown summary beside it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from aar.w2s import defaults
from aar.w2s.experiment import prepare, run_method
from aar.w2s.methods import builtin_methods
from aar.w2s.pgr import compare_methods, holm


def _f(v: float | None) -> str:
    return "undef" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _ci(ci: list) -> str:
    lo, hi = (None if v is None or math.isnan(v) else v for v in ci)
    if lo is None and hi is None:
        return "-"
    return f"[{'-inf' if lo is None else f'{lo:.2f}'}, {'inf' if hi is None else f'{hi:.2f}'}]"


def run_demo(
    fast: bool = False, seeds: int = 3, console: Console | None = None, out_dir: Path = Path("runs/w2s-demo")
) -> list[dict]:
    """Every built-in method on each default task, scored on the *private* part of ``final`` (the
    part that carries a campaign's headline), each compared with vanilla on the same items and seeds
    and Holm-corrected over the methods compared: "beats vanilla" only where Holm survives."""
    console = console or Console()
    tier = "fast" if fast else "default"
    weak, strong = defaults.MODEL_PAIRS[tier]
    tasks = [(defaults.HOME_TASK, "home"), *[(t, "held_out") for t in defaults.HELD_OUT_TASKS]]
    console.print(
        f"[bold]aar W2S demo[/bold]: weak teacher {weak} -> strong student {strong}, {seeds} seeds, "
        f"home task {defaults.HOME_TASK}, held-out {', '.join(defaults.HELD_OUT_TASKS)}; "
        "scored on each task's private part"
    )
    results: list[dict] = []
    start = time.perf_counter()
    for task, role in tasks:
        prep = prepare(task, tier, role=role)
        keep = prep.part_mask("private")
        final = prep.splits["final"]
        labels, weak_p, ceil_p = (
            final.labels[keep],
            prep.weak_probs["final"][keep],
            prep.ceiling("final")[keep],
        )
        runs = {m: run_method(prep, m, seeds=seeds, part="private") for m in builtin_methods()}
        vanilla = runs["vanilla"].student_probs[:, keep]
        compared = [m for m in runs if m not in ("vanilla", "ceiling")]
        cmps = {
            m: compare_methods(labels, weak_p, ceil_p, runs[m].student_probs[:, keep], vanilla)
            for m in compared
        }
        survives = dict(zip(compared, holm([cmps[m].p_value for m in compared]), strict=True))
        table = Table(title=f"{task} ({prep.task.domain}; {int(keep.sum())} private final items)")
        for col in (
            "method",
            "transfer acc",
            "PGR [95% CI]",
            "± half-width",
            "vs vanilla (acc)",
            "p",
            "Holm",
        ):
            table.add_column(col)
        for method, run in runs.items():
            res = run.to_json()
            cmp = cmps.get(method)
            res["part"] = "private"
            res["vs_vanilla"] = (
                None
                if cmp is None
                else {
                    "acc_diff": cmp.acc_diff,
                    "acc_diff_ci": list(cmp.acc_diff_ci),
                    "p_value": cmp.p_value,
                    "beats_vanilla_holm": bool(survives[method] and cmp.acc_diff > 0),
                }
            )
            results.append(res)
            table.add_row(
                method,
                _f(res["transfer_acc"]),
                f"{_f(res['pgr'])} {_ci(res['pgr_ci'])}",
                _half(res["pgr_ci"]),
                "-" if cmp is None else f"{cmp.acc_diff:+.3f} {_ci(list(cmp.acc_diff_ci))}",
                "-" if cmp is None else f"{cmp.p_value:.4f}",
                "-" if cmp is None else ("beats" if res["vs_vanilla"]["beats_vanilla_holm"] else "no"),
            )
        first = results[-len(runs)]
        table.caption = (
            f"weak {_f(first['weak_acc'])}, ceiling {_f(first['ceiling_acc'])}, "
            f"gap CI {_ci(first['gap_ci'])}; Holm over {len(compared)} methods"
        )
        console.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# aar W2S demo",
        "",
        f"weak {weak} -> strong {strong}, {seeds} seeds, private part of final; "
        "'beats vanilla' is Holm-corrected over the methods of each task",
        "",
        "| task | method | n | weak acc | ceiling acc | transfer acc | PGR [95% CI] | ± | vs vanilla "
        "| Holm |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        v = r["vs_vanilla"]
        vs = "-" if v is None else f"{v['acc_diff']:+.3f} (p {v['p_value']:.4f})"
        holm_txt = "-" if v is None else ("beats" if v["beats_vanilla_holm"] else "no")
        lines.append(
            f"| {r['task']} | {r['method']} | {r['n_test']} | {_f(r['weak_acc'])} | {_f(r['ceiling_acc'])} | "
            f"{_f(r['transfer_acc'])} | {_f(r['pgr'])} {_ci(r['pgr_ci'])} | {_half(r['pgr_ci'])} | {vs} "
            f"| {holm_txt} |"
        )
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {out_dir / 'summary.md'} and results.json in {time.perf_counter() - start:.0f} s")
    return results


def _half(ci: list) -> str:
    lo, hi = ci
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)) or math.isnan(hi):
        return "unbounded"
    return f"±{(hi - lo) / 2:.2f}"
