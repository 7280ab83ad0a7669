"""Tasks from a user's files ("bring your own task").

Three JSONL formats, one object per line:

- ``binary`` (the published release's): ``{question, choice, label}``, label true/false (or 1/0,
  "true"/"false"); the text is ``question`` then ``Answer: choice``; grouped by question.
- ``preference`` (the published release's): ``{prompt, first, second, label: "A"|"B"}``; the text shows
  both responses, label 1 when the first ("A") is preferred; grouped by prompt.
- ``text``: ``{text, label}`` with label 0/1 (or a boolean), optional ``group`` (rows that must stay in
  one split, e.g. one source document) and ``id``.

``auto`` reads the format off the first row; every later row must be of that format.

Why a declaration and not just a path: the referee prepares tasks by name (``load_task``) in whatever
process needs them, so a file task travels as a small record ``{name, path, format, domain, role,
description, sha256}`` (in the campaign, in the data dir's manifest) and is registered from it where
it is needed. The digest is checked each time the rows are built, so a file edited after it was
declared is refused instead of served under the old task's name; nothing reads it into a cache.

Ids are hashes of the task's name and the row's content (or its given ``id``), so they reveal neither
the label nor the row's place in the file, and stay put when rows are added. The whole file is
validated before anything is built from it: an error names the file, the line and the field.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from aar.w2s.tasks import Row, TaskDataError, TaskSpec, norm_text, register_task, stable_id

FORMATS: tuple[str, ...] = ("auto", "binary", "preference", "text")
ROLES: tuple[str, ...] = ("home", "visible", "held_out")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"  # a task's name is a folder name in the data dir
_FIELDS = {  # required fields, by format
    "binary": ("question", "choice", "label"),
    "preference": ("prompt", "first", "second", "label"),
    "text": ("text", "label"),
}


@dataclass(frozen=True)
class TaskFile:
    """A task declared from a file: what the campaign, ``aar referee init`` and the data dir record."""

    name: str
    path: str
    format: str = "auto"
    domain: str = "custom"
    role: str | None = None  # where a campaign places it when it is not listed (home, visible, held_out)
    description: str = ""
    sha256: str | None = None  # filled in when declared; a mismatch later means the file was edited

    def __post_init__(self) -> None:
        if not re.match(NAME_PATTERN, self.name):
            raise ValueError(
                f"task name {self.name!r}: lower-case letters, digits, '_' and '-', at most 40 characters"
            )
        if self.format not in FORMATS:
            raise ValueError(f"task {self.name!r}: format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"task {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> TaskFile:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (a missing file is a TaskDataError naming it)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise TaskDataError(f"{path}: cannot read task file ({exc.strerror})") from exc


def _detect(obj: dict, where: str) -> str:
    for fmt in ("preference", "binary", "text"):
        if _FIELDS[fmt][0] in obj:
            return fmt
    raise TaskDataError(
        f"{where}: neither a binary row {{question, choice, label}}, a preference row "
        "{prompt, first, second, label} nor a text row {text, label}"
    )


def _string(obj: dict, key: str, where: str, fmt: str) -> str:
    if key not in obj:
        raise TaskDataError(f"{where}, field {key!r}: missing (a {fmt} row has {', '.join(_FIELDS[fmt])})")
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise TaskDataError(f"{where}, field {key!r}: must be a non-empty string, got {value!r:.60}")
    return value


def _label(obj: dict, where: str, fmt: str) -> int:
    if "label" not in obj:
        raise TaskDataError(f"{where}, field 'label': missing (a {fmt} row has {', '.join(_FIELDS[fmt])})")
    label = obj["label"]
    if fmt == "preference":
        if label not in ("A", "B"):
            raise TaskDataError(f'{where}, field \'label\': must be "A" or "B", got {label!r:.60}')
        return int(label == "A")
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        return int(label.strip().lower() == "true")
    if isinstance(label, bool) or label in (0, 1):
        return int(label)
    raise TaskDataError(f"{where}, field 'label': must be true/false or 0/1, got {label!r:.60}")


def _row(obj: dict, fmt: str, name: str, where: str) -> Row:
    """One row; fields are checked in the format's order, so the error names the first bad one."""
    if fmt == "binary":
        question, choice = _string(obj, "question", where, fmt), _string(obj, "choice", where, fmt)
        text, group, key = f"{question}\n\nAnswer: {choice}", norm_text(question), (question, choice)
    elif fmt == "preference":
        prompt = _string(obj, "prompt", where, fmt)
        first, second = _string(obj, "first", where, fmt), _string(obj, "second", where, fmt)
        text = f"{prompt}\n\nResponse A: {first}\n\nResponse B: {second}"
        group, key = norm_text(prompt), (prompt, first, second)
    else:
        text = _string(obj, "text", where, fmt)
        group_value = obj.get("group")
        if group_value is not None and not isinstance(group_value, str | int):
            raise TaskDataError(
                f"{where}, field 'group': must be a string or an integer, got {group_value!r:.60}"
            )
        group = str(group_value) if group_value is not None else norm_text(text)
        given = obj.get("id")
        if given is not None and not isinstance(given, str | int):
            raise TaskDataError(f"{where}, field 'id': must be a string or an integer, got {given!r:.60}")
        key = ("id", str(given)) if given is not None else (text,)
    return Row(stable_id(name, fmt, *key), text, _label(obj, where, fmt), group)


