"""Choose the default tasks, their sizes and the model pair by measurement.

Sweeps candidate tasks x sizes x (weak, strong) model pairs x weak-teacher label budgets x methods and
prints, on the items that carry the headline (the private part of ``final``), weak acc, the
majority-class rate and whether the weak teacher beats it, ceiling acc, the method's transfer acc, the
ceiling-weak gap in standard errors (PGR is defined iff it exceeds ``aar.w2s.pgr.MIN_GAP_Z``) and
PGR with its 95% paired-bootstrap CI. Features are cached, so a re-run only recomputes heads.

Each task is split with its role's profile (``aar.w2s.tasks.PROFILES``): ``--role auto`` splits the
home task as home and every other candidate as held out (no dev, all of final private).

    .venv/bin/python bench/testbed_selection.py                       # the held-out candidates
    .venv/bin/python bench/testbed_selection.py --tasks fallacy,sports --sizes spec,3000
    # the home task's size (bench/results/home_size.json):
    .venv/bin/python bench/testbed_selection.py --tasks sentiment_movies --sizes 5000,7000,9000 \\
        --methods vanilla,zeroshot_prior --seeds 3 --out bench/results/home_size.json

Writes the table as JSON (``--out``) and as Markdown beside it.
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

from aar.w2s import defaults
from aar.w2s.experiment import prepare, run_method, teacher_beats_majority
from aar.w2s.features import features
from aar.w2s.tasks import Task, get_spec, profile_for, subsample_groups

DEFAULT_TASKS = "math_answer,strategyqa,fallacy,sports,vitaminc,parentheses,epistemic"
DEFAULT_PAIRS = ":".join(defaults.MODEL_PAIRS["default"])
COLUMNS = (
    "task",
    "role",
    "rows",
    "weak -> strong",
    "teacher labels",
    "method",
    "n scored",
    "weak acc",
    "majority",
    "weak > majority",
    "weak top class",
    "ceiling acc",
    "transfer acc",
    "gap z",
    "PGR",
    "PGR half-width",
)


def fmt(v: float | None, ci: tuple | list | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "undef"
    if ci is None or ci[0] is None or (isinstance(ci[0], float) and math.isnan(ci[0])):
        return f"{v:.3f}"
    return f"{v:.3f} [{ci[0]:.2f},{ci[1]:.2f}]"


def fmt_ci(v: float | None, ci: list) -> str:
    """A PGR with a CI whose sides may be unbounded (None)."""
    if v is None:
        return "undef"
    side = ["-inf" if ci[0] is None else f"{ci[0]:.2f}", "+inf" if ci[1] is None else f"{ci[1]:.2f}"]
    return f"{v:.3f} [{side[0]},{side[1]}]"


def candidate(name: str, size: int | None, role: str) -> Task:
    """The task as ``load_task(name, role=role)`` builds it, but with any size (even above the spec's
    ``max_rows``), so a bigger task can be measured before it is registered."""
    spec = get_spec(name)
    rows = subsample_groups(spec.build(), size or spec.max_rows, seed=spec.split_seed)
    profile = profile_for(role)
    return Task(
        name=spec.name,
        domain=spec.domain,
        rows=rows,
        role=role,  # type: ignore[arg-type]
        description=spec.description,
        split_seed=spec.split_seed,
        fractions=dict(profile.fractions),
        private_fraction=profile.private_fraction,
    )


def measure(prep, method: str, seeds: int) -> dict:
    """One method on the private part of final, with the weak teacher's majority check there."""
    res = run_method(prep, method, seeds=seeds, part="private").to_json()
    mask = prep.final_private_mask()
    labels, weak = prep.splits["final"].labels[mask], prep.weak_probs["final"][mask]
    beats, acc, majority = teacher_beats_majority(labels, weak)
    top = float(max((weak >= 0.5).mean(), (weak < 0.5).mean()))
    ci = res["pgr_ci"]
    half = None if res["pgr"] is None or None in ci else (ci[1] - ci[0]) / 2
    res.update(
        majority_rate=majority, weak_beats_majority=beats, weak_top_class_share=top, pgr_half_width=half
    )
    assert math.isclose(acc, res["weak_acc"])
    return res


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument(
        "--sizes", default="spec", help="rows per task: spec (its max_rows) or N, comma-separated"
    )
    parser.add_argument("--role", default="auto", choices=("auto", "home", "held_out"))
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, help="weak:strong,...")
    parser.add_argument(
        "--weak-limits",
        default=str(defaults.WEAK_TRAIN_LIMIT),
        help="weak_train labels for the teacher: all or N",
    )
    parser.add_argument("--methods", default="vanilla")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/heldout_selection.json")
    parser.add_argument("--extract-only", action="store_true", help="only fill the feature cache")
    args = parser.parse_args()

    console = Console(width=220)
    tasks = [t for t in args.tasks.split(",") if t]
    sizes = [None if v == "spec" else int(v) for v in args.sizes.split(",")]
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",") if p]
    limits = [None if v == "all" else int(v) for v in args.weak_limits.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    models = list(dict.fromkeys(m for pair in pairs for m in pair))

    def role_of(task: str) -> str:
        if args.role != "auto":
            return args.role
        return "home" if task == defaults.HOME_TASK else "held_out"

    # 1. features: model-major so each model loads once; one extraction at a time
    for model in models:
        for task, size in itertools.product(tasks, sizes):
            features(model, [r.text for r in candidate(task, size, role_of(task)).rows])
    if args.extract_only:
        return

    # 2. heads and statistics
    results = []
    table = Table(title="testbed selection (private part of final; 95% CI)")
    for col in COLUMNS:
        table.add_column(col)
    for task, size, (weak, strong), limit in itertools.product(tasks, sizes, pairs, limits):
        role = role_of(task)
        task_obj = candidate(task, size, role)
        prep = prepare(
            task_obj, weak_model=weak, strong_model=strong, weak_train_limit=limit, show_progress=False
        )
        for method in methods:
            start = time.perf_counter()
            res = measure(prep, method, args.seeds)
            res.update(
                role=role,
                rows=len(task_obj.rows),
                sizes=task_obj.sizes(),
                weak_train_limit=limit,
                seconds=time.perf_counter() - start,
            )
            results.append(res)
            table.add_row(*row_cells(res))
            console.print(" | ".join(row_cells(res)))
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(markdown(results))
    console.print(f"wrote {out} and {out.with_suffix('.md')}")


def row_cells(r: dict) -> list[str]:
    half = r["pgr_half_width"]
    return [
        r["task"],
        r["role"],
        str(r["rows"]),
        f"{r['weak_model']} -> {r['strong_model']}",
        str(r["weak_train_limit"] or "all"),
        r["method"],
        str(r["n_test"]),
        fmt(r["weak_acc"], r["weak_acc_ci"]),
        f"{r['majority_rate']:.3f}",
        "yes" if r["weak_beats_majority"] else "NO",
        f"{r['weak_top_class_share']:.2f}",
        fmt(r["ceiling_acc"], r["ceiling_acc_ci"]),
        fmt(r["transfer_acc"], r["transfer_acc_ci"]),
        "inf" if r["gap_z"] is None else f"{r['gap_z']:.1f}",
        fmt_ci(r["pgr"], r["pgr_ci"]),
        "-" if half is None else f"{half:.3f}",
    ]


def markdown(results: list[dict]) -> str:
    """The table as Markdown, for the README."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in results]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
