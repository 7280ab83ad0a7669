"""Compatibility: the executors now live in ``aar.referee.executors`` (one module each, by name)."""

from aar.referee.executors import Executor, LocalPoolExecutor, NullExecutor

__all__ = ["Executor", "LocalPoolExecutor", "NullExecutor"]
