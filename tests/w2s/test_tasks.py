from __future__ import annotations

import json

import pytest

from aar.w2s.tasks import (
    FINAL_PARTS,
    PROFILES,
    SPLITS,
    Row,
    Task,
    TaskDataError,
    assign_splits,
    final_part,
    load_released_jsonl,
    load_task,
    read_rows_jsonl,
    stable_id,
    subsample_groups,
    task_specs,
)


def _rows(n: int, per_group: int = 1) -> list[Row]:
    return [Row(stable_id("t", i), f"text {i}", i % 2, f"g{i // per_group}") for i in range(n)]


def test_splits_are_disjoint_complete_and_reproducible():
    rows = _rows(2000)
    a = assign_splits(rows, seed=3)
    b = assign_splits(list(reversed(rows)), seed=3)
    ids = [r.id for name in SPLITS for r in a[name]]
    assert len(ids) == len(set(ids)) == len(rows)
    for name in SPLITS:
        assert {r.id for r in a[name]} == {r.id for r in b[name]}
    # fractions roughly as configured, and a different seed gives a different assignment
    assert 0.2 < len(a["weak_train"]) / 2000 < 0.3
    assert {r.id for r in assign_splits(rows, seed=4)["final"]} != {r.id for r in a["final"]}


def test_groups_never_straddle_splits():
    rows = _rows(3000, per_group=5)
    where: dict[str, set[str]] = {}
    for name, part in assign_splits(rows, seed=0).items():
        for r in part:
            where.setdefault(r.group, set()).add(name)
    assert all(len(s) == 1 for s in where.values())


def test_adding_rows_does_not_move_existing_rows():
    rows = _rows(1000)
    before = assign_splits(rows)
    after = assign_splits(rows + [Row("new", "new text", 1, "new-group")])
    for name in SPLITS:
        assert {r.id for r in before[name]} <= {r.id for r in after[name]}


def test_subsample_keeps_whole_groups_and_is_deterministic():
    rows = _rows(1000, per_group=4)
    a, b = subsample_groups(rows, 300), subsample_groups(rows, 300)
    assert a == b and len(a) == 300
    groups = {r.group for r in a}
    assert all(sum(r.group == g for r in a) == 4 for g in list(groups)[:20])


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "task.jsonl"
    good = json.dumps({"id": "a", "text": "hello", "label": 1})
    path.write_text(good + "\n" + '{"id": "b", "text": "x", "label": 1\n')
    with pytest.raises(TaskDataError, match=r"task\.jsonl, line 2: not valid JSON"):
        read_rows_jsonl(path)
    path.write_text(good + "\n" + json.dumps({"id": "b", "text": "x", "label": 7}) + "\n")
    with pytest.raises(TaskDataError, match=r"line 2: field 'label' must be 0 or 1"):
        read_rows_jsonl(path)
    path.write_text(good + "\n" + good + "\n")
    with pytest.raises(TaskDataError, match=r"line 2: duplicate id 'a'"):
        read_rows_jsonl(path)
    path.write_text(json.dumps({"id": "a", "label": 1}) + "\n")
    with pytest.raises(TaskDataError, match=r"line 1: missing field\(s\) text"):
        read_rows_jsonl(path)


def test_released_format_binary_and_preference(tmp_path):
    path = tmp_path / "math.jsonl"
    binary = [
        {"question": "1+1?", "choice": "2", "label": True},
        {"question": "1+1?", "choice": "3", "label": False},
    ]
    path.write_text("\n".join(json.dumps(r) for r in binary))
    rows = load_released_jsonl(path)
    assert [r.label for r in rows] == [1, 0]
    assert rows[0].group == rows[1].group  # same question, same group
    preference = [
        {"prompt": "Say hi", "first": "hi", "second": "go away", "label": "A"},
        {"prompt": "Say bye", "first": "no", "second": "bye", "label": "B"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in preference))
    rows = load_released_jsonl(path)
    assert [r.label for r in rows] == [1, 0] and "Response A: hi" in rows[0].text
    path.write_text(json.dumps({"prompt": "p", "first": "a", "second": "b", "label": "C"}))
    with pytest.raises(TaskDataError, match=r"math\.jsonl, line 1, field 'label': must be \"A\" or \"B\""):
        load_released_jsonl(path)


def test_registry_has_roles_and_real_tasks_load():
    specs = {s.name: s for s in task_specs()}
    roles = [s.role for s in specs.values()]
    assert roles.count("home") == 1 and roles.count("held_out") >= 1
    home = next(s for s in specs.values() if s.role == "home")
    held_domains = {s.domain.split("/")[0] for s in specs.values() if s.role == "held_out"}
    assert home.domain.split("/")[0] not in held_domains or len(held_domains) >= 1
    task = load_task(home.name, max_rows=1000)  # ~20 snippets per film: groups are coarse
    sizes = task.sizes()
    assert set(sizes) == set(SPLITS) and all(v > 0 for v in sizes.values())
    assert len({r.id for r in task.rows}) == len(task.rows)
    # ids are opaque hashes: no label or order in them
    assert all(len(r.id) == 16 and int(r.id, 16) >= 0 for r in task.rows[:50])


def test_final_parts_are_deterministic_group_whole_and_independent_of_splits():
    rows = _rows(6000, per_group=3)
    assert {final_part(0, r.group, 2 / 3) for r in rows} == set(FINAL_PARTS)
    parts = {r.group: final_part(0, r.group, 2 / 3) for r in rows}
    assert all(final_part(0, r.group, 2 / 3) == parts[r.group] for r in rows)  # groups never straddle
    assert 0.62 < sum(p == "private" for p in parts.values()) / len(parts) < 0.71
    assert all(final_part(0, r.group, 1.0) == "private" for r in rows)
    assert all(final_part(0, r.group, 0.0) == "public" for r in rows)
    # salted apart from assign_splits: the private share is the same inside every split
    for name, part in assign_splits(rows, seed=0).items():
        share = sum(parts[r.group] == "private" for r in part) / len(part)
        assert 0.6 < share < 0.73, name


def test_task_parts_align_with_the_final_split():
    task = Task("t", "d", _rows(3000), fractions=dict(PROFILES["home"].fractions))
    mask = task.final_private_mask()
    final = task.split("final")
    assert len(mask) == len(final) and 0 < sum(mask) < len(final)
    assert [r for r, m in zip(final, mask, strict=True) if m] == task.part("private")
    assert len(task.part("public")) + len(task.part("private")) == len(final)
    with pytest.raises(KeyError, match="unknown part"):
        task.part("secret")


def test_split_profiles_by_role():
    for profile in PROFILES.values():
        assert set(profile.fractions) == set(SPLITS) and abs(sum(profile.fractions.values()) - 1) < 1e-9
    home = next(s for s in task_specs() if s.role == "home")
    held = load_task(home.name, max_rows=1000, role="held_out")
    assert held.sizes()["dev"] == 0 and all(held.final_private_mask())
    assert 0.4 < held.sizes()["final"] / 1000 < 0.6
    for role in ("home", "visible", None):
        task = load_task(home.name, max_rows=1000, role=role)
        assert task.fractions == PROFILES["home"].fractions and task.private_fraction == 2 / 3
        assert all(v > 0 for v in task.sizes().values())
    held_out = next(s for s in task_specs() if s.role == "held_out")
    assert load_task(held_out.name, max_rows=300).fractions == PROFILES["held_out"].fractions
    with pytest.raises(KeyError, match="unknown task role"):
        load_task(home.name, max_rows=100, role="nope")
