"""Inside the sandbox: load the public task data as an IdeaContext and run an idea on dev inputs.

    python -m aar.agents.devkit predict ideas/my_idea.py --task sentiment_movies [--seed 0]

prints one JSON object {"task", "n", "predictions": {id: p}, "summary"}, the input of the
``dev_evaluate`` tool. ``--task`` is the home task or a visible one: those are the tasks with public
data (held-out tasks have none, and no dev score). The summary describes the predictions (mean,
agreement with the weak labels' hard decisions on dev is *not* available: dev has no weak labels
here) without any label.
From your own code::

    from aar.agents.devkit import load_context
    ctx = load_context("sentiment_movies", split="dev", seed=0)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from aar.w2s.methods import IdeaContext, IdeaError, resolve_method, validate_predictions
from aar.w2s.student import HeadProtocol
from aar.w2s.students import StudentSpec


def public_dir() -> Path:
    return Path(os.environ.get("AAR_PUBLIC", "public"))


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_context(
    task: str, split: str = "dev", seed: int = 0, *, scratch_dir: Path | None = None
) -> IdeaContext:
    """student_train (features, weak labels) as training data; ``split`` inputs as the items to predict."""
    if split != "dev":
        raise ValueError("locally only dev can be predicted (final is scored by official runs)")
    tdir = public_dir() / task
    if not (tdir / "data.npz").exists():
        known = sorted(p.name for p in public_dir().iterdir()) if public_dir().exists() else []
        raise FileNotFoundError(f"no public data for task {task!r} in {public_dir()} (tasks: {known})")
    card = json.loads((tdir / "card.json").read_text())
    train = _jsonl(tdir / "student_train.jsonl")
    dev = _jsonl(tdir / "dev.jsonl")
    with np.load(tdir / "data.npz", allow_pickle=False) as data:
        train_x, dev_x, weak, c = data["train_x"], data["dev_x"], data["weak"], float(data["protocol_c"])
        student = json.loads(str(data["student"])) if "student" in data.files else None
    return IdeaContext(
        task=task,
        domain=card.get("domain", ""),
        train_ids=[r["id"] for r in train],
        train_texts=[r["text"] for r in train],
        train_x=train_x,
        weak=weak,
        test_ids=[r["id"] for r in dev],
        test_texts=[r["text"] for r in dev],
        test_x=dev_x,
        seed=seed,
        protocol=HeadProtocol(c=c, seed=seed),
        scratch_dir=scratch_dir,
        strong_model=card.get("strong_model", ""),
        student=StudentSpec.from_json(student) if student else None,  # a text tier's fixed student
    )


def predict(idea: str, task: str, seed: int = 0) -> dict:
    ctx = load_context(task, "dev", seed, scratch_dir=Path(os.environ.get("AAR_SCRATCH", ".")))
    fn = resolve_method(idea)
    preds = validate_predictions(fn(ctx), ctx.test_ids)
    hard = preds >= 0.5
    summary = {
        "mean_p": round(float(preds.mean()), 4),
        "positive_rate": round(float(hard.mean()), 4),
        "weak_positive_rate_train": round(float((ctx.weak >= 0.5).mean()), 4),
        "confident_frac": round(float((np.abs(preds - 0.5) > 0.4).mean()), 4),
    }
    return {
        "task": task,
        "n": len(preds),
        "seed": seed,
        "predictions": {i: round(float(p), 6) for i, p in zip(ctx.test_ids, preds, strict=True)},
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aar.agents.devkit")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict", help="run an idea on the dev inputs and print its predictions as JSON")
    p.add_argument("idea")
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("tasks", help="list the tasks with public data")
    args = parser.parse_args(argv)
    if args.cmd == "tasks":
        print(json.dumps(sorted(p.name for p in public_dir().iterdir() if (p / "data.npz").exists())))
        return 0
    try:
        out = predict(args.idea, args.task, args.seed)
    except (IdeaError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
