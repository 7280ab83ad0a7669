"""Fixtures of the sandbox tests: dedicated agent users, a world-traversable base dir, a policy."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aar.sandbox import SandboxPolicy, ensure_user, make_workspace, python_binds
from tests.sandbox.helpers import IS_ROOT


@pytest.fixture(scope="session")
def agent() -> int:
    if not IS_ROOT:
        pytest.skip("needs root: creates agent users and drops to their uid")
    return ensure_user("aar-sbxtest-a")


@pytest.fixture(scope="session")
def agent_b() -> int:
    if not IS_ROOT:
        pytest.skip("needs root: creates agent users and drops to their uid")
    return ensure_user("aar-sbxtest-b")


@pytest.fixture
def base() -> Iterator[Path]:
    """A world-traversable scratch root (pytest's tmp_path sits under a 0700 dir, which would make
    the fallback backend fail for the wrong reason)."""
    path = Path(tempfile.mkdtemp(prefix="aar-sbx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def policy(agent: int, base: Path) -> SandboxPolicy:
    return SandboxPolicy(
        workspace=make_workspace(base / "ws", agent), uid=agent, ro_paths=python_binds(), wall_timeout=30
    )
