"""One W2S experiment: weak teacher, ceiling and a method's students on the same test items.

``prepare`` loads a task and its cached features and trains the two references once:
- the weak teacher: a logistic head on the *weak* model's features, trained on ``weak_train`` true
  labels (its C tuned by CV on those labels). Its P(label=1) on every other split are the weak soft
  labels. They are fixed (seed-independent) because the referee exports them once to researchers.
- the ceiling: the same student head on the *strong* features, trained on ``student_train`` true
  labels (C tuned by CV on true labels: a reference may tune on truth).
It also fixes the student protocol (C chosen by CV on weak labels only; see ``aar.w2s.student``).

``run_method`` then runs an idea once per seed and scores weak, ceiling and students on the same
items with ``aar.w2s.pgr`` (on all of a split, or on one part of ``final``: public or private).

On a text tier (``defaults.TIERS[tier].reads_texts``, the LoRA tier) there are no features: the same
three roles go through the tier's ``Student`` (``aar.w2s.students``). The weak teacher is a LoRA student
on the weak model trained on the same ``weak_train`` label budget, the ceiling a LoRA student on the
strong model trained on ``student_train`` true labels, and every idea trains the same fixed student
through ``ctx.fit_student``. Their predictions are cached on disk (``_ReferenceFit``), keyed by the
rows, the student spec and the library versions, so a second run reuses the teacher's labels.

A held-out task's profile has no ``dev`` split: its ``SplitData`` then has 0-row arrays, and so do
its weak probabilities and ceiling.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aar.w2s import defaults
from aar.w2s.features import ExtractionStats, ProgressHook, features
from aar.w2s.methods import IdeaContext, resolve_method, validate_predictions
from aar.w2s.pgr import PGRResult, pgr_stats
from aar.w2s.student import HeadProtocol, cv_select_c, fit_logistic, select_protocol
from aar.w2s.students import Student, StudentSpec, make_student
from aar.w2s.tasks import FINAL_PARTS, SPLITS, Task, TaskDataError, load_task

TIERS = tuple(defaults.TIERS)
# A text tier's teacher and ceiling predictions are cached on disk (``_ReferenceFit``); a benchmark
# that must measure them turns this off.
REFERENCE_CACHE = True


@dataclass
class SplitData:
    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    weak_x: np.ndarray
    strong_x: np.ndarray


@dataclass
class Prepared:
    task: Task
    weak_model: str
    strong_model: str
    splits: dict[str, SplitData]
    weak_probs: dict[str, np.ndarray]
    protocol: HeadProtocol
    extraction: ExtractionStats = field(default_factory=ExtractionStats)
    _ceiling: dict[str, np.ndarray] = field(default_factory=dict)
    # the tier's student when it is not the feature head (the LoRA tier); every learner uses it
    student: StudentSpec | None = None
    _ceiling_fit: _ReferenceFit | None = field(default=None, repr=False)

    def context(
        self, split: str, seed: int, *, scratch_dir: Path | None = None, with_true_labels: bool = False
    ) -> IdeaContext:
        train, test = self.splits["student_train"], self.splits[split]
        return IdeaContext(
            task=self.task.name,
            domain=self.task.domain,
            train_ids=train.ids,
            train_texts=train.texts,
            train_x=train.strong_x,
            weak=self.weak_probs["student_train"],
            test_ids=test.ids,
            test_texts=test.texts,
            test_x=test.strong_x,
            seed=seed,
            protocol=self.protocol,
            scratch_dir=scratch_dir,
            strong_model=self.strong_model,
            true_labels=train.labels.astype(float) if with_true_labels else None,
            student=self.student,
        )

    def final_private_mask(self) -> np.ndarray:
        """Boolean mask over ``splits["final"]``: True where the item is in the private part."""
        return np.array(self.task.final_private_mask(), dtype=bool)

    def part_mask(self, part: str | None) -> np.ndarray:
        """Mask over ``splits["final"]`` for a part ("public", "private") or all of it (None)."""
        private = self.final_private_mask()
        if part is None:
            return np.ones(len(private), dtype=bool)
        if part not in FINAL_PARTS:
            raise KeyError(f"unknown part {part!r}; expected one of {', '.join(FINAL_PARTS)}")
        return private if part == "private" else ~private

    def ceiling(self, split: str) -> np.ndarray:
        if split not in self._ceiling and self.student is not None:
            if self._ceiling_fit is None:
                train = self.splits["student_train"]
                self._ceiling_fit = _ReferenceFit(
                    "ceiling", self.student, self.task.split_seed, train.texts, train.labels.astype(float)
                )
            self._ceiling[split] = self._ceiling_fit.predict(self.splits[split].texts)
        if split not in self._ceiling:
            train, test = self.splits["student_train"], self.splits[split]
            c = cv_select_c(train.strong_x, train.labels.astype(float), seed=self.task.split_seed)
            self._ceiling[split] = fit_logistic(train.strong_x, train.labels.astype(float), c).predict_proba(
                test.strong_x
            )
        return self._ceiling[split]


def get_tier(tier: str) -> defaults.Tier:
    if tier not in defaults.TIERS:
        raise KeyError(f"unknown tier {tier!r}; tiers: {', '.join(defaults.TIERS)}")
    return defaults.TIERS[tier]


def model_pair(tier: str) -> tuple[str, str]:
    spec = get_tier(tier)
    return spec.weak, spec.strong


def _versions() -> str:
    out = []
    for dist in ("torch", "transformers", "peft"):
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{dist}==missing")
    return ";".join(out)


def _digest_texts(h, texts: Sequence[str]) -> None:
    for text in texts:
        h.update(hashlib.sha256(text.encode()).digest())


class _ReferenceFit:
    """A reference learner (weak teacher or ceiling) of a text tier: fitted at most once per process,
    its predictions cached on disk per set of texts, keyed by everything that determines them (role,
    student spec, model weights, seed, training texts and targets, the texts predicted, library
    versions). A second run on the same rows loads the teacher's soft labels instead of re-training.
    The cache lives under aar's private cache root: ceiling predictions derive from true labels."""

    def __init__(self, role: str, spec: StudentSpec, seed: int, texts: Sequence[str], targets: np.ndarray):
        from aar.w2s.models import causal_lm_revision

        self.role, self.spec, self.seed = role, spec, seed
        self.texts, self.targets = list(texts), np.asarray(targets, dtype=np.float64)
        head = f"ref-v1|{role}|{spec.identity()}|{causal_lm_revision(spec.model)}|{seed}|{_versions()}"
        self._key = hashlib.sha256(head.encode())
        _digest_texts(self._key, self.texts)
        self._key.update(self.targets.tobytes())
        self._student: Student | None = None

    def _path(self, texts: Sequence[str]) -> Path | None:
        if not REFERENCE_CACHE:
            return None
        h = self._key.copy()
        _digest_texts(h, texts)
        try:
            from aar.w2s.paths import cache_root

            folder = cache_root() / "lora_refs"
            folder.mkdir(exist_ok=True, mode=0o700)
            return folder / f"{self.role}-{h.hexdigest()[:32]}.npy"
        except OSError:  # read-only or foreign home: just don't cache
            return None

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        path = self._path(texts)
        if path is not None and path.exists():
            try:
                cached = np.load(path)
                if cached.shape == (len(texts),) and np.all((cached >= 0) & (cached <= 1)):
                    return cached
            except (OSError, ValueError):
                pass  # a damaged entry is recomputed, never trusted
        if self._student is None:
            self._student = make_student(self.spec, self.seed).fit(self.texts, self.targets)
        out = self._student.predict_proba(texts)
        if path is not None:
            try:
                tmp = path.with_name(path.stem + ".tmp.npy")
                np.save(tmp, out)
                tmp.replace(path)
            except OSError:
                pass
        return out


