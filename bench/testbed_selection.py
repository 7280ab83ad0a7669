"""Choose the default tasks and model pair by measurement.

Sweeps candidate tasks x (weak, strong) model pairs x weak-teacher label budgets and prints weak acc,
ceiling acc, vanilla transfer acc and PGR, each with a 95% paired-bootstrap CI, plus whether the
ceiling-weak gap is significantly positive. Features are cached, so a re-run only recomputes heads.

    .venv/bin/python bench/testbed_selection.py                       # the full sweep (slow first time)
    .venv/bin/python bench/testbed_selection.py --models minilm-l3,minilm-l6 --tasks fever,epistemic

Writes the table as JSON to bench/results/testbed_selection.json (the README quotes it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from aar.w2s.experiment import prepare, run_method
from aar.w2s.features import features
from aar.w2s.tasks import load_task

DEFAULT_TASKS = (
    "sentiment_hotels,sentiment_medicine,sentiment_products,sentiment_school,fever,epistemic,"
    "fallacy,strategyqa,vitaminc,math_answer,parentheses,humaneval_match,hhh,sports"
)
DEFAULT_PAIRS = (
    "minilm-l3:minilm-l6,minilm-l3:mpnet,minilm-l3:gemma3,smollm2:gemma3,smollm2:mpnet,"
    "minilm-l6:mpnet,minilm-l6:gemma3"
)


def fmt(v: float | None, ci: tuple | list | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "undef"
    if ci is None or ci[0] is None or (isinstance(ci[0], float) and math.isnan(ci[0])):
        return f"{v:.3f}"
    return f"{v:.3f} [{ci[0]:.2f},{ci[1]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, help="weak:strong,...")
    parser.add_argument(
        "--weak-limits", default="all,100", help="weak_train labels for the teacher: all or N"
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default="bench/results/testbed_selection.json")
    parser.add_argument("--extract-only", action="store_true", help="only fill the feature cache")
    args = parser.parse_args()

    console = Console(width=200)
    tasks = [t for t in args.tasks.split(",") if t]
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",") if p]
    limits = [None if v == "all" else int(v) for v in args.weak_limits.split(",")]
    models = list(dict.fromkeys(m for pair in pairs for m in pair))

    # 1. features: model-major so each model loads once; smallest models first
    for model in models:
        for task in tasks:
            rows = load_task(task).rows
            features(model, [r.text for r in rows])
    if args.extract_only:
        return

    # 2. heads and statistics
    results = []
    table = Table(title="testbed selection (vanilla transfer; 95% CI)")
    for col in (
        "task",
        "weak -> strong",
        "teacher labels",
        "n_test",
        "weak acc",
        "ceiling acc",
        "vanilla acc",
        "gap sig.",
        "PGR",
    ):
        table.add_column(col)
    for task, (weak, strong), limit in itertools.product(tasks, pairs, limits):
        start = time.perf_counter()
        prep = prepare(
            task, weak_model=weak, strong_model=strong, weak_train_limit=limit, show_progress=False
        )
        res = run_method(prep, "vanilla", seeds=args.seeds).to_json()
        res.update(weak_train_limit=limit, seconds=time.perf_counter() - start)
        results.append(res)
        significant = res["gap_ci"][0] > 0
        table.add_row(
            task,
            f"{weak} -> {strong}",
            str(limit or "all"),
            str(res["n_test"]),
            fmt(res["weak_acc"], res["weak_acc_ci"]),
            fmt(res["ceiling_acc"], res["ceiling_acc_ci"]),
            fmt(res["transfer_acc"], res["transfer_acc_ci"]),
            "yes" if significant else "no",
            fmt(res["pgr"], res["pgr_ci"]),
        )
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(markdown(results))
    console.print(f"wrote {out} and {out.with_suffix('.md')}")


def markdown(results: list[dict]) -> str:
    """The table as Markdown, for the README."""
    lines = [
        "| task | weak -> strong | teacher labels | n_test | weak acc | ceiling acc | vanilla acc "
        "| gap > 0 | PGR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['task']} | {r['weak_model']} -> {r['strong_model']} | {r['weak_train_limit'] or 'all'} | "
            f"{r['n_test']} | {fmt(r['weak_acc'], r['weak_acc_ci'])} | "
            f"{fmt(r['ceiling_acc'], r['ceiling_acc_ci'])} | "
            f"{fmt(r['transfer_acc'], r['transfer_acc_ci'])} | {'yes' if r['gap_ci'][0] > 0 else 'no'} | "
            f"{fmt(r['pgr'], r['pgr_ci'])} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
