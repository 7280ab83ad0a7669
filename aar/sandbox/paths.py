"""Which host paths a sandbox must bind so a given Python interpreter runs inside it."""

from __future__ import annotations

import sys
from pathlib import Path

_SYSTEM_PREFIXES = ("/usr", "/bin", "/lib", "/lib64", "/sbin")


def python_binds(python: Path | str = sys.executable) -> list[Path]:
    """Directories to add to SandboxPolicy.ro_paths for `python` (a venv's or a plain interpreter).

    A venv holds only symlinks to its base interpreter, whose stdlib and libpython live under the base
    prefix (here /root/.pyenv/versions/X, unreachable for other uids because /root is 0700). Both the
    venv and the base prefix are returned; system prefixes are skipped (the sandbox always has /usr).
    An editable install's source tree is not included: add it yourself.
    """
    exe = Path(python).absolute()
    binds: list[Path] = []
    venv = exe.parent.parent
    if (venv / "pyvenv.cfg").is_file():
        binds.append(venv)
    base = exe.resolve().parent.parent
    system = any(base == Path(p) or Path(p) in base.parents for p in _SYSTEM_PREFIXES)
    if not system and base not in binds:
        binds.append(base)
    return binds
