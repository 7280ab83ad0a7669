"""Bring your own task: a campaign declares tasks from files (validated whole when the campaign loads,
placed by role, their digest in the fingerprint), and a malformed file stops `aar lab run` with one
message naming the file, the line and the field before anything is created.

The end-to-end run of campaigns/byo.yaml (a report whose leaderboard has official runs on the file's
task) is ``test_byo_campaign_runs_end_to_end`` (slow)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aar.lab.campaign import CampaignError, fingerprint, load, parse
from tests.lab.minilab import AAR

ROOT = Path(__file__).resolve().parents[2]
BYO = ROOT / "campaigns" / "byo.yaml"
EXAMPLE = ROOT / "campaigns" / "byo" / "critics.jsonl"


def _campaign(tmp_path: Path, task_files: list[dict], **testbed) -> Path:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "c", "testbed": {**testbed, "task_files": task_files}}))
    return path


def _rows(n: int = 40) -> str:
    return "".join(
        json.dumps({"text": f"item {i}", "label": i % 2, "group": f"g{i // 4}"}) + "\n" for i in range(n)
    )


def test_shipped_byo_campaign_declares_the_example_at_home() -> None:
    c = load(BYO)
    (tf,) = c.testbed.task_files
    assert c.testbed.home == tf.name == "critics" and Path(tf.path).resolve() == EXAMPLE.resolve()
    assert tf.format == "binary" and tf.sha256 and len(tf.sha256) == 64
    assert c.testbed.tasks[0] == "critics" and c.testbed.tier == "default"


def test_paths_are_relative_to_the_campaign_and_roles_place_tasks(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text(_rows())
    (tmp_path / "data" / "b.jsonl").write_text(_rows(44))
    files = [
        {"name": "mine", "path": "data/a.jsonl", "role": "home", "domain": "toy"},
        {"name": "other", "path": "data/b.jsonl", "role": "visible"},
    ]
    c = load(_campaign(tmp_path, files, held_out=["navigate"]))
    assert c.testbed.tasks == ["mine", "navigate", "other"] and c.testbed.visible == ["other"]
    assert c.testbed.task_files[0].path == str((tmp_path / "data" / "a.jsonl").resolve())
    fp = fingerprint(c)
    # the fingerprint holds the file's digest: an edited file is another testbed (refused on resume)
    (tmp_path / "data" / "a.jsonl").write_text(_rows(48))
    assert fingerprint(load(_campaign(tmp_path, files, held_out=["navigate"]))) != fp
    # a file task listed by name needs no role; one neither listed nor given a role is an error
    listed = load(_campaign(tmp_path, [{"name": "mine", "path": "data/a.jsonl"}], home="mine"))
    assert listed.testbed.home == "mine"
    with pytest.raises(CampaignError, match="has no role and is not listed"):
        load(_campaign(tmp_path, [{"name": "mine", "path": "data/a.jsonl"}]))
    with pytest.raises(CampaignError, match="has role home but home is 'navigate'"):
        load(_campaign(tmp_path, files[:1], home="navigate", held_out=[]))
    with pytest.raises(CampaignError, match="has role visible but is listed as held_out"):
        load(_campaign(tmp_path, files[1:], held_out=["other"]))
    # a campaign without task files keeps its old fingerprint (resumable)
    plain = parse({"name": "c"})
    assert "task_files" not in json.dumps(plain.testbed.model_dump(exclude={"task_files"}))
    assert fingerprint(plain) == fingerprint(parse({"name": "c", "testbed": {"task_files": []}}))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"text": "a", "label": 1}\n{"text": "b", "label": "maybe"}\n', "bad.jsonl, line 2, field 'label'"),
        ('{"text": "a", "label": 1}\n{"text": "b"\n', "bad.jsonl, line 2: not valid JSON"),
        (
            '{"question": "q", "choice": "a", "label": true}\n{"question": "q", "label": false}\n',
            "field 'choice'",
        ),
    ],
)
def test_malformed_task_file_stops_lab_run_before_anything_starts(
    tmp_path: Path, content: str, needle: str
) -> None:
    (tmp_path / "bad.jsonl").write_text(content)
    campaign = _campaign(tmp_path, [{"name": "mine", "path": "bad.jsonl", "role": "home"}])
    with pytest.raises(CampaignError, match="testbed.task_files.0"):
        load(campaign)
    r = subprocess.run(
        [*AAR, "lab", "run", str(campaign), "--out", str(tmp_path / "o")], capture_output=True, text=True
    )
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing half-built


def test_missing_task_file_and_built_in_name(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match=r"nope\.jsonl: cannot read task file"):
        load(_campaign(tmp_path, [{"name": "mine", "path": "nope.jsonl", "role": "home"}]))
    (tmp_path / "a.jsonl").write_text(_rows())
    with pytest.raises(CampaignError, match="'navigate' is a built-in task"):
        load(_campaign(tmp_path, [{"name": "navigate", "path": "a.jsonl"}], home="navigate", held_out=[]))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_byo_campaign_runs_end_to_end(tmp_path: Path) -> None:
    """campaigns/byo.yaml (slow: ~4 min warm): the referee prepares the file's task by name, official runs
    are scored on it, and the report's leaderboard shows them (the held-out navigate beside them)."""
    from tests.lab.minilab import run_lab

    out = tmp_path / "byo"
    r = run_lab(
        [str(BYO), "--minutes", "1.5", "--out", str(out), "--set", "referee.drain_minutes=4"], timeout=1200
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "official leaderboard (home task: critics)" in r.stdout
    snapshot = json.loads((out / "snapshot.json").read_text())
    assert snapshot["home_task"] == "critics" and snapshot["held_out_tasks"] == ["navigate"]
    official = [run for run in snapshot["runs"] if run["status"] == "done" and not run["baseline"]]
    assert official and all(run["task"] == "critics" for run in official)
    home = official[0]["results"]["critics"]
    assert home["role"] == "home" and home["private"]["n_items"] > 300
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["task_files"][0]["name"] == "critics"
    assert "`critics`" in (out / "report.md").read_text()
