"""Referee fixtures: one real private data dir per session (fast tier, small subsets, real features),
a fresh database per referee, the app in-process (TestClient) with real git and real sandboxes.

The database is SQLite (the referee's default) unless ``AAR_TEST_DB=postgres``: then every referee of
the suite gets a fresh database on a real PostgreSQL server that the suite starts itself
(``pgserver.py``; ``make test-postgres``). ``pg_server`` is also used directly by the tests that
exist only for PostgreSQL (``test_postgres.py``), whatever the backend of the rest.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aar.referee.app import Referee, create_app
from aar.referee.auth import add_agent
from aar.referee.config import RefereeConfig
from aar.referee.datadir import init_data_dir

from .pgserver import PgServer, PgUnavailable

# Three tasks whose teachers beat the majority class on the fast tier at 2000 rows: the home task has a
# dev PGR that is defined; the held-out one is for custody (its name is not a substring of another's,
# so "never named to a researcher" is checked by substring).
HOME, HELD, VISIBLE = "navigate", "navigate_turns", "sentiment_movies"
_counter = itertools.count()
BACKENDS = ("sqlite", "postgres")


def backend() -> str:
    """The database the referee fixtures use: ``AAR_TEST_DB`` (sqlite by default)."""
    name = os.environ.get("AAR_TEST_DB", "sqlite").strip().lower() or "sqlite"
    if name == "postgresql":
        name = "postgres"
    if name not in BACKENDS:
        raise pytest.UsageError(f"AAR_TEST_DB={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def pytest_report_header(config) -> str:  # noqa: ANN001
    return f"referee database: {backend()} (AAR_TEST_DB)"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the session, on a Unix socket in a temporary directory. Fails (never
    skips) where PostgreSQL is not installed, saying how to install it."""
    try:
        server = PgServer()
    except PgUnavailable as e:
        pytest.fail(f"PostgreSQL tests cannot start a server: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_db_url(request, tmp_path) -> Iterator[Callable[[str], str]]:
    """``fresh_db_url(name)``: the URL of a new, empty database on the suite's backend (a file in this
    test's tmp dir, or a new database on the session's PostgreSQL server, dropped after the test)."""
    made: list[str] = []
    server: PgServer | None = request.getfixturevalue("pg_server") if backend() == "postgres" else None

    def make(name: str = "referee") -> str:
        if server is None:
            return f"sqlite:///{tmp_path}/{name}-{next(_counter)}.db"
        made.append(server.new_database())
        return made[-1]

    yield make
    for url in made:
        server.drop_database(url)  # type: ignore[union-attr]


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
def make_env(data_dir, fresh_db_url):
    envs: list[Env] = []

    def make(**overrides) -> Env:
        overrides.setdefault("executor", "none")
        if "db_url" not in overrides:  # several referees may share one database (test_postgres.py)
            overrides["db_url"] = fresh_db_url("referee")
        config = RefereeConfig.load(data_dir, **overrides)
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
