"""The researcher-visible task data, with the strong model's features: what local dev runs need.

Input: the referee's public export (``aar referee export-public --out SRC``: per task
``student_train.jsonl`` {id, text, weak}, ``dev.jsonl`` {id, text}, ``card.json``; no labels).
Output, per task: the same files plus ``data.npz`` with the strong features of student_train and dev
(computed on the host, trusted side, through the content-addressed feature cache, so agents share
one computation) and the head protocol's C, chosen as the testbed does (CV against weak labels only).
Everything here is derived from inputs and weak labels: a researcher may read all of it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

PUBLIC_FILES = ("card.json", "student_train.jsonl", "dev.jsonl", "final.jsonl")
STUDENT_FILE = "student.json"  # a text tier's student: its spec and the model folder a sandbox must read


def text_student(card: dict) -> dict | None:
    """{"spec", "model_dir"} for a card whose tier's student reads texts (LoRA), else None. The model
    folder is resolved here, on the host (a packaged model is converted once), so the researcher's
    sandbox can bind it read-only (``aar.agents.home``)."""
    from aar.w2s.students import StudentSpec

    if not card.get("student"):
        return None
    spec = StudentSpec.from_json(card["student"])
    if not spec.reads_texts:
        return None
    from aar.w2s.model_access import readable_model_dir

    source = readable_model_dir(spec.model)
    return {"spec": card["student"], "model_dir": None if source is None else str(source)}


def student_model_dirs(public: Path) -> list[Path]:
    """The model folders the public packs' text-tier students read (bound into researchers' sandboxes)."""
    dirs = []
    for path in sorted(Path(public).glob(f"*/{STUDENT_FILE}")):
        try:
            folder = json.loads(path.read_text()).get("model_dir")
        except (OSError, ValueError):
            continue
        if folder and Path(folder).is_dir() and Path(folder) not in dirs:
            dirs.append(Path(folder))
    return dirs


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def prepare_public(source: Path, dest: Path, *, log=lambda *_a: None) -> list[str]:
    """Build (or refresh) the public pack in ``dest`` from an export in ``source``; returns task names."""
    from aar.w2s.features import features
    from aar.w2s.student import select_protocol
    from aar.w2s.tasks import task_specs

    seeds = {spec.name: spec.split_seed for spec in task_specs()}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for task_dir in sorted(Path(source).iterdir()):
        card_path = task_dir / "card.json"
        if not card_path.exists():
            continue
        name = task_dir.name
        out = dest / name
        out.mkdir(mode=0o755, exist_ok=True)
        data = out / "data.npz"
        if data.exists() and data.stat().st_mtime >= card_path.stat().st_mtime:
            names.append(name)
            continue
        for f in PUBLIC_FILES:
            if (task_dir / f).exists():
                shutil.copyfile(task_dir / f, out / f)
                os.chmod(out / f, 0o644)
        card = json.loads(card_path.read_text())
        train = read_jsonl(task_dir / "student_train.jsonl")
        dev = read_jsonl(task_dir / "dev.jsonl")
        model = card["strong_model"]
        weak = np.array([float(r["weak"]) for r in train])
        student = text_student(card)
        if student is not None:  # a text tier (LoRA): the student reads texts, there are no features
            train_x, dev_x = np.zeros((len(train), 0)), np.zeros((len(dev), 0))
            c = float("nan")  # no feature head on a text tier (the card's NaN reads back as null)
            (out / STUDENT_FILE).write_text(json.dumps(student))
            os.chmod(out / STUDENT_FILE, 0o644)
        else:
            train_x = features(model, [r["text"] for r in train], show_progress=False)
            dev_x = features(model, [r["text"] for r in dev], show_progress=False)
            # the referee's card carries the fixed head's C; recompute it (same procedure) only for old cards
            c = (
                float(card["protocol_c"])
                if "protocol_c" in card
                else select_protocol(train_x, weak, seed=seeds.get(name, 0)).c
            )
        tmp = out / "data.tmp.npz"
        np.savez(
            tmp,
            train_x=train_x.astype(np.float32),
            dev_x=dev_x.astype(np.float32),
            weak=weak,
            protocol_c=np.array(c),
            student=np.array(json.dumps(card.get("student"))),
        )
        tmp.replace(data)
        os.chmod(data, 0o644)
        log(f"public pack: {name} ({len(train)} train, {len(dev)} dev, {model}, C={c})")
        names.append(name)
    return names
