"""Tasks from a user's files: the three formats, hashed ids and groups that never straddle splits, and
every malformed file refused with an error naming the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aar.w2s import tasks as tasks_module
from aar.w2s.task_files import (
    TaskFile,
    declare,
    parse_spec,
    place,
    read_task_file,
    register_task_file,
)
from aar.w2s.tasks import TaskDataError, load_task

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "campaigns" / "byo" / "critics.jsonl"


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _binary(n: int = 40) -> list[dict]:
    return [{"question": f"q{i // 2}?", "choice": f"answer {i}", "label": i % 3 == 0} for i in range(n)]


@pytest.fixture
def registry():
    """Leave the process's registry as it was (file tasks register into it)."""
    saved = dict(tasks_module._REGISTRY)
    yield
    tasks_module._REGISTRY.clear()
    tasks_module._REGISTRY.update(saved)


def test_three_formats_ids_and_groups(tmp_path: Path) -> None:
    rows = read_task_file(_write(tmp_path / "b.jsonl", _binary()), name="b")
    assert len(rows) == 40 and {r.label for r in rows} == {0, 1}
    assert rows[0].group == rows[1].group != rows[2].group  # grouped by question
    assert rows[0].text == "q0?\n\nAnswer: answer 0"
    pref = [
        {"prompt": "p1", "first": "good", "second": "bad", "label": "A"},
        {"prompt": "p1", "first": "bad", "second": "good", "label": "B"},
    ]
    rows = read_task_file(_write(tmp_path / "p.jsonl", pref), name="p")
    assert [r.label for r in rows] == [1, 0] and rows[0].group == rows[1].group
    assert "Response A: good\n\nResponse B: bad" in rows[0].text
    text = [{"text": "a b", "label": 1, "group": "doc1"}, {"text": "c d", "label": 0, "group": "doc1"}]
    rows = read_task_file(_write(tmp_path / "t.jsonl", [*text, {"text": "e", "label": True}]), name="t")
    assert rows[0].group == rows[1].group == "doc1" and rows[2].group == "e"
    # ids: a hash of name + content, the same whatever the line order, never the label or the position
    ids = {r.text: r.id for r in rows}
    again = read_task_file(_write(tmp_path / "t2.jsonl", [{"text": "e", "label": True}, *text]), name="t")
    assert {r.text: r.id for r in again} == ids
    assert all(len(i) == 16 and "1" != i and "doc" not in i for i in ids.values())


