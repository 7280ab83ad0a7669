"""The private data dir: task splits, labels, the weak teacher's and the ceiling's predictions.

Only the referee reads it. It is created 0700 (files 0600) so a sandboxed idea, running as another
uid, cannot even list it; official runs copy what an idea may see (features, weak soft labels, no
labels) into a scratch dir outside it. ``export_public`` writes the researcher-visible files of the
home and visible tasks: inputs and ids of ``student_train`` and ``dev``, the weak soft labels on
``student_train`` and a task card; never a label, a label count or a label distribution, never the
texts of ``final`` (an official run's sandbox gets them), and nothing at all of a held-out task.

Roles: ``home`` (the task researchers work on), ``visible`` (secondary tasks from other domains whose
released public scores researchers see, so they can aim at generalisation) and ``held_out`` (scored
for every official run, never shown while the campaign runs). ``final`` is stored once, in id order,
with a ``private`` mask: the idea cannot tell the public items from the private ones.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from aar.atomic import atomic_write
from aar.contract import AdminTaskCard, ResearcherTaskCard
from aar.w2s.features import ProgressHook
from aar.w2s.methods import IdeaContext
from aar.w2s.pgr import pgr_stats
from aar.w2s.student import HeadProtocol
from aar.w2s.students import StudentSpec
from aar.w2s.task_files import TaskFile, declare, register_task_files

FEATURE_SPLITS = ("student_train", "dev", "final")  # splits whose inputs an idea receives
EXPORTED_SPLITS = ("student_train", "dev")  # splits whose inputs researchers receive
TASKS_DIR = "tasks"
READY_FILE = "meta.json"  # written last: a task is ready exactly when its folder holds this file
REFUSED_FILE = "refused.json"  # a pending task whose background preparation was refused or failed
SHOWN_ROLES = ("home", "visible")


class DataDirError(RuntimeError):
    """The data dir is missing, incomplete or not private."""


class TaskNotReady(DataDirError):
    """A held-out task is still being prepared in the background (first result first)."""


class TaskRefused(DataDirError):
    """A task cannot carry a claim (e.g. its weak teacher does not beat the majority-class rate)."""


def init_data_dir(
    data_dir: Path,
    *,
    tasks: list[str] | None = None,
    visible: Sequence[str] = (),
    tier: str = "default",
    max_rows: int | None = None,
    task_files: Sequence = (),
    models: Mapping[str, str] | None = None,
    defer_held_out: bool = False,
    show_progress: bool = False,
    on_progress: ProgressHook | None = None,
    log=print,
) -> list[str]:
    """Prepare each task with the testbed and store what the referee needs to score it.

    ``tasks`` lists the home task first, then the others; those also named in ``visible`` are
    visible secondary tasks, the rest are held out. A task whose weak teacher does not beat the
    majority-class rate on ``final`` is refused (its PGR would measure nothing), before anything is
    written for it. ``on_progress(label, done, total)`` follows each feature extraction (label:
    "features MODEL for TASK"), e.g. ``aar.eta.EtaLines`` where there is no terminal for a bar.

    ``defer_held_out`` (first result first): prepare only the tasks researchers see (home, visible),
    write the manifest, and leave the held-out tasks *pending*; the referee prepares them in the
    background (``aar.referee.preparer``) while researchers already work, and official runs wait for
    them. The manifest is written only once the shown tasks are stored, so a refused home task leaves
    no manifest behind, and a kill before it makes the next call start again (from cached features).

    ``models`` ({"weak": spec, "strong": spec}, either optional) replaces the tier's models, e.g. a
    local directory or a Hugging Face id on the LoRA tier; the manifest records it.
    """
    from aar.w2s import defaults

    data_dir = Path(data_dir)
    # tasks from files (``aar.w2s.task_files``): each file validated whole and registered before
    # anything is written; the manifest records them so the referee's process registers them too
    declared = [declare(t if isinstance(t, TaskFile) else TaskFile.from_json(t)) for t in task_files]
    register_task_files(declared)
    names = list(tasks or [defaults.HOME_TASK, *defaults.HELD_OUT_TASKS])
    home = names[0]
    unknown_visible = [v for v in visible if v not in names[1:]]
    if unknown_visible:
        raise DataDirError(f"visible task(s) {', '.join(unknown_visible)} not among the tasks {names}")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    (data_dir / TASKS_DIR).mkdir(exist_ok=True, mode=0o700)
    roles = {n: "home" if n == home else "visible" if n in visible else "held_out" for n in names}
    manifest = {"tier": tier, "max_rows": max_rows, "created": time.time(), "home": home, "tasks": roles}
    if declared:
        manifest["task_files"] = [t.to_json() for t in declared]
    models = {k: str(v) for k, v in (models or {}).items() if v}
    unknown_roles = set(models) - {"weak", "strong"}
    if unknown_roles:
        unknown = ", ".join(sorted(unknown_roles))
        raise DataDirError(f"models: unknown role(s) {unknown}; expected weak, strong")
    if models:
        manifest["models"] = models
    for name in names:
        if defer_held_out and roles[name] == "held_out":
            _clear_task(data_dir, name)  # a leftover of an earlier data dir must not pass for ready
            continue
        prepare_task(
            data_dir,
            name,
            roles[name],
            tier,
            max_rows,
            models=models,
            show_progress=show_progress,
            on_progress=on_progress,
            log=log,
        )
    atomic_write(data_dir / "manifest.json", json.dumps(manifest, indent=2), mode=0o600)
    return names


def prepare_task(
    data_dir: Path,
    name: str,
    role: str,
    tier: str,
    max_rows: int | None,
    *,
    models: Mapping[str, str] | None = None,
    show_progress: bool = False,
    on_progress: ProgressHook | None = None,
    log=print,
) -> None:
    """Prepare one task and store it in ``data_dir/tasks/NAME``; ``meta.json`` is written last, so a
    task is ready exactly when that file exists (``DataStore.ready``). Refused: ``TaskRefused``, and
    nothing of the task is left (so it can never be read as ready)."""
    from aar.w2s.experiment import prepare, teacher_beats_majority

    start = time.perf_counter()
    tdir = Path(data_dir) / TASKS_DIR / name
    _clear_task(data_dir, name)
    hook = None if on_progress is None else functools.partial(_task_progress, on_progress, name)
    models = models or {}
    prep = prepare(
        name,
        tier,
        max_rows=max_rows,
        role=role,
        weak_model=models.get("weak"),
        strong_model=models.get("strong"),
        show_progress=show_progress,
        on_progress=hook,
    )
    final = prep.splits["final"]
    ok, weak_acc, majority = teacher_beats_majority(final.labels, prep.weak_probs["final"])
    if not ok:
        raise TaskRefused(
            f"task {name!r}: its weak teacher ({prep.weak_model}) is right on {weak_acc:.3f} of final, "
            f"not above the majority-class rate {majority:.3f}; a PGR on it would measure nothing. "
            "Choose another task."
        )
    tdir.mkdir(exist_ok=True, mode=0o700)
    arrays: dict[str, np.ndarray] = {}
    rows: dict[str, dict] = {}
    for split, sd in prep.splits.items():
        arrays[f"labels_{split}"] = sd.labels.astype(np.int8)
        rows[split] = {"ids": sd.ids, "texts": sd.texts if split in FEATURE_SPLITS else []}
        if split in FEATURE_SPLITS:
            arrays[f"x_{split}"] = sd.strong_x.astype(np.float32)
            arrays[f"weak_{split}"] = prep.weak_probs[split].astype(np.float64)
    arrays["ceiling_final"] = prep.ceiling("final").astype(np.float64)
    if role != "held_out":
        arrays["ceiling_dev"] = prep.ceiling("dev").astype(np.float64)
    arrays["private_final"] = np.asarray(prep.final_private_mask(), dtype=bool)
    atomic_write(tdir / "arrays.npz", _npz_bytes(arrays), mode=0o600)
    meta = {
        "name": name,
        "domain": prep.task.domain,
        "description": prep.task.description,
        "role": role,
        "weak_model": prep.weak_model,
        "strong_model": prep.strong_model,
        "protocol_c": prep.protocol.c,
        # a text tier's fixed student (aar.w2s.students.StudentSpec): official runs rebuild it from this
        "student": None if prep.student is None else prep.student.to_json(),
        "rows": rows,
    }
    atomic_write(tdir / READY_FILE, json.dumps(meta), mode=0o600)
    sizes = ", ".join(f"{s}={len(r['ids'])}" for s, r in rows.items())
    n_private = int(arrays["private_final"].sum())
    log(f"{name} ({role}): {sizes} (final: {n_private} private) ({time.perf_counter() - start:.1f} s)")


def _clear_task(data_dir: Path, name: str) -> None:
    tdir = Path(data_dir) / TASKS_DIR / name
    for f in (READY_FILE, "arrays.npz", REFUSED_FILE):
        (tdir / f).unlink(missing_ok=True)


def _task_progress(hook: ProgressHook, task: str, model: str, done: int, total: int) -> None:
    hook(f"features {model} for {task}", done, total)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


@dataclass
class TaskData:
    """One task's private data, loaded once per process."""

    name: str
    role: str
    domain: str
    description: str
    weak_model: str
    strong_model: str
    protocol_c: float
    ids: dict[str, list[str]]
    texts: dict[str, list[str]]
    arrays: dict[str, np.ndarray]
    student: dict | None = None  # a text tier's student spec (StudentSpec.to_json); None: the feature head

    @property
    def student_spec(self) -> StudentSpec | None:
        return None if self.student is None else StudentSpec.from_json(self.student)

    def labels(self, split: str) -> np.ndarray:
        return self.arrays[f"labels_{split}"]

    def weak(self, split: str) -> np.ndarray:
        return self.arrays[f"weak_{split}"]

    def ceiling(self, split: str) -> np.ndarray:
        return self.arrays[f"ceiling_{split}"]

    def part_index(self, part: str) -> np.ndarray:
        """Indices into ``final`` of its public or private part."""
        mask = self.arrays["private_final"]
        if part == "private":
            return np.flatnonzero(mask)
        if part == "public":
            return np.flatnonzero(~mask)
        raise KeyError(f"unknown part {part!r}")

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts of ``final`` this task has (held-out tasks: private only)."""
        return tuple(p for p in ("public", "private") if len(self.part_index(p)))

    @property
    def shown(self) -> bool:
        """May researchers see this task at all (its card, dev scores, released public scores)?"""
        return self.role in SHOWN_ROLES

    @cached_property
    def dev_index(self) -> dict[str, int]:
        return {row_id: i for i, row_id in enumerate(self.ids["dev"])}

    @cached_property
    def dev_reference(self) -> tuple[float, float, bool]:
        """(weak acc, ceiling acc, PGR defined) on dev: the scale dev scores are released on."""
        return _reference(self.labels("dev"), self.weak("dev"), self.ceiling("dev"))

    @cached_property
    def public_reference(self) -> tuple[float, float, bool]:
        """(weak acc, ceiling acc, PGR defined) on the public part: the scale official public scores
        are released on."""
        i = self.part_index("public")
        return _reference(self.labels("final")[i], self.weak("final")[i], self.ceiling("final")[i])

    def context(self, split: str, seed: int) -> IdeaContext:
        """A label-free idea context (what the sandboxed code receives)."""
        return IdeaContext(
            task=self.name,
            domain=self.domain,
            train_ids=self.ids["student_train"],
            train_texts=self.texts["student_train"],
            train_x=self.arrays["x_student_train"],
            weak=self.weak("student_train"),
            test_ids=self.ids[split],
            test_texts=self.texts[split],
            test_x=self.arrays[f"x_{split}"],
            seed=seed,
            protocol=HeadProtocol(c=self.protocol_c, seed=seed),
            strong_model=self.strong_model,
            student=self.student_spec,
        )

    def _card(self) -> dict:
        return {
            "name": self.name,
            "domain": self.domain,
            "role": self.role,
            "description": self.description,
            "weak_model": self.weak_model,
            "strong_model": self.strong_model,
            "protocol_c": self.protocol_c,  # the fixed student head's regularisation (ctx.fit_head)
            "student": self.student,  # a text tier's fixed student (ctx.fit_student); None: the head
            "files": {
                "student_train.jsonl": "{id, text, weak}: weak = the weak teacher's P(label=1)",
                "dev.jsonl": "{id, text}: score predictions with POST /api/v1/dev/evaluate",
            },
            "idea_contract": (
                "def run(ctx: aar.w2s.methods.IdeaContext) -> probabilities aligned with ctx.test_ids "
                "(official runs: the final inputs, given to the idea inside the referee's sandbox)"
            ),
        }

    def card(self) -> ResearcherTaskCard:
        """What researchers may know about a home or visible task: no labels, no label counts or
        rates, no final texts, not even how final divides into public and private."""
        if not self.shown:
            raise KeyError(f"{self.name} is held out")
        return ResearcherTaskCard(**self._card(), sizes={s: len(self.ids[s]) for s in EXPORTED_SPLITS})

    def admin_card(self) -> AdminTaskCard:
        sizes = {s: len(ids) for s, ids in self.ids.items()}
        sizes.update({f"final_{p}": len(self.part_index(p)) for p in ("public", "private")})
        return AdminTaskCard(**self._card(), sizes=sizes)


def _reference(labels: np.ndarray, weak: np.ndarray, ceiling: np.ndarray) -> tuple[float, float, bool]:
    """(weak acc, ceiling acc, PGR defined) on some items: the scale a Ladder releases scores on."""
    stats = pgr_stats(labels, weak, ceiling, weak, n_boot=500)
    return stats.weak_acc, stats.ceiling_acc, stats.defined


class DataStore:
    """The tasks of a data dir, loaded lazily; refuses a data dir others can read."""

    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir)
        manifest = self.dir / "manifest.json"
        if not manifest.exists():
            raise DataDirError(f"{self.dir}: no manifest.json; run `aar referee init {self.dir}` first")
        if self.dir.stat().st_mode & 0o077:
            raise DataDirError(f"{self.dir}: data dir must be private (chmod 700): it holds labels")
        self.manifest = json.loads(manifest.read_text())
        register_task_files(self.manifest.get("task_files", ()))  # so load_task finds them here too
        self._tasks: dict[str, TaskData] = {}

    @property
    def task_names(self) -> list[str]:
        return list(self.manifest["tasks"])

    @property
    def home(self) -> str:
        return self.manifest["home"]

    def role(self, name: str) -> str:
        return self.manifest["tasks"][name]

    def held_out(self) -> list[str]:
        return [n for n, role in self.manifest["tasks"].items() if role == "held_out" and not self.refused(n)]

    def visible(self) -> list[str]:
        return [n for n, role in self.manifest["tasks"].items() if role == "visible"]

    def shown(self) -> list[str]:
        """Tasks researchers may see: the home task first, then the visible ones."""
        return [self.home, *self.visible()]

    def official_tasks(self) -> list[str]:
        """Every task an official run is scored on: home, visible, held out (ready or still being
        prepared; a task whose preparation was refused or failed is not one)."""
        return [self.home, *[t for t in self.task_names if t != self.home and not self.refused(t)]]

    def has(self, name: str) -> bool:
        return name in self.manifest["tasks"]

    def ready(self, name: str) -> bool:
        """Stored and readable: its ``meta.json`` (written last) exists. Shown tasks always are (they
        are prepared before the manifest is written); a held-out task may still be pending."""
        return name in self._tasks or (self.dir / TASKS_DIR / name / READY_FILE).exists()

    def ready_tasks(self) -> list[str]:
        return [t for t in self.task_names if self.ready(t)]

    def pending(self) -> list[str]:
        """Tasks of the manifest still to prepare (first result first: held-out ones, in the background)."""
        return [t for t in self.task_names if not self.ready(t) and not self.refused(t)]

    def refused(self, name: str) -> str | None:
        """Why the task's preparation was refused or failed (``mark_refused``), or None."""
        path = self.dir / TASKS_DIR / name / REFUSED_FILE
        try:
            return json.loads(path.read_text())["reason"] if path.exists() else None
        except (OSError, ValueError, KeyError):
            return "unreadable refusal record"

    def mark_refused(self, name: str, reason: str) -> None:
        tdir = self.dir / TASKS_DIR / name
        tdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(tdir / REFUSED_FILE, json.dumps({"reason": reason, "at": time.time()}), mode=0o600)

    def task(self, name: str) -> TaskData:
        if name not in self._tasks:
            if not self.has(name):
                raise KeyError(name)
            if not self.ready(name):
                raise TaskNotReady(f"task {name!r} is still being prepared")
            tdir = self.dir / TASKS_DIR / name
            meta = json.loads((tdir / READY_FILE).read_text())
            with np.load(tdir / "arrays.npz", allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            self._tasks[name] = TaskData(
                name=name,
                role=meta["role"],
                domain=meta["domain"],
                description=meta["description"],
                weak_model=meta["weak_model"],
                strong_model=meta["strong_model"],
                protocol_c=float(meta["protocol_c"]),
                ids={s: r["ids"] for s, r in meta["rows"].items()},
                texts={s: r["texts"] for s, r in meta["rows"].items()},
                arrays=arrays,
                student=meta.get("student"),
            )
        return self._tasks[name]


def export_public(data_dir: Path, out: Path) -> list[Path]:
    """Write the researcher-visible files of the home and visible tasks; nothing here is derived
    from a label, and nothing of ``final`` or of a held-out task is written."""
    store = DataStore(data_dir)
    out = Path(out)
    written: list[Path] = []
    for name in store.shown():
        task = store.task(name)
        tdir = out / name
        tdir.mkdir(parents=True, exist_ok=True)
        with (tdir / "student_train.jsonl").open("w", encoding="utf-8") as handle:
            weak = task.weak("student_train")
            for i, (row_id, text) in enumerate(
                zip(task.ids["student_train"], task.texts["student_train"], strict=True)
            ):
                handle.write(
                    json.dumps({"id": row_id, "text": text, "weak": round(float(weak[i]), 6)}) + "\n"
                )
        with (tdir / "dev.jsonl").open("w", encoding="utf-8") as handle:
            for row_id, text in zip(task.ids["dev"], task.texts["dev"], strict=True):
                handle.write(json.dumps({"id": row_id, "text": text}) + "\n")
        (tdir / "card.json").write_text(task.card().model_dump_json(indent=2))
        written += [tdir / f for f in ("student_train.jsonl", "dev.jsonl", "card.json")]
    return written
