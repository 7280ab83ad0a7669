"""The direction of dependency in DESIGN.md, checked on the source: who may import whom.

Agents and referee meet only over HTTP (and the documented transcript format below both): a referee
that imported researcher code could be steered by it, and could not run on a host without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aar

PACKAGE = Path(aar.__file__).parent
SHARED = {"atomic", "contract", "eta", "transcript_format"}  # small modules below every part
# what each part may import of aar, besides itself and the shared modules
ALLOWED = {
    "w2s": set(),
    "sandbox": set(),
    "referee": {"w2s", "sandbox"},
    "agents": {"w2s", "sandbox"},  # and the referee over HTTP only
}


def _imported(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """Every ``aar...`` module a file imports, at module level or inside a function."""
    module = ".".join(path.relative_to(package_dir.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # from aar import agents
    return {name for name in out if name == "aar" or name.startswith("aar.")}


def _part(module: str) -> str | None:
    """``aar.referee.db`` -> ``referee``; ``aar`` itself (its version) -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _violations(part: str, forbidden: Callable[[str], bool]) -> list[str]:
    out = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        out += [f"{path.relative_to(PACKAGE)} imports {m}" for m in sorted(_imported(path)) if forbidden(m)]
    return out


def test_the_checker_sees_every_kind_of_import(tmp_path):
    probe = PACKAGE / "referee" / "dashboard" / "researchers.py"
    assert "aar.transcript_format" in _imported(probe) and "aar.referee.auth" in _imported(probe)
    fake = tmp_path / "aar" / "referee" / "x.py"  # a function-level, a relative and a from-package import
    fake.parent.mkdir(parents=True)
    fake.write_text("from aar import agents\nfrom ..agents import loop\ndef f():\n import aar.agents.budget")
    assert {"aar.agents", "aar.agents.budget", "aar.agents.loop"} <= _imported(fake, tmp_path / "aar")


def test_the_referee_imports_no_researcher_code():
    assert _violations("referee", lambda m: _part(m) in ("agents", "lab")) == []


def test_the_researchers_import_no_referee_code():
    assert _violations("agents", lambda m: _part(m) == "referee") == []


def test_each_part_imports_only_what_the_design_allows():
    for part, allowed in ALLOWED.items():
        ok = {part, *allowed, *SHARED, None}
        assert _violations(part, lambda m, ok=ok: _part(m) not in ok) == [], part


def test_shared_modules_import_no_part():
    for name in SHARED:
        imported = _imported(PACKAGE / f"{name}.py")
        assert {m for m in imported if _part(m) not in SHARED} == set(), name


def test_the_referee_app_and_dashboard_load_without_the_agents():
    """The same rule at run time: a fresh interpreter that loads the server and every dashboard page
    has no researcher module in it (an import hidden behind a string would show here)."""
    code = (
        "import sys\n"
        "import aar.referee.app, aar.referee.dashboard.routes, aar.referee.dashboard.researchers\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('aar.agents', 'aar.lab')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout
