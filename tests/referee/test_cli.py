"""`aar referee` commands: add-agent prints the token alone; export-public; review."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from aar.referee.cli import app
from aar.referee.config import RefereeConfig
from aar.referee.db import Database, Flag, Run

from .conftest import HOME


def test_add_agent_export_and_review(data_dir, tmp_path, fresh_db_url):
    db = fresh_db_url("cli")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aar.cli",
            "referee",
            "add-agent",
            "carol",
            "--data",
            str(data_dir),
            "--db",
            db,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    token = proc.stdout
    assert token.startswith("aar_") and token.count("\n") == 1 and len(token.strip()) > 40
    runner = CliRunner()
    dup = runner.invoke(app, ["add-agent", "carol", "--data", str(data_dir), "--db", db])
    assert dup.exit_code == 2
    out = tmp_path / "public"
    assert runner.invoke(app, ["export-public", "--data", str(data_dir), "--out", str(out)]).exit_code == 0
    assert (out / HOME / "dev.jsonl").exists()

    database = Database(RefereeConfig.load(data_dir, db_url=db).database_url)
    with database.write() as s:
        run = Run(
            agent_id=1,
            commit="c" * 40,
            idea_path="i.py",
            task=HOME,
            seeds=1,
            day="d",
            status="done",
            results={},
        )
        s.add(run)
        s.flush()
        s.add(
            Flag(
                kind="pgr_above_one",
                subject_type="run",
                subject_id=run.id,
                agent_id=1,
                task=None,
                evidence={"pgr": 1.3},
            )
        )
        run_id = run.id
    listing = runner.invoke(app, ["review", "--data", str(data_dir), "--db", db, "--json"])
    assert listing.exit_code == 0 and json.loads(listing.stdout)[0]["kind"] == "pgr_above_one"
    marked = runner.invoke(
        app,
        [
            "review",
            "--data",
            str(data_dir),
            "--db",
            db,
            "--run",
            str(run_id),
            "--verdict",
            "rejected",
            "--reason",
            "PGR above 1: reads labels",
        ],
    )
    assert marked.exit_code == 0, marked.output
    with database.read() as s:
        assert s.get(Run, run_id).review_state == "rejected"
        assert all(f.state == "closed" for f in s.query(Flag))
    empty = runner.invoke(app, ["review", "--data", str(data_dir), "--db", db])
    assert "empty" in empty.stdout
    database.dispose()


def test_init_takes_a_tier_by_name_and_names_a_wrong_one(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["init", str(tmp_path / "a"), "--tier", "int8"])
    assert (
        bad.exit_code == 2
        and "--tier" in bad.output
        and "bf16" in bad.output
        and not (tmp_path / "a").exists()
    )
    both = runner.invoke(app, ["init", str(tmp_path / "b"), "--fast", "--tier", "bf16"])
    assert both.exit_code == 2 and "disagree" in both.output
    data = tmp_path / "c"
    ok = runner.invoke(
        app, ["init", str(data), "--tier", "fast", "--tasks", HOME, "--max-rows", "400", "--no-baselines"]
    )
    assert ok.exit_code == 0, ok.output
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["tier"] == "fast", manifest.get("tier")


def test_a_malformed_ray_option_is_a_cli_error_not_a_traceback(data_dir):
    runner = CliRunner()
    serve = ["serve", "--data", str(data_dir), "--port", "0"]
    for command in (["reproduce", "--data", str(data_dir)], serve):
        out = runner.invoke(app, [*command, "--ray", '{"address": '])
        assert out.exit_code == 2 and "--ray: not valid JSON" in out.output, out.output
        assert isinstance(out.exception, SystemExit), out.exception