@pytest.mark.parametrize(
    ("records", "fmt", "needle"),
    [
        (['{"question": "q", "choice": "c", "label": tru'], "auto", r"bad\.jsonl, line 1: not valid JSON"),
        (
            [{"question": "q", "choice": "c", "label": True}, [1, 2]],
            "auto",
            r"line 2: expected a JSON object",
        ),
        (
            [{"question": "q", "choice": "c", "label": True}, {"question": "q", "label": False}],
            "auto",
            r"bad\.jsonl, line 2, field 'choice': missing \(a binary row has question, choice, label\)",
        ),
        (
            [
                {"question": "q", "choice": "c", "label": True},
                {"question": "q", "choice": "d", "label": "yes"},
            ],
            "auto",
            r"line 2, field 'label': must be true/false or 0/1, got 'yes'",
        ),
        (
            [
                {"prompt": "p", "first": "a", "second": "b", "label": "A"},
                "",
                {"prompt": "p", "first": "a", "second": "c", "label": "C"},
            ],
            "auto",
            r"line 3, field 'label': must be \"A\" or \"B\", got 'C'",
        ),
        (
            [{"prompt": "p", "first": "", "second": "b", "label": "A"}],
            "preference",
            r"line 1, field 'first': must be a non-empty string",
        ),
        ([{"text": "x", "label": 2}], "text", r"line 1, field 'label': must be true/false or 0/1, got 2"),
        ([{"text": "x", "label": 1, "group": [1]}], "text", r"line 1, field 'group': must be a string"),
        ([{"text": "x", "label": 1}, {"text": " X ", "label": 0}], "text", r"line 2: the same row as line 1"),
        ([{"txt": "x", "label": 1}], "auto", r"line 1: neither a binary row"),
        ([{"text": "x", "label": 1}], "binary", r"line 1, field 'question': missing"),
        (
            [{"text": "x", "label": 1}, {"text": "y", "label": 1}],
            "text",
            r"bad\.jsonl: every row has label 1",
        ),
        (["", "  "], "auto", r"bad\.jsonl: no rows"),
    ],
)
def test_malformed_files_name_file_line_and_field(
    tmp_path: Path, records: list, fmt: str, needle: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", records)
    with pytest.raises(TaskDataError, match=needle):
        read_task_file(path, fmt)


def test_missing_file_and_bad_declarations(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match=r"nope\.jsonl: cannot read task file"):
        declare(TaskFile("x", str(tmp_path / "nope.jsonl")))
    with pytest.raises(ValueError, match="task name 'Bad Name'"):
        TaskFile("Bad Name", "x.jsonl")
    with pytest.raises(ValueError, match="format 'csv'"):
        TaskFile("x", "x.jsonl", format="csv")
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        parse_spec("x.jsonl,colour=red")
    spec = parse_spec("path=data/My.Task.jsonl,domain=code,role=home")
    assert (spec.name, spec.domain, spec.role, spec.format) == ("my_task", "code", "home", "auto")


def test_registered_file_task_splits_by_group_and_refuses_an_edited_file(tmp_path: Path, registry) -> None:
    path = _write(tmp_path / "mine.jsonl", _binary(600))
    declared = declare(TaskFile("mine", "mine.jsonl", domain="quiz"), base_dir=tmp_path)
    assert declared.path == str(path.resolve()) and len(declared.sha256 or "") == 64
    register_task_file(declared)
    register_task_file(declared)  # the same declaration again: a no-op, not "already registered"
    task = load_task("mine", role="home")
    assert task.domain == "quiz" and task.role == "home" and len(task.rows) == 600
    where = {row.group: split for split, rows in task.splits.items() for row in rows}
    assert all(where[row.group] == split for split, rows in task.splits.items() for row in rows)
    assert all(task.sizes()[s] for s in ("weak_train", "student_train", "dev", "final"))
    with pytest.raises(ValueError, match="'navigate' is a built-in task"):
        register_task_file(TaskFile("navigate", str(path)))
    # edited after it was declared: refused, never served under the old name
    _write(path, _binary(602))
    with pytest.raises(TaskDataError, match=r"mine\.jsonl: changed since task 'mine' was declared"):
        load_task("mine")
    with pytest.raises(TaskDataError, match="changed since"):
        declare(declared)


def test_place_by_role() -> None:
    home = TaskFile("mine", "x.jsonl", role="home")
    tasks, visible = place(None, [], [home])
    assert tasks[0] == "mine" and "sentiment_movies" not in tasks
    assert place(["navigate"], [], [TaskFile("v", "x.jsonl", role="visible")]) == (["navigate", "v"], ["v"])
    assert place(["navigate"], [], [TaskFile("h", "x.jsonl")]) == (["navigate", "h"], [])
    with pytest.raises(ValueError, match="has role home but --tasks names 'navigate' first"):
        place(["navigate"], [], [home])


def test_example_is_valid_and_rebuilds_identically(tmp_path: Path) -> None:
    """The shipped example is what the script builds, in the released binary format."""
    import subprocess
    import sys

    rows = read_task_file(EXAMPLE, "binary", "critics")
    assert 300 <= len(rows) <= 2000 and abs(sum(r.label for r in rows) / len(rows) - 0.5) < 0.05
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_byo_example.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_w2s_run_measures_a_task_file(tmp_path: Path) -> None:
    """`aar w2s run --task-file`: weak and ceiling on your file before a referee is involved (navigate's
    rows as a text file, so the fast tier's features are cached); a bad file: exit 2, file and line."""
    import subprocess
    import sys

    path = tmp_path / "walks.jsonl"
    rows = load_task("navigate").rows
    path.write_text(
        "".join(json.dumps({"text": r.text, "label": r.label, "group": r.group}) + "\n" for r in rows)
    )
    cmd = [sys.executable, "-m", "aar.cli", "w2s", "run", "--fast", "--seeds", "1", "--json"]
    r = subprocess.run(
        [*cmd, "--task-file", f"path={path},name=walks,role=home"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["task"] == "walks" and out["ceiling_acc"] > out["weak_acc"] > 0.55
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "no"}\n')
    r = subprocess.run([*cmd, "--task-file", str(path)], capture_output=True, text=True)
    assert (
        r.returncode == 2 and "walks.jsonl, line 2, field 'label'" in r.stderr and "Traceback" not in r.stderr
    )
