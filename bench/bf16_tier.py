"""The bf16 tier against the README's testbed numbers: every number inside its fp32 CI?

Issue 14 allows lower-precision inference only as a separate, named tier whose embeddings keep cosine
>= 0.99 with the fp32 ones (``bench/features.py`` measures that) and with which every testbed number of
the README stays inside its CI. The README's testbed numbers come from ``bench/testbed_selection.py``
(``bench/results/home_size.json`` for the home task, ``bench/results/heldout_selection.json`` for
navigate and navigate_turns; the default pair minilm-l3 -> mpnet, 100 teacher labels, 3 seeds, private
part of final). This re-measures each of them the same way (``testbed_selection.candidate / prepare /
measure``) with the strong model swapped for ``mpnet-bf16``, and, as a control, with fp32 ``mpnet`` as
it computes today (the same code, so a difference between the README and today is not blamed on bf16).

For each task and method: weak acc, ceiling acc, transfer acc and PGR, with the fp32 95% CI that the
bf16 number must sit in (pass: inside, bounds included), and the gap's z (no CI; shown, not judged).
The weak model (minilm-l3) is the same on both tiers, so weak acc must match exactly. Nothing is tuned:
the tier's hyper-parameters are the default tier's.

    .venv/bin/python bench/bf16_tier.py            # writes bench/results/bf16_tier.json and .md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from aar.w2s import defaults
from aar.w2s.experiment import prepare

HERE = Path(__file__).resolve().parent
REFERENCES = (HERE / "results" / "home_size.json", HERE / "results" / "heldout_selection.json")
QUANTITIES = (
    ("weak_acc", "weak_acc_ci"),
    ("ceiling_acc", "ceiling_acc_ci"),
    ("transfer_acc", "transfer_acc_ci"),
)


def _selection():
    spec = importlib.util.spec_from_file_location("testbed_selection", HERE / "testbed_selection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["testbed_selection"] = module
    spec.loader.exec_module(module)
    return module


def references() -> list[dict]:
    """The README's rows: the default pair, the default teacher budget, the default sizes."""
    rows = []
    for path in REFERENCES:
        for r in json.loads(path.read_text()):
            if r["strong_model"] == "mpnet" and r["weak_train_limit"] == defaults.WEAK_TRAIN_LIMIT:
                rows.append({**r, "source": str(path.relative_to(HERE.parent))})
    return rows


def inside(value: float | None, ci: list) -> bool | None:
    if value is None or ci is None or None in ci:
        return None
    return bool(ci[0] <= value <= ci[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strong", default=defaults.TIERS["bf16"].strong)
    parser.add_argument("--out", default=str(HERE / "results" / "bf16_tier.json"))
    args = parser.parse_args()
    sel = _selection()
    start = time.perf_counter()
    checks, runs = [], []
    for ref in references():
        task_obj = sel.candidate(ref["task"], ref["rows"], ref["role"])
        measured = {}
        for strong in ("mpnet", args.strong):
            prep = prepare(
                task_obj,
                weak_model=ref["weak_model"],
                strong_model=strong,
                weak_train_limit=ref["weak_train_limit"],
                show_progress=False,
            )
            measured[strong] = sel.measure(prep, ref["method"], ref["seeds"])
            runs.append({**measured[strong], "role": ref["role"], "rows": ref["rows"]})
        ours, today = measured[args.strong], measured["mpnet"]
        for value, ci in (*QUANTITIES, ("pgr", "pgr_ci"), ("gap_z", None)):
            checks.append(
                {
                    "task": ref["task"],
                    "method": ref["method"],
                    "quantity": value.removesuffix("_acc") if value.endswith("_acc") else value,
                    "fp32_readme": ref[value],
                    "fp32_readme_ci": ref[ci] if ci else None,
                    "fp32_today": today[value],
                    "bf16": ours[value],
                    "inside_fp32_ci": inside(ours[value], ref[ci]) if ci else None,
                    "source": ref["source"],
                }
            )
    judged = [c for c in checks if c["inside_fp32_ci"] is not None]
    result = {
        "strong": args.strong,
        "passed": all(c["inside_fp32_ci"] for c in judged),
        "n_checked": len(judged),
        "n_outside": sum(not c["inside_fp32_ci"] for c in judged),
        "conditions": {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": round(time.perf_counter() - start, 1),
            "load_average_end": list(os.getloadavg()),
            "cores": os.cpu_count(),
        },
        "checks": checks,
        "runs": runs,
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def _f(v: float | None) -> str:
    return "undef" if v is None else f"{v:.3f}"


def markdown(result: dict) -> str:
    lines = [
        f"bf16 tier (strong `{result['strong']}`) vs the README's fp32 testbed numbers: "
        f"{result['n_checked'] - result['n_outside']} of {result['n_checked']} inside their fp32 95% CI "
        f"({'all pass' if result['passed'] else 'NOT all inside'}); private part of final, 3 seeds, "
        "100 teacher labels. `fp32 today` re-measures the README's fp32 number with today's code.",
        "",
        "| task | method | quantity | fp32 (README) | fp32 95% CI | fp32 today | bf16 | inside CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["checks"]:
        ci = c["fp32_readme_ci"]
        verdict = {True: "pass", False: "**FAIL**", None: "(no CI)"}[c["inside_fp32_ci"]]
        lines.append(
            f"| {c['task']} | {c['method']} | {c['quantity']} | {_f(c['fp32_readme'])} | "
            + (f"[{_f(ci[0])}, {_f(ci[1])}]" if ci else "-")
            + f" | {_f(c['fp32_today'])} | {_f(c['bf16'])} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
