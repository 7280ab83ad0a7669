"""The LoRA tier end to end: seconds and examples/s per stage, and the PGR with its CI, per task.

Stages: the weak teacher (LoRA on the weak model, trained on <= 100 weak_train labels, then scoring
every other split), the ceiling (LoRA on the strong model, student_train true labels, scoring final),
the students (the method's fixed LoRA student per seed on the teacher's labels, scoring final), and
scoring (the prediction passes inside those stages, summed). Model loading is inside the first stage
that uses each model. The reference cache is off, so every stage is measured, not read back.

    .venv/bin/python bench/lora_w2s.py                      # CPU: both tasks at 800 rows
    .venv/bin/python bench/lora_w2s.py --device cuda        # GPU: whole tasks, -> results/lora_w2s_gpu.json

On a GPU machine the one command above needs nothing from outside it: the weak model (SmolLM2-135M-
Instruct) and the student (gemma-3-270m) come from installed PyPI packages, converted once into aar's
model cache; the tasks come from installed packages too (``aar w2s fetch`` if they were never built).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from aar.w2s import defaults, experiment
from aar.w2s.experiment import prepare, run_method
from aar.w2s.students import lora

RESULTS = Path(__file__).parent / "results"


def _counters() -> dict[str, float]:
    return dict(lora.COUNTERS)


def _stage(name: str, start: float, before: dict[str, float]) -> dict[str, float]:
    seconds = time.perf_counter() - start
    after = lora.COUNTERS
    trained = after["train_examples"] - before["train_examples"]
    scored = after["score_examples"] - before["score_examples"]
    return {
        "stage": name,
        "seconds": round(seconds, 2),
        "train_examples": int(trained),
        "score_examples": int(scored),
        "examples_per_s": round((trained + scored) / seconds, 2) if seconds > 0 else None,
    }


def bench_task(task: str, args: argparse.Namespace) -> dict:
    """One task: prepare (teacher), ceiling, students; per-stage timings and the PGR."""
    stages = []
    total = time.perf_counter()
    before, start = _counters(), time.perf_counter()
    prep = prepare(
        task,
        "lora",
        max_rows=args.max_rows,
        weak_model=args.weak,
        strong_model=args.strong,
        show_progress=False,
        device=args.device,
    )
    stages.append(_stage("teacher", start, before))
    before, start = _counters(), time.perf_counter()
    prep.ceiling("final")
    stages.append(_stage("ceiling", start, before))
    before, start = _counters(), time.perf_counter()
    result = run_method(prep, args.method, args.seeds)
    stages.append(_stage("student", start, before))
    score_s = lora.COUNTERS["score_seconds"] - args._score_seconds0
    score_n = lora.COUNTERS["score_examples"] - args._score_examples0
    stages.append(
        {
            "stage": "scoring (inside the stages above)",
            "seconds": round(score_s, 2),
            "train_examples": 0,
            "score_examples": int(score_n),
            "examples_per_s": round(score_n / score_s, 2) if score_s > 0 else None,
        }
    )
    out = result.to_json()
    out["seconds"] = round(time.perf_counter() - total, 2)
    return {"task": task, "stages": stages, "result": out, "sizes": prep.task.sizes()}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tasks", nargs="+", default=[defaults.HOME_TASK, *defaults.HELD_OUT_TASKS[:1]])
    parser.add_argument("--max-rows", type=int, default=None, help="default: 800 on CPU, every row on CUDA")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--method", default="vanilla")
    parser.add_argument("--weak", default=defaults.TIERS["lora"].weak)
    parser.add_argument("--strong", default=defaults.TIERS["lora"].strong)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.max_rows is None and args.device == "cpu":
        # the smallest size at which the home task has a dev split (its rows are split by film: below
        # ~700 rows dev is empty and the task cannot be prepared on any tier)
        args.max_rows = 800
    experiment.REFERENCE_CACHE = False  # measure the teacher and the ceiling, never read them back
    out_path = args.out or RESULTS / f"lora_w2s_{'gpu' if args.device.startswith('cuda') else 'cpu'}.json"
    report = {
        "device": args.device,
        "host": platform.node(),
        "tier": {"weak": args.weak, "strong": args.strong, "params": dict(defaults.LORA_PARAMS)},
        "method": args.method,
        "seeds": args.seeds,
        "max_rows": args.max_rows,
        "tasks": [],
    }
    if args.device.startswith("cuda"):
        import torch

        report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    for task in args.tasks:
        args._score_seconds0 = lora.COUNTERS["score_seconds"]
        args._score_examples0 = lora.COUNTERS["score_examples"]
        try:
            entry = bench_task(task, args)
        except (KeyError, ValueError, RuntimeError) as exc:  # one task's failure must not lose the rest
            entry = {"task": task, "error": f"{type(exc).__name__}: {exc}"}
        report["tasks"].append(entry)
        print(f"\n== {task} ==")
        if "error" in entry:
            print(entry["error"])
            continue
        for s in entry["stages"]:
            print(f"  {s['stage']:<36} {s['seconds']:>8.1f} s  {s['examples_per_s'] or 0:>8.1f} examples/s")
        r = entry["result"]
        ci = r["pgr_ci"]
        print(
            f"  weak {r['weak_acc']:.3f}  ceiling {r['ceiling_acc']:.3f}  transfer {r['transfer_acc']:.3f}  "
            f"PGR {_r(r['pgr'])} CI [{_r(ci[0])}, {_r(ci[1])}]"
            f"  ({r['n_test']} items, {entry['result']['seconds']:.0f} s)"
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1))  # after every task: a crash keeps the rest
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
