"""Backends by name: the built-ins load lazily, a backend of one file registered from a test module runs
a researcher through a campaign file, the CLI and campaign validation read the registry (so do the price
table and the dependency and credential checks), and every mistake is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aar.agents.backends import registry
from aar.agents.backends.registry import (
    BackendMissingDependency,
    UnknownBackend,
    backend,
    backend_info,
    backend_names,
)
from aar.agents.factory import Settings, build
from aar.agents.prices import PriceTable
from aar.agents.transcript import Transcript
from aar.lab.campaign import CampaignError, backend_problems, load, parse
from tests.agents import toy_backend
from tests.agents.conftest import HELD_TASK, HOME_TASK

ROOT = Path(__file__).resolve().parents[2]
AAR = [sys.executable, "-m", "aar.cli"]
TOY_CAMPAIGN = """\
name: toy
testbed: {home: %(home)s, held_out: [%(held)s], tier: fast, max_rows: 1500}
defaults: {backend: toy, budget: {minutes: 3, turns: 10}}
researchers:
  - {name: %(name)s, direction: "Try the toy direction."}
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGINS_ENV}
    return {**env, **extra}


def test_builtins_are_registered_without_importing_their_sdks() -> None:
    code = (
        "import sys; from aar.agents.backends import backend_names, backend_info; "
        "names = backend_names(); info = backend_info('anthropic'); "
        "print(json.dumps([names, info.default_model, info.env_key, "
        "[m for m in ('anthropic', 'openai', 'claude_agent_sdk') if m in sys.modules]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, env=_env(), check=True
    )
    names, model, key, imported = json.loads(out.stdout)
    assert {"anthropic", "openai", "claude-code", "scripted"} <= set(names)
    assert (model, key, imported) == ("claude-sonnet-4-5", "ANTHROPIC_API_KEY", [])


def test_price_table_reads_the_registry() -> None:
    prices = PriceTable()
    assert prices.price("claude-opus-4-6").input == 5.0  # declared by the anthropic registration
    assert prices.price("gpt-5-mini").output == 2.0  # by the openai one
    assert prices.price("toy-1") == toy_backend.TOY_PRICE  # by the test module's registration


def test_toy_backend_runs_a_researcher_through_a_campaign_file(referee, base, agent_name, tmp_path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_CAMPAIGN % {"name": agent_name, "home": HOME_TASK, "held": HELD_TASK})
    (r,) = load(path).resolved()
    assert (r.backend, r.model) == ("toy", None)
    settings = Settings(
        workspace=base / agent_name,
        referee=str(referee.socket),
        token=referee.add_agent(agent_name),
        backend=r.backend,
        model=r.model,
        direction=r.direction,
        hours=r.budget.minutes / 60,
        max_turns=r.budget.turns,
        seed=r.seed,
        public=referee.public,
    )
    built = build(settings)
    assert type(built.researcher.backend) is toy_backend.ToyBackend
    reason = built.run(settings.model)
    built.transcript.close()
    assert reason == "the researcher declared its work finished"
    records = Transcript(built.transcript.path).records()
    start = next(x for x in records if x["type"] == "session_start")
    assert (start["backend"], start["model"]) == ("toy", "toy-1")
    results = [x for x in records if x["type"] == "tool_result"]
    assert [x["name"] for x in results] == ["write_file", "notebook", "leaderboard"]
    assert not any(x["is_error"] for x in results), results
    assert (built.home.workspace / "notes" / "toy.md").read_text() == ("direction: Try the toy direction.\n")
    # four turns at the toy's usage, priced by the toy's registration
    expected = 4 * PriceTable().cost("toy-1", toy_backend.USAGE)
    assert built.budget.usd == pytest.approx(expected) and expected > 0


def test_cli_and_lab_find_a_plugin_backend_by_module_or_file(tmp_path) -> None:
    campaign = tmp_path / "toy.yaml"
    campaign.write_text(TOY_CAMPAIGN % {"name": "toyer", "home": HOME_TASK, "held": HELD_TASK})
    check = [*AAR, "lab", "check", str(campaign)]
    refused = subprocess.run(check, capture_output=True, text=True, env=_env())
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "defaults.backend: Value error, unknown backend 'toy'" in refused.stderr
    ok = subprocess.run(
        check,
        capture_output=True,
        text=True,
        env=_env(AAR_PLUGINS="tests.agents.toy_backend"),
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["resolved_researchers"][0]["backend"] == "toy"
    listed = subprocess.run(
        [*AAR, "agent", "backends", "--json"],
        capture_output=True,
        text=True,
        env=_env(AAR_PLUGINS=str(Path(toy_backend.__file__))),
        check=True,
    )
    toy = next(b for b in json.loads(listed.stdout) if b["name"] == "toy")
    assert toy["default_model"] == "toy-1" and toy["models_priced"] == ["toy-1"] and toy["missing"] == []
    broken = subprocess.run(
        [*AAR, "agent", "backends"], capture_output=True, text=True, env=_env(AAR_PLUGINS="no_such_mod_xyz")
    )
    assert broken.returncode != 0 and "plugin 'no_such_mod_xyz' failed to import" in broken.stderr


@pytest.fixture
def needs_sdk():
    @backend("needs-sdk", requires=("surely_not_installed_xyz",), install="pip install xyz", env_key="XYZ")
    def loader():  # never called: the dependency check comes first
        raise AssertionError("the loader ran although its dependency is missing")

    yield "needs-sdk"
    registry._REGISTRY.pop("needs-sdk", None)


def test_missing_dependencies_and_keys_are_named(needs_sdk) -> None:
    with pytest.raises(BackendMissingDependency, match=r"needs surely_not_installed_xyz.*pip install xyz"):
        registry.create_backend(needs_sdk)
    c = parse({"name": "x", "researchers": [{"name": "a", "backend": needs_sdk}]})
    assert backend_problems(c, {}) == [
        "researcher a: backend needs-sdk needs surely_not_installed_xyz (pip install xyz)",
        "researcher a: backend needs-sdk needs XYZ in the environment",
    ]
    assert backend_problems(c, {"XYZ": "k"})[1:] == []


def test_bad_names_are_clear_errors() -> None:
    with pytest.raises(UnknownBackend, match=r"unknown backend 'nope'; registered: anthropic, claude-code"):
        backend_info("nope")
    with pytest.raises(CampaignError, match=r"researchers.0.backend: Value error, unknown backend 'nope'"):
        parse({"name": "x", "researchers": [{"backend": "nope"}]})
    with pytest.raises(ValueError, match="use letters"):
        backend("bad name")
    with pytest.raises(ValueError, match="runs its own loop"):
        registry.create_backend("claude-code") if "claude-code" in backend_names() else None
