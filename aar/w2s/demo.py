"""The default W2S experiment: every baseline on the home task and the held-out tasks.

This is what ``make demo`` runs until the lab's demo campaign exists. It prints one table per task
and writes ``runs/w2s-demo/results.json`` and a Markdown summary beside it.
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


def _f(v: float | None) -> str:
    return "undef" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _ci(ci: list) -> str:
    return "-" if ci[0] is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def run_demo(
    fast: bool = False, seeds: int = 3, console: Console | None = None, out_dir: Path = Path("runs/w2s-demo")
) -> list[dict]:
    console = console or Console()
    tier = "fast" if fast else "default"
    weak, strong = defaults.MODEL_PAIRS[tier]
    tasks = [defaults.HOME_TASK, *defaults.HELD_OUT_TASKS]
    console.print(
        f"[bold]aar W2S demo[/bold]: weak teacher {weak} -> strong student {strong}, {seeds} seeds, "
        f"home task {defaults.HOME_TASK}, held-out {', '.join(defaults.HELD_OUT_TASKS)}"
    )
    results: list[dict] = []
    start = time.perf_counter()
    for task in tasks:
        prep = prepare(task, tier)
        table = Table(title=f"{task} ({prep.task.domain}; {len(prep.splits['final'].ids)} final items)")
        for col in ("method", "transfer acc", "PGR", "PGR 95% CI", "seconds"):
            table.add_column(col)
        first = None
        for method in builtin_methods():
            res = run_method(prep, method, seeds=seeds).to_json()
            results.append(res)
            first = first or res
            table.add_row(
                method, _f(res["transfer_acc"]), _f(res["pgr"]), _ci(res["pgr_ci"]), f"{res['seconds']:.1f}"
            )
        table.caption = (
            f"weak {_f(first['weak_acc'])}, ceiling {_f(first['ceiling_acc'])}, gap CI {_ci(first['gap_ci'])}"
        )
        console.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# aar W2S demo",
        "",
        f"weak {weak} -> strong {strong}, {seeds} seeds",
        "",
        "| task | method | weak acc | ceiling acc | transfer acc | PGR | PGR 95% CI |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['task']} | {r['method']} | {_f(r['weak_acc'])} | {_f(r['ceiling_acc'])} | "
        f"{_f(r['transfer_acc'])} | {_f(r['pgr'])} | {_ci(r['pgr_ci'])} |"
        for r in results
    ]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {out_dir / 'summary.md'} and results.json in {time.perf_counter() - start:.0f} s")
    return results