def read_task_file(path: Path, fmt: str = "auto", name: str | None = None) -> list[Row]:
    """Every row of a task file, validated as a whole (TaskDataError names file, line and field)."""
    from aar.w2s.tasks import _json_objects

    path = Path(path)
    name = name or path.stem
    if fmt not in FORMATS:
        raise TaskDataError(f"{path}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    rows: list[Row] = []
    first_line: dict[str, int] = {}  # row id (or normalised text) -> the line it was first seen on
    for lineno, where, obj in _json_objects(path, "task file"):
        if fmt == "auto":
            fmt = _detect(obj, where)
        row = _row(obj, fmt, name, where)
        for key in (row.id, "text\x1f" + norm_text(row.text)):
            if key in first_line:
                raise TaskDataError(
                    f"{where}: the same row as line {first_line[key]} (a duplicate could straddle splits)"
                )
            first_line[key] = lineno
        rows.append(row)
    if not rows:
        raise TaskDataError(f"{path}: no rows")
    labels = {row.label for row in rows}
    if len(labels) < 2:
        raise TaskDataError(f"{path}: every row has label {labels.pop()}; a task needs both classes")
    return rows


def declare(task_file: TaskFile, base_dir: Path | None = None) -> TaskFile:
    """Resolve the path (relative to ``base_dir``), validate the whole file and record its digest; a
    digest given beforehand must match. Returns the declaration to record and register."""
    if is_builtin(task_file.name):
        raise ValueError(f"task {task_file.name!r} is a built-in task; give the file's task another name")
    # lexically, not through symlinks: "../x" next to a symlinked campaigns/ means what the user sees
    path = Path(os.path.abspath((base_dir or Path.cwd()) / Path(task_file.path).expanduser()))
    digest = file_digest(path)
    if task_file.sha256 is not None and task_file.sha256 != digest:
        raise TaskDataError(
            f"{path}: changed since task {task_file.name!r} was declared (sha256 {digest[:12]}..., "
            f"recorded {task_file.sha256[:12]}...); a task's data must not change under its name"
        )
    read_task_file(path, task_file.format, task_file.name)
    return replace(task_file, path=str(path), sha256=digest)


def is_builtin(name: str) -> bool:
    """A name of the built-in catalogue (a file task may not shadow one: results would be ambiguous)."""
    from aar.w2s.tasks import _builtin_specs

    return name in _builtin_specs()


def _build(task_file: TaskFile) -> list[Row]:
    """The rows, after checking the file is still the one declared (never serve an edited file)."""
    path = Path(task_file.path)
    digest = file_digest(path)
    if task_file.sha256 is not None and digest != task_file.sha256:
        raise TaskDataError(
            f"{path}: changed since task {task_file.name!r} was declared (sha256 {digest[:12]}..., "
            f"recorded {task_file.sha256[:12]}...); declare it again (a new campaign or `aar referee init`)"
        )
    return read_task_file(path, task_file.format, task_file.name)


def register_task_file(task_file: TaskFile) -> TaskSpec:
    """Register a declared file task so ``load_task(name)`` finds it in this process. Registering the
    same declaration again is a no-op; a different file under the name of a file task replaces it; the
    name of a built-in task is refused."""
    from aar.w2s.tasks import _REGISTRY

    if is_builtin(task_file.name):
        raise ValueError(f"task {task_file.name!r} is a built-in task; give the file's task another name")
    existing = _REGISTRY.get(task_file.name)
    if existing is not None and getattr(existing.build, "keywords", {}).get("task_file") == task_file:
        return existing
    spec = TaskSpec(
        name=task_file.name,
        domain=task_file.domain,
        build=functools.partial(_build, task_file=task_file),
        role=task_file.role or "extra",  # type: ignore[arg-type]
        description=task_file.description or f"{task_file.format} rows from {Path(task_file.path).name}",
    )
    return register_task(spec, replace=True)


def register_task_files(declarations: Iterable[TaskFile | Mapping]) -> list[TaskFile]:
    """Register each declaration (records from a manifest or a config are accepted as they are)."""
    out = []
    for item in declarations:
        task_file = item if isinstance(item, TaskFile) else TaskFile.from_json(item)
        register_task_file(task_file)
        out.append(task_file)
    return out


def parse_spec(spec: str) -> TaskFile:
    """``aar referee init --task-file``'s syntax: ``PATH`` or ``key=value,...`` with keys path, name,
    format, domain, role, description (name defaults to the file's stem)."""
    fields: dict[str, str] = {}
    for i, part in enumerate(p for p in spec.split(",") if p.strip()):
        if "=" not in part:
            if i:
                raise ValueError(f"--task-file {spec!r}: {part!r} is not key=value")
            fields["path"] = part.strip()
            continue
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in ("path", "name", "format", "domain", "role", "description"):
            raise ValueError(f"--task-file {spec!r}: unknown key {key!r}")
        fields[key] = value
    if "path" not in fields:
        raise ValueError(f"--task-file {spec!r}: no path")
    fields.setdefault("name", Path(fields["path"]).stem.lower().replace(".", "_"))
    return TaskFile(**fields)


def place(
    tasks: list[str] | None, visible: list[str], declared: Iterable[TaskFile]
) -> tuple[list[str], list[str]]:
    """Where ``aar referee init`` puts file tasks: one named in ``tasks`` stays where it is; otherwise
    its role decides (home: first, replacing the default home task when ``tasks`` was not given;
    visible; held_out, the default: appended). Returns (tasks, visible)."""
    from aar.w2s import defaults

    declared = list(declared)
    given = tasks is not None
    names = list(tasks) if given else [defaults.HOME_TASK, *defaults.HELD_OUT_TASKS]
    shown = list(visible)
    for tf in declared:
        if tf.name in names:
            continue
        if tf.role == "home":
            if given:
                raise ValueError(f"task {tf.name!r} has role home but --tasks names {names[0]!r} first")
            names = [tf.name, *(n for n in names if n != defaults.HOME_TASK)]
            continue
        names.append(tf.name)
        if tf.role == "visible":
            shown.append(tf.name)
    return names, shown
