"""Executors by name (the referee config's ``executor``, the campaign's ``ray:``, ``--executor``).

A registry of lazy imports: choosing ``local`` or ``none`` never imports Ray. An addition is one module
with a ``build(runs, config) -> Executor`` function and one line here (or ``register`` at run time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from aar.referee.executors.base import CoordinatedExecutor, Executor
from aar.referee.executors.local import LocalPoolExecutor
from aar.referee.executors.none import NullExecutor

if TYPE_CHECKING:
    from aar.referee.config import RefereeConfig
    from aar.referee.runs import RunService

__all__ = [
    "CoordinatedExecutor",
    "Executor",
    "LocalPoolExecutor",
    "NullExecutor",
    "build",
    "names",
    "register",
]

_REGISTRY: dict[str, str] = {
    "local": "aar.referee.executors.local",
    "none": "aar.referee.executors.none",
    "ray": "aar.referee.executors.ray",
}


def register(name: str, module: str) -> None:
    """Make ``name`` choosable; ``module`` (imported only when chosen) defines ``build(runs, config)``."""
    _REGISTRY[name] = module


def names() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, runs: RunService, config: RefereeConfig) -> Executor:
    if name not in _REGISTRY:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(names())}")
    return importlib.import_module(_REGISTRY[name]).build(runs, config)
