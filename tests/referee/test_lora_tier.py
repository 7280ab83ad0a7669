"""The LoRA tier through the referee: a data dir prepared on the text tier records its fixed student,
researchers' cards name it, and an official run rebuilds the same student inside the sandbox (the
model folder bound read-only, no labels, no network) and is scored like any other run.

The model is a tiny causal LM built from a config (tests/w2s/test_lora_student.py), so this runs on a
CPU in seconds; the packaged SmolLM2/gemma models go through the same code (bench/lora_w2s.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aar.referee.datadir import DataStore, init_data_dir
from aar.sandbox import bubblewrap_available
from aar.w2s import tasks
from aar.w2s.tasks import Row, TaskSpec, stable_id

from ..w2s.test_lora_student import tiny_lm, toy_rows  # noqa: F401 (tiny_lm is a fixture)
from .test_first_result_first import API, Referee

TASK = "toy_films"


@pytest.fixture(scope="module")
def lora_data(tmp_path_factory, tiny_lm):  # noqa: F811
    """One data dir for the module (preparing it trains the LoRA teacher and ceiling)."""
    base = tmp_path_factory.mktemp("lora-referee")
    texts, labels = toy_rows(1600, seed=3)  # the home profile gives the teacher 5% (80 rows)
    pairs = enumerate(zip(texts, labels, strict=True))
    rows = [Row(stable_id(TASK, i), text, int(y), f"g{i}") for i, (text, y) in pairs]
    spec = TaskSpec(name=TASK, domain="films", build=lambda: rows, description="Is this review positive?")
    # the sandbox's uid reads the model folder (a user's own folder must be readable; aar's converted
    # copies of the packaged models are made readable by the referee itself)
    for path in [Path(tiny_lm), *Path(tiny_lm).rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AAR_CACHE", str(base / "cache"))
        mp.setitem(tasks._REGISTRY, TASK, spec)
        data = base / "data"
        init_data_dir(
            data, tasks=[TASK], tier="lora", models={"weak": tiny_lm, "strong": tiny_lm}, log=lambda *_a: None
        )
        yield data


def test_the_data_dir_and_the_card_carry_the_tiers_student(lora_data, tiny_lm):  # noqa: F811
    manifest = json.loads((lora_data / "manifest.json").read_text())
    assert manifest["tier"] == "lora" and manifest["models"] == {"weak": tiny_lm, "strong": tiny_lm}
    td = DataStore(lora_data).task(TASK)
    assert td.student["kind"] == "lora" and td.student["model"] == tiny_lm
    card = td.card().model_dump()
    assert card["student"]["kind"] == "lora" and card["student"]["label_words"] == [" Yes", " No"]
    ctx = td.context("final", seed=0)
    assert ctx.reads_texts and list(ctx.test_inputs) == td.texts["final"]


@pytest.mark.skipif(not bubblewrap_available(), reason="needs bubblewrap")
def test_an_official_run_trains_the_tiers_student_in_the_sandbox(lora_data, fresh_db_url, tmp_path):
    with Referee(lora_data, fresh_db_url(), determinism_check=False) as r:
        # a feature-only idea cannot run on a text tier: skipped, not a crash
        assert r.ref.runs.ensure_baselines(["vanilla", "zeroshot_prior"]) == 1
        run_id = r.submit(tmp_path, task=TASK)
        done = r.wait_status(run_id, {"done", "failed"}, timeout=300)
        assert done["status"] == "done", done
        home = done["results"][TASK]
        assert set(home) >= {"public", "private"}
        assert done["sandbox_backend"] == "bubblewrap"
        # the sandboxed run trains the same student as the in-process vanilla baseline (one thread there,
        # several here: equal up to rounding), so their paired accuracy difference is ~0
        assert abs(home["vs_vanilla"]["private"]["acc_diff"]) < 0.05
        mine = r.client.get(f"{API}/runs/{run_id}", headers=r.headers("alice")).json()
        assert set(mine["released"]) == {TASK}
