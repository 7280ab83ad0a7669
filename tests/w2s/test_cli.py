"""The CLI as a user runs it: a real subprocess, real (fast-tier) models on a small subset."""

from __future__ import annotations

import json
import subprocess
import sys

AAR = [sys.executable, "-m", "aar.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AAR, *args], capture_output=True, text=True, timeout=300)


def test_tasks_json_lists_roles_and_sizes():
    proc = run("w2s", "tasks", "--json")
    assert proc.returncode == 0, proc.stderr
    tasks = json.loads(proc.stdout)
    roles = {t["name"]: t["role"] for t in tasks}
    assert list(roles.values()).count("home") == 1
    assert list(roles.values()).count("held_out") >= 1
    splits = {"weak_train", "student_train", "dev", "final"}
    for t in tasks:
        assert set(t) >= {"name", "domain", "role", "sizes"}
        if "error" in t:  # a BIG-bench task without the sdist: said so, with what to do
            assert t["role"] == "extra" and t["sizes"] == {} and "fetch-data --sdist" in t["error"], t
        else:
            assert set(t["sizes"]) == splits, t
    assert all(set(t["sizes"]) == splits for t in tasks if t["role"] != "extra")  # the default testbed builds


def test_run_json_has_the_documented_keys():
    proc = run("w2s", "run", "--method", "vanilla", "--seeds", "2", "--fast", "--max-rows", "1000", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in (
        "task",
        "method",
        "seeds",
        "weak_acc",
        "ceiling_acc",
        "transfer_acc",
        "pgr",
        "pgr_ci",
        "gap_ci",
        "n_test",
        "seconds",
    ):
        assert key in out
    assert out["method"] == "vanilla" and out["seeds"] == 2
    assert 0.4 < out["weak_acc"] <= 1 and out["n_test"] > 20
    assert out["gap_ci"][0] <= out["ceiling_acc"] - out["weak_acc"] <= out["gap_ci"][1]


def test_bad_input_is_a_clear_error_not_a_traceback():
    proc = run("w2s", "run", "--task", "no_such_task", "--fast", "--json")
    assert proc.returncode == 2
    assert "unknown task 'no_such_task'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("w2s", "run", "--method", "no_such_method", "--fast", "--max-rows", "1000")
    assert proc.returncode == 2 and "unknown method" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("w2s", "run", "--seeds", "0")
    assert proc.returncode == 2 and "seeds" in proc.stderr
