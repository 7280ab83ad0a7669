"""A campaign on the LoRA tier with a task brought from a file, end to end: the referee prepares the
task with LoRA students (teacher and ceiling), researchers' sandboxes read the model folder for their
local runs, official runs rebuild the same student in the referee's sandbox, and the report has them.

The model is a tiny causal LM built from a config (no weights), named by folder in the campaign's
``testbed.models``, so this runs on a CPU; slow (a whole campaign), run with ``make test-slow``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.lab.minilab import run_lab
from tests.w2s.test_lora_student import tiny_lm, toy_rows  # noqa: F401 (tiny_lm is a fixture)


@pytest.mark.slow
def test_a_byo_campaign_runs_end_to_end_on_the_lora_tier(tmp_path: Path, tiny_lm: str) -> None:  # noqa: F811
    texts, labels = toy_rows(1600, seed=5)  # the home profile gives the teacher 5% (80 rows)
    with (tmp_path / "toy.jsonl").open("w") as f:
        for i, (text, y) in enumerate(zip(texts, labels, strict=True)):
            # numbered: the toy texts repeat, and a task file refuses duplicate rows
            f.write(json.dumps({"text": f"{text} (review {i})", "label": int(y), "group": f"g{i}"}) + "\n")
    for path in [Path(tiny_lm), *Path(tiny_lm).rglob("*")]:  # the sandboxes' uids read the model
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    campaign = {
        "name": "byo-lora",
        "testbed": {
            "task_files": [
                {
                    "name": "toy_films",
                    "path": "toy.jsonl",
                    "format": "text",
                    "domain": "films",
                    "role": "home",
                    "description": "Is this review positive?",
                }
            ],
            "held_out": [],
            "tier": "lora",
            "models": {"weak": tiny_lm, "strong": tiny_lm},
        },
        "referee": {"seeds": 1, "port": 0, "drain_minutes": 5, "baselines": ["vanilla", "soft"]},
        "defaults": {"backend": "scripted", "budget": {"minutes": 3}},
        "researchers": [{"name": "prior", "direction": "Unsupervised elicitation of the strong prior."}],
    }
    path = tmp_path / "byo-lora.yaml"
    path.write_text(yaml.safe_dump(campaign))
    folder = tmp_path / "run"
    r = run_lab([str(path), "--out", str(folder)], timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    snap = json.loads((folder / "snapshot.json").read_text())
    done = [run for run in snap["runs"] if run["status"] == "done"]
    assert {run["idea_path"] for run in done if run["baseline"]} == {"vanilla", "soft"}
    mine = [run for run in done if not run["baseline"]]
    assert mine, [(run["idea_path"], run["status"], run.get("error")) for run in snap["runs"]]
    assert all(set(run["results"]) == {"toy_films"} for run in done)
    report = (folder / "report.md").read_text()
    assert "toy_films" in report and mine[0]["idea_path"] in report
    card = json.loads((folder / "public" / "toy_films" / "card.json").read_text())
    assert card["student"]["kind"] == "lora"
