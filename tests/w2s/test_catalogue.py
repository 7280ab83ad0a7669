"""The built-in task catalogue is data: a table read by the registry, not a side effect of an import."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from aar.w2s import defaults, pypi_sources, sources, tasks
from aar.w2s.tasks import TaskSpec, get_spec, load_task, register_task, task_specs

# (name, domain, role, max_rows) of every built-in task, in order, as registered before the catalogue
# became a table: the move must not add, drop, rename, re-role or resize a task.
BEFORE = [
    ("sentiment_hotels", "reviews/hotels", "extra", 7000),
    ("sentiment_medicine", "reviews/medicine", "extra", 4000),
    ("sentiment_products", "reviews/products", "extra", 4000),
    ("sentiment_school", "reviews/school", "extra", 4000),
    ("fever", "fact-checking", "extra", 2000),
    ("vitaminc", "fact-checking/evidence", "extra", 2000),
    ("epistemic", "reasoning/entailment", "extra", 2000),
    ("fallacy", "reasoning/logic", "extra", 2000),
    ("strategyqa", "qa/commonsense", "extra", 2000),
    ("math_answer", "math", "extra", 2000),
    ("code_description", "code", "extra", None),
    ("parentheses", "code/syntax", "extra", None),
    ("navigate_bb", "reasoning/spatial", "extra", None),
    ("sentiment_movies", "reviews/movies", "home", 7000),
    ("navigate", "reasoning/spatial", "held_out", 1500),
    ("navigate_turns", "reasoning/spatial", "extra", 1500),
    ("hhh", "chat/preference", "extra", None),
    ("sports", "commonsense/sports", "extra", None),
    ("humaneval_match", "code/python", "extra", None),
]


def test_importing_the_task_modules_registers_nothing():
    """A fresh interpreter: the imports leave the registry empty, the table is only read when asked
    for, and reading it writes nothing into the registry either."""
    code = (
        "import sys\n"
        "import aar.w2s.tasks as tasks\n"
        "lazy = 'aar.w2s.sources' not in sys.modules\n"
        "import aar.w2s.sources, aar.w2s.defaults, aar.w2s.pypi_sources\n"
        "after_import = dict(tasks._REGISTRY)\n"
        "names = [s.name for s in tasks.task_specs()]\n"
        "print(json.dumps([lazy, len(after_import), len(tasks._REGISTRY), names]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lazy, registered_on_import, registered_after_read, names = json.loads(out.stdout)
    assert lazy, "importing aar.w2s.tasks imported the catalogue"
    assert registered_on_import == 0 and registered_after_read == 0
    assert names == [name for name, *_ in BEFORE]


def test_the_catalogue_lists_the_same_tasks_with_the_same_roles():
    assert [(s.name, s.domain, s.role, s.max_rows) for s in task_specs()] == BEFORE
    assert [e.name for e in sources.CATALOGUE] == [name for name, *_ in BEFORE]
    assert all(s.split_seed == 0 and s.description for s in task_specs())
    assert get_spec("sentiment_movies").role == "home" and get_spec("navigate").role == "held_out"


def test_roles_are_read_from_the_defaults_not_written_anywhere(monkeypatch):
    monkeypatch.setattr(defaults, "HOME_TASK", "navigate_turns")
    monkeypatch.setattr(defaults, "HELD_OUT_TASKS", ("sentiment_movies",))
    assert get_spec("navigate_turns").role == "home" and get_spec("sentiment_movies").role == "held_out"
    assert get_spec("navigate").role == "extra"
    monkeypatch.undo()
    assert get_spec("navigate_turns").role == "extra" and get_spec("navigate").role == "held_out"


def test_cached_rows_keep_their_file_name_and_content(monkeypatch, tmp_path):
    """Built once into ``{name}-v{TASK_FORMAT_VERSION}.jsonl``; the generated held-out task's rows are
    pinned: a builder that changes them must bump the version (and this digest)."""
    monkeypatch.setenv("AAR_CACHE", str(tmp_path))
    rows = get_spec("navigate_turns").build()
    assert rows == pypi_sources.navigate_turns()
    assert (tmp_path / "data" / "tasks" / f"navigate_turns-v{sources.TASK_FORMAT_VERSION}.jsonl").exists()
    navigate = get_spec("navigate").build()
    digest = hashlib.sha256(json.dumps([r.__dict__ for r in navigate]).encode()).hexdigest()[:16]
    assert (sources.TASK_FORMAT_VERSION, len(navigate), digest) == (4, 2000, "b48d74e6286155b6")
    assert load_task("navigate").sizes() == {"weak_train": 313, "student_train": 442, "dev": 0, "final": 745}


def test_user_tasks_register_beside_the_catalogue(monkeypatch):
    monkeypatch.setattr(tasks, "_REGISTRY", {})  # this test's registrations end with it
    mine = TaskSpec(name="my_task", domain="mine", build=lambda: [], role="visible")
    register_task(mine)
    assert get_spec("my_task") is mine and task_specs()[-1] is mine
    with pytest.raises(ValueError, match="already registered"):
        register_task(mine)
    with pytest.raises(ValueError, match="already registered"):  # a built-in name, too
        register_task(TaskSpec(name="navigate", domain="mine", build=lambda: []))
    own_navigate = TaskSpec(name="navigate", domain="mine", build=lambda: [], role="extra")
    register_task(own_navigate, replace=True)
    names = [s.name for s in task_specs()]
    assert get_spec("navigate") is own_navigate and names.count("navigate") == 1
    assert names.index("navigate") == [n for n, *_ in BEFORE].index("navigate")  # the built-in's place
    monkeypatch.setitem(tasks._REGISTRY, "coin_labels", mine)  # how the referee's tests add one
    assert get_spec("coin_labels") is mine
    with pytest.raises(KeyError, match="unknown task 'nope'; known tasks: .*my_task"):
        get_spec("nope")
