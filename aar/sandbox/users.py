"""Dedicated unprivileged identities and workspaces for agents.

One uid per agent matters for more than file permissions: RLIMIT_NPROC counts every process of a
uid system-wide, so a shared uid would let one agent's fork bomb starve another's commands.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def ensure_user(name: str) -> int:
    """Create (idempotently) a system user `name` with its own group, no home and no login shell.

    Returns its uid. Needs root unless the user already exists.
    """
    if not _USER_NAME.match(name):
        raise ValueError(f"invalid user name {name!r}: use [a-z_][a-z0-9_-]{{0,31}}")
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise PermissionError(f"user {name!r} does not exist and creating it needs root")
    useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if useradd is None:
        raise RuntimeError("useradd not found (Debian: apt-get install passwd)")
    shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    proc = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            shell,
            name,
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    try:  # a concurrent caller may have won the race: useradd then fails, but the user exists
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise RuntimeError(f"useradd {name} failed ({proc.returncode}): {proc.stderr.strip()}") from None


def primary_gid(uid: int) -> int:
    """The uid's primary group from the user database; the uid itself when it has no entry."""
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def make_workspace(path: Path, uid: int | None, mode: int = 0o700) -> Path:
    """Create `path` owned by `uid` (and its primary group) with `mode`: private to that agent.

    Parents are created as needed and left as they are; they must not be writable by the agent
    (see SandboxPolicy on symlinks).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        os.chown(path, uid, primary_gid(uid))
    os.chmod(path, mode)
    return path