def text_student_spec(tier: defaults.Tier, model: str, task: Task, device: str = "cpu") -> StudentSpec:
    """The fixed student of a text tier for one model and task: the tier's kind and parameters, the
    task's question and label words (``aar.w2s.students.lora.prompt_for``)."""
    from aar.w2s.students.lora import prompt_for

    prompt, words = prompt_for(task.description, [r.text for r in task.rows])
    return StudentSpec(
        kind=tier.student,
        model=model,
        params=dict(tier.params),
        prompt=prompt,
        label_words=words,
        device=device,
    )


def prepare(
    task: str | Task,
    tier: str = "default",
    *,
    max_rows: int | None = None,
    role: str | None = None,
    weak_model: str | None = None,
    strong_model: str | None = None,
    weak_train_limit: int | None | str = "default",
    show_progress: bool = True,
    feature_fn=features,
    on_progress: ProgressHook | None = None,
    device: str = "cpu",
) -> Prepared:
    """Load a task, its features under both models, and train the weak teacher once.

    ``role`` picks the split profile (``aar.w2s.tasks.PROFILES``) of a task given by name; a ``Task``
    object keeps its own fractions. A split may be empty only when its fraction is 0 (a held-out
    task's ``dev``). ``on_progress`` (model, done, total) follows each model's extraction. ``device``
    is where a text tier's students run ("cpu", "cuda"); the feature tiers ignore it.
    """
    task_obj = task if isinstance(task, Task) else load_task(task, max_rows=max_rows, role=role)
    tier_spec = get_tier(tier)
    weak_name, strong_name = model_pair(tier)
    weak_name, strong_name = weak_model or weak_name, strong_model or strong_name
    stats = ExtractionStats()
    splits: dict[str, SplitData] = {}
    for name in SPLITS:  # before minutes of extraction, not after
        if not task_obj.split(name) and task_obj.fractions.get(name, 1.0) > 0:
            raise TaskDataError(
                f"task {task_obj.name!r} has an empty {name} split at {len(task_obj.rows)} rows (rows are "
                "split by group, e.g. a film's snippets together); use more rows (--max-rows, "
                "testbed.max_rows)"
            )
    # "default": the testbed's teacher budget (defaults.WEAK_TRAIN_LIMIT); None: every weak_train label
    limit = defaults.WEAK_TRAIN_LIMIT if weak_train_limit == "default" else weak_train_limit
    if tier_spec.reads_texts:
        return _prepare_texts(task_obj, tier_spec, weak_name, strong_name, limit, device)
    all_texts = [row.text for name in SPLITS for row in task_obj.split(name)]
    # The strong model never sees weak_train (only the teacher learns from it, on weak features), so
    # its texts are not extracted with the strong model: ~5% of a home task's slowest step.
    student_texts = [row.text for name in SPLITS if name != "weak_train" for row in task_obj.split(name)]
    hook = {"on_progress": on_progress} if on_progress is not None else {}
    weak_all = feature_fn(weak_name, all_texts, show_progress=show_progress, stats=stats, **hook)
    strong_all = feature_fn(strong_name, student_texts, show_progress=show_progress, stats=stats, **hook)
    offset = strong_offset = 0
    for name in SPLITS:
        rows = task_obj.split(name)
        n = len(rows)
        if name == "weak_train":
            # never read: a use would show up as NaNs, not as silently plausible numbers
            strong_x = np.full((n, strong_all.shape[1]), np.nan, dtype=np.float32)
        else:
            strong_x = strong_all[strong_offset : strong_offset + n]
            strong_offset += n
        splits[name] = SplitData(
            ids=[r.id for r in rows],
            texts=[r.text for r in rows],
            labels=np.array([r.label for r in rows], dtype=int),
            weak_x=weak_all[offset : offset + n],
            strong_x=strong_x,
        )
        offset += n

    wt = splits["weak_train"]
    x_wt, y_wt = wt.weak_x, wt.labels.astype(float)
    pick = _teacher_rows(len(y_wt), limit, task_obj.split_seed)
    if pick is not None:
        x_wt, y_wt = x_wt[pick], y_wt[pick]
    c_weak = cv_select_c(x_wt, y_wt, seed=task_obj.split_seed)
    teacher = fit_logistic(x_wt, y_wt, c_weak)
    weak_probs = {name: teacher.predict_proba(splits[name].weak_x) for name in SPLITS if name != "weak_train"}
    protocol = select_protocol(
        splits["student_train"].strong_x, weak_probs["student_train"], seed=task_obj.split_seed
    )
    return Prepared(task_obj, weak_name, strong_name, splits, weak_probs, protocol, stats)


