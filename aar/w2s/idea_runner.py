"""Run an idea on a label-free context file: the entry point of sandboxed official runs.

The referee writes an :class:`IdeaContext` *without labels* to ``context.npz`` (``save_context``),
then runs ``python -m aar.w2s.idea_runner context.npz idea.py preds.npy`` inside the sandbox, and
scores the returned predictions itself. The untrusted code therefore never holds a label: the file it
is given has none, and the label files are not visible in its sandbox.

On a text tier (LoRA) the file also carries the student spec (``StudentSpec.to_json``: kind, model
spec, fixed hyper-parameters, prompt, label words, device), so the sandboxed run rebuilds exactly the
student the testbed uses. Its model is read from site-packages and aar's model cache
(``aar.w2s.paths.models_dir``), never from a network: the sandbox must bind those read-only, and see
the GPU device nodes when ``device`` is cuda.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from aar.w2s.methods import IdeaContext, IdeaError, resolve_method, validate_predictions
from aar.w2s.student import HeadProtocol
from aar.w2s.students import StudentSpec


def save_context(ctx: IdeaContext, path: Path) -> None:
    """Write everything an idea may see (never ``true_labels``) to one npz file."""
    meta = {
        "task": ctx.task,
        "domain": ctx.domain,
        "train_ids": ctx.train_ids,
        "train_texts": ctx.train_texts,
        "test_ids": ctx.test_ids,
        "test_texts": ctx.test_texts,
        "seed": ctx.seed,
        "protocol_c": ctx.protocol.c,
        "budget_seconds": ctx.budget_seconds,
        "strong_model": ctx.strong_model,
    }
    if ctx.student is not None:
        meta["student"] = ctx.student.to_json()
    tmp = path.with_name(path.name + ".tmp.npz")
    # the raw fields: on a text tier ctx.train_x refuses (it holds a 0-column array)
    train_x, test_x = object.__getattribute__(ctx, "train_x"), object.__getattribute__(ctx, "test_x")
    np.savez(
        tmp,
        train_x=np.asarray(train_x, dtype=np.float32),
        test_x=np.asarray(test_x, dtype=np.float32),
        weak=np.asarray(ctx.weak, dtype=np.float64),
        meta=np.array(json.dumps(meta)),
    )
    tmp.replace(path)


def load_context(path: Path, scratch_dir: Path | None = None) -> IdeaContext:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return IdeaContext(
            task=meta["task"],
            domain=meta["domain"],
            train_ids=meta["train_ids"],
            train_texts=meta["train_texts"],
            train_x=data["train_x"],
            weak=data["weak"],
            test_ids=meta["test_ids"],
            test_texts=meta["test_texts"],
            test_x=data["test_x"],
            seed=int(meta["seed"]),
            protocol=HeadProtocol(c=float(meta["protocol_c"]), seed=int(meta["seed"])),
            scratch_dir=scratch_dir,
            budget_seconds=float(meta["budget_seconds"]),
            strong_model=meta["strong_model"],
            student=StudentSpec.from_json(meta["student"]) if meta.get("student") else None,
        )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m aar.w2s.idea_runner CONTEXT.npz IDEA(.py|name) OUT.npy", file=sys.stderr)
        return 2
    ctx_path, idea, out = Path(args[0]), args[1], Path(args[2])
    ctx = load_context(ctx_path, scratch_dir=out.parent)
    try:
        fn = resolve_method(idea)
        if idea == "ceiling":
            raise IdeaError("the ceiling is a reference, not a submittable idea")
        preds = validate_predictions(fn(ctx), ctx.test_ids)
    except IdeaError as exc:
        print(f"idea error: {exc}", file=sys.stderr)
        return 3
    np.save(out, preds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
