"""Build a referee's private data dir in one call (used by `aar referee init` and by the lab).

Idempotent and crash-safe: task data is rebuilt only if its manifest is missing, baselines are scored
only once, and tokens are written durably *before* they are registered, so a kill at any point leaves
a state the next call completes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from aar.atomic import atomic_write
from aar.referee.auth import bind_uid, ensure_agent, new_token
from aar.referee.config import RefereeConfig
from aar.referee.db import Database

TOKENS_DIR = "tokens"  # agents' tokens kept by whoever created them (the lab), 0600 in a 0700 folder


def ensure_token(db, path: Path, name: str, *, admin: bool = False) -> str:  # noqa: ANN001 (Database)
    """The agent's token from ``path``, creating and registering it first if needed."""
    if path.exists():
        token = path.read_text().strip()
    else:
        token = new_token()
        atomic_write(path, token + "\n", mode=0o600)
    ensure_agent(db, name, token, admin=admin)
    return token


def initialise(
    data: Path,
    *,
    tasks: list[str] | None = None,
    visible: Sequence[str] = (),
    tier: str = "default",
    max_rows: int | None = None,
    task_files: Sequence = (),
    baselines: bool = True,
    rebuild: bool = False,
    defer_held_out: bool = False,
    models: Mapping[str, str] | None = None,
    agents: Sequence[str] | Mapping[str, int | None] = (),
    log: Callable[[str], None] = print,
    show_progress: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
    **config_overrides,
) -> dict[str, str]:
    """Prepare tasks (home first; those in ``visible`` are visible secondary tasks, the others held
    out) unless there already and not ``rebuild``; with ``defer_held_out`` the held-out ones are left
    to the referee, which prepares them in the background), save the config, score baselines (on the
    tasks that are ready; the referee extends them to each task it prepares later),
    create the admin (token in data/admin.token) and the named ``agents`` (data/tokens/<name>.token;
    a mapping name -> uid also binds each to its sandbox uid, see ``Authenticator.identify_peer``).
    Returns every token it ensured, by name ("admin" included). ``task_files``: tasks declared from
    files (``aar.w2s.task_files.TaskFile``s or their JSON records), each validated whole first."""
    from aar.referee.app import Referee
    from aar.referee.datadir import init_data_dir

    data = Path(data)
    if rebuild or not (data / "manifest.json").exists():
        init_data_dir(
            data,
            tasks=tasks,
            visible=visible,
            tier=tier,
            max_rows=max_rows,
            task_files=task_files,
            defer_held_out=defer_held_out,
            models=models,
            log=log,
            show_progress=show_progress,
            on_progress=on_progress,
        )
    config = RefereeConfig.load(data, **config_overrides)
    config.save()
    ref = Referee.build(config)
    try:
        if baselines:
            n = ref.runs.ensure_baselines(config.baseline_methods)
            if n:
                log(f"scored {n} built-in baselines")
        token_file = data / "admin.token"
        existed = token_file.exists()
        tokens = {"admin": ensure_token(ref.db, token_file, "admin", admin=True)}
        if not existed:
            log(f"admin token written to {token_file}")
        if agents:
            (data / TOKENS_DIR).mkdir(mode=0o700, exist_ok=True)
        for name in agents:
            tokens[name] = ensure_token(ref.db, data / TOKENS_DIR / f"{name}.token", name)
            if isinstance(agents, Mapping):
                bind_uid(ref.db, name, agents[name])
    finally:
        ref.db.dispose()
    return tokens


@contextmanager
def open_database(data: Path, db_url: str | None = None) -> Iterator[tuple[RefereeConfig, Database]]:
    """The referee's config and database for a one-off command (the CLI), disposed of afterwards."""
    config = RefereeConfig.load(data, db_url=db_url)
    database = Database(config.database_url)
    database.create_all()
    try:
        yield config, database
    finally:
        database.dispose()
