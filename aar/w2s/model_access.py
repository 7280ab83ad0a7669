"""A text tier's model folder as a sandbox reads it: resolved on the host, readable by other uids.

Official runs (the referee's sandbox) and researchers' local runs (their sandboxes) rebuild the tier's
LoRA student from its spec, so they must read the causal LM's folder, and nothing else of aar's cache
(its root holds task rows with labels). The folder is bound read-only at its own path, and
``$AAR_MODELS`` points ``aar.w2s.paths.models_dir`` at the referee's copy. A packaged model is
converted once here, on the host, never inside a run.
"""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def readable_model_dir(model: str) -> Path | None:
    """Once per process (every unit of every official run asks; the walk and chmod need doing once):
    the folder ``from_pretrained`` reads ``model`` from (``None`` for a hub id: not bindable), made
    world-readable when it is aar's own converted copy (weights only); a user's own folder must already
    be readable by the sandbox's uid."""
    from aar.w2s.models import causal_lm_source
    from aar.w2s.paths import models_dir

    source = Path(causal_lm_source(model))
    if not source.is_dir():
        return None
    if models_dir().resolve() in source.resolve().parents:
        for p in [source, *source.rglob("*")]:
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
    return source
