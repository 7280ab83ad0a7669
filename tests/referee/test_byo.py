"""`aar referee init --task-file`: a task from a user's file is prepared like a built-in one, recorded in
the manifest so another process (the referee's, which prepares held-out tasks by name) registers it
from there, never served after its file is edited, and a malformed file is refused before the data
dir is created."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aar.w2s.tasks import load_task

AAR = [sys.executable, "-m", "aar.cli"]


def _navigate_as_text_file(path: Path) -> Path:
    """navigate's rows as a ``{text, label, group}`` file (its features are in the test cache already)."""
    rows = load_task("navigate").rows
    path.write_text(
        "".join(json.dumps({"text": r.text, "label": r.label, "group": r.group}) + "\n" for r in rows)
    )
    return path


def test_init_prepares_a_file_task_that_another_process_finds_by_name(tmp_path: Path) -> None:
    task_file = _navigate_as_text_file(tmp_path / "walks.jsonl")
    data = tmp_path / "data"
    spec = f"path={task_file},name=walks,format=text,domain=spatial,role=held_out"
    r = subprocess.run(
        [
            *AAR,
            "referee",
            "init",
            str(data),
            "--fast",
            "--tasks",
            "navigate_turns",
            "--task-file",
            spec,
            "--max-rows",
            "1000",
            "--no-baselines",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["tasks"] == {"navigate_turns": "home", "walks": "held_out"}
    (record,) = manifest["task_files"]
    assert (
        record["name"] == "walks"
        and record["path"] == str(task_file.resolve())
        and len(record["sha256"]) == 64
    )
    meta = json.loads((data / "tasks" / "walks" / "meta.json").read_text())
    assert meta["domain"] == "spatial" and meta["role"] == "held_out"
    # a fresh process (the referee's) knows the task by name once it opens the data dir
    probe = (
        "import sys; from aar.referee.datadir import DataStore; from aar.w2s.tasks import load_task; "
        "s = DataStore(sys.argv[1]); t = load_task('walks', role='held_out'); "
        "print(t.domain, len(t.rows), s.task('walks').domain)"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(data)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["spatial", "1500", "spatial"], out.stderr[-2000:]
    # the file edited afterwards: refused by name, not served stale
    with task_file.open("a") as handle:
        handle.write(json.dumps({"text": "Take 1 step. Turn around.", "label": 0}) + "\n")
    out = subprocess.run([sys.executable, "-c", probe, str(data)], capture_output=True, text=True)
    assert out.returncode != 0 and "walks.jsonl: changed since task 'walks' was declared" in out.stderr


def test_init_refuses_a_malformed_file_before_creating_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "p", "first": "a", "second": "b", "label": "A"}\n' * 1 + '{"prompt": "q", "first": "a"}\n'
    )
    data = tmp_path / "data"
    for spec, needle in (
        (
            f"{bad}",
            "bad.jsonl, line 2, field 'second': missing (a preference row has prompt, first, second, label)",
        ),
        (f"path={tmp_path / 'none.jsonl'}", "none.jsonl: cannot read task file"),
        (f"path={bad},name=navigate", "'navigate' is a built-in task"),
        (f"path={bad},shape=round", "unknown key 'shape'"),
    ):
        r = subprocess.run(
            [*AAR, "referee", "init", str(data), "--fast", "--task-file", spec],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not data.exists()  # nothing half-built