def _teacher_rows(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """The weak_train rows the teacher may learn from (None: all of them); the same on every tier."""
    if limit is not None and limit < n:
        return np.random.default_rng(seed).choice(n, size=limit, replace=False)
    return None


def _prepare_texts(
    task: Task, tier: defaults.Tier, weak_name: str, strong_name: str, limit: int | None, device: str
) -> Prepared:
    """A text tier: no features (0-column arrays), a LoRA weak teacher, the strong student's spec."""
    splits: dict[str, SplitData] = {}
    for name in SPLITS:
        rows = task.split(name)
        splits[name] = SplitData(
            ids=[r.id for r in rows],
            texts=[r.text for r in rows],
            labels=np.array([r.label for r in rows], dtype=int),
            weak_x=np.zeros((len(rows), 0), dtype=np.float32),
            strong_x=np.zeros((len(rows), 0), dtype=np.float32),
        )
    wt = splits["weak_train"]
    texts, y = wt.texts, wt.labels.astype(float)
    pick = _teacher_rows(len(y), limit, task.split_seed)
    if pick is not None:
        texts, y = [texts[i] for i in pick], y[pick]
    teacher_spec = text_student_spec(tier, weak_name, task, device)
    teacher = _ReferenceFit("teacher", teacher_spec, task.split_seed, texts, y)
    weak_probs = {name: teacher.predict(splits[name].texts) for name in SPLITS if name != "weak_train"}
    student = text_student_spec(tier, strong_name, task, device)
    # no head C on a text tier: ctx.fit_head refuses there (a NaN C would only surface as a broken head)
    protocol = HeadProtocol(c=float("nan"), seed=task.split_seed)
    return Prepared(
        task, weak_name, strong_name, splits, weak_probs, protocol, ExtractionStats(), student=student
    )


def teacher_beats_majority(labels: np.ndarray, weak_probs: np.ndarray) -> tuple[bool, float, float]:
    """(weak accuracy > majority-class rate, weak accuracy, majority-class rate) on these items.

    A teacher at or below "always the majority class" teaches nothing a constant would not.
    """
    labels = np.asarray(labels).astype(int)
    if len(labels) == 0:
        raise ValueError("no items")
    acc = float(((np.asarray(weak_probs) >= 0.5).astype(int) == labels).mean())
    positive = float(labels.mean())
    majority = max(positive, 1.0 - positive)
    return acc > majority, acc, majority


@dataclass
class ExperimentResult:
    task: str
    method: str
    seeds: int
    split: str
    stats: PGRResult
    student_probs: np.ndarray  # seeds x items (all of the split, whatever part is scored)
    seconds: float
    weak_model: str
    strong_model: str
    part: str | None = None  # the part of final that was scored; None: the whole split

    def to_json(self) -> dict:
        """The `aar w2s run --json` object."""
        s = self.stats
        return {
            "task": self.task,
            "method": self.method,
            "seeds": self.seeds,
            "split": self.split,
            "part": self.part,
            "weak_model": self.weak_model,
            "strong_model": self.strong_model,
            "weak_acc": s.weak_acc,
            "weak_acc_ci": list(s.weak_acc_ci),
            "ceiling_acc": s.ceiling_acc,
            "ceiling_acc_ci": list(s.ceiling_acc_ci),
            "transfer_acc": s.transfer_acc,
            "transfer_acc_ci": list(s.transfer_acc_ci),
            "transfer_seed_std": s.transfer_seed_std,
            "pgr": None if not s.defined else s.pgr,
            "pgr_ci": [None if np.isnan(v) else v for v in s.pgr_ci],
            "gap_ci": list(s.gap_ci),
            "gap_se": s.gap_se if np.isfinite(s.gap_se) else None,
            "gap_z": s.gap_z if np.isfinite(s.gap_z) else None,
            "n_test": s.n_items,
            "seconds": round(self.seconds, 3),
        }


def run_method(
    prep: Prepared,
    method: str,
    seeds: int = 3,
    *,
    split: str = "final",
    part: str | None = None,
    scratch_dir: Path | None = None,
    start_seed: int = 0,
) -> ExperimentResult:
    """Run an idea over ``seeds`` seeds and score it against the weak teacher and the ceiling.

    The idea always predicts the whole split; ``part`` ("public", "private") scores only that part
    of ``final``.
    """
    if split not in ("dev", "final"):
        raise ValueError("methods are scored on 'dev' or 'final'")
    if part is not None and split != "final":
        raise ValueError("only the final split has parts")
    start = time.perf_counter()
    fn = resolve_method(method)
    test = prep.splits[split]
    preds = []
    for seed in range(start_seed, start_seed + seeds):
        ctx = prep.context(split, seed, scratch_dir=scratch_dir, with_true_labels=(method == "ceiling"))
        preds.append(validate_predictions(fn(ctx), test.ids))
    student = np.stack(preds)
    keep = prep.part_mask(part) if split == "final" else np.ones(len(test.ids), dtype=bool)
    stats = pgr_stats(
        test.labels[keep], prep.weak_probs[split][keep], prep.ceiling(split)[keep], student[:, keep]
    )
    return ExperimentResult(
        prep.task.name,
        method,
        seeds,
        split,
        stats,
        student,
        time.perf_counter() - start,
        prep.weak_model,
        prep.strong_model,
        part,
    )
