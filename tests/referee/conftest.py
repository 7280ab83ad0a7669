"""Referee fixtures: one real private data dir per session (fast tier, small subsets, real features),
a fresh SQLite database per test, the app in-process (TestClient) with real git and real sandboxes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aar.referee.app import Referee, create_app
from aar.referee.auth import add_agent
from aar.referee.config import RefereeConfig
from aar.referee.datadir import init_data_dir

# Three tasks whose teachers beat the majority class on the fast tier at 2000 rows: the home task has a
# dev PGR that is defined; the held-out one is for custody (its name is not a substring of another's,
# so "never named to a researcher" is checked by substring).
HOME, HELD, VISIBLE = "navigate", "navigate_turns", "sentiment_movies"
_counter = itertools.count()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """navigate (home), navigate_turns (held out) and sentiment_movies (visible), 2000 rows each at
    most; each passes init's teacher check (its own test is in test_custody.py)."""
    d = tmp_path_factory.mktemp("referee") / "data"
    init_data_dir(
        d, tasks=[HOME, HELD, VISIBLE], visible=[VISIBLE], tier="fast", max_rows=2000, log=lambda *_a: None
    )
    RefereeConfig(data_dir=d, seeds=2).save()
    return d


@dataclass
class Env:
    client: TestClient
    ref: Referee
    config: RefereeConfig
    tokens: dict[str, str] = field(default_factory=dict)

    def agent(self, name: str, admin: bool = False) -> dict[str, str]:
        if name not in self.tokens:
            self.tokens[name] = add_agent(self.ref.db, name, admin=admin)
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def dev_preds(self, task: str = HOME, values=None) -> dict[str, float]:
        td = self.ref.data.task(task)
        vals = td.weak("dev") if values is None else values
        return {i: float(v) for i, v in zip(td.ids["dev"], vals, strict=True)}


@pytest.fixture
def make_env(data_dir, tmp_path):
    envs: list[Env] = []

    def make(**overrides) -> Env:
        n = next(_counter)
        overrides.setdefault("executor", "none")
        config = RefereeConfig.load(data_dir, db_url=f"sqlite:///{tmp_path}/referee-{n}.db", **overrides)
        app = create_app(config)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        env = Env(client, app.state.referee, config)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.client.__exit__(None, None, None)


@pytest.fixture
def env(make_env) -> Env:
    return make_env()
