"""Content-addressed feature cache: features are computed once per (model, revision, text).

Layout: ``<cache>/features/<model key>/<shard>.npz``, each shard holding ``keys`` (sha256 of the
text) and ``x`` (float32 matrix) plus a checksum of both. A lookup loads the model's shards, computes
only the texts that are missing, and writes them as a new shard (atomically: temp file + rename).
The model key hashes the model name and its revision (weights' package version, runtime and its
version, pooling, max tokens), so a model change can never serve stale vectors, and vectors of two
runtimes (which differ by rounding) never meet in one experiment; a text change changes the text's key.
"""

from __future__ import annotations

import hashlib
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aar.w2s.paths import features_dir


class FeatureCacheError(RuntimeError):
    """A cache file is unreadable or fails its checksum; the message names the file."""


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_key(name: str, revision: str) -> str:
    return f"{name}-{hashlib.sha256(f'{name}|{revision}'.encode()).hexdigest()[:16]}"


def _checksum(keys: np.ndarray, x: np.ndarray) -> str:
    digest = hashlib.sha256(keys.tobytes())
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


@dataclass
class ExtractionStats:
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


class FeatureCache:
    """Feature vectors of one model at one revision."""

    def __init__(self, name: str, revision: str, root: Path | None = None):
        self.name = name
        self.revision = revision
        self.dir = (root or features_dir()) / model_key(name, revision)
        self._index: dict[str, np.ndarray] | None = None

    def _load_index(self) -> dict[str, np.ndarray]:
        if self._index is not None:
            return self._index
        index: dict[str, np.ndarray] = {}
        if self.dir.exists():
            for shard in sorted(self.dir.glob("*.npz")):
                keys, x = _read_shard(shard)
                for i, key in enumerate(keys):
                    index[str(key)] = x[i]
        self._index = index
        return index

    def missing(self, texts: Sequence[str]) -> list[str]:
        index = self._load_index()
        seen: set[str] = set()
        out = []
        for text in texts:
            key = text_key(text)
            if key not in index and key not in seen:
                seen.add(key)
                out.append(text)
        return out

    def put(self, texts: Sequence[str], x: np.ndarray) -> None:
        if len(texts) == 0:
            return
        keys = np.array([text_key(t) for t in texts])
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        shard = self.dir / f"{hashlib.sha256(keys.tobytes()).hexdigest()[:20]}.npz"
        tmp = shard.with_name(shard.stem + ".tmp.npz")
        np.savez(tmp, keys=keys, x=x, checksum=np.array(_checksum(keys, x)))
        tmp.replace(shard)
        index = self._load_index()
        for i, key in enumerate(keys):
            index[str(key)] = x[i]

    def get(self, texts: Sequence[str]) -> np.ndarray:
        index = self._load_index()
        try:
            return np.stack([index[text_key(t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)
        except KeyError as exc:
            raise KeyError(f"text not in the {self.name} feature cache; call features() instead") from exc


def _read_shard(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, x, checksum = data["keys"], data["x"], str(data["checksum"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise FeatureCacheError(
            f"{path}: corrupted feature cache file ({type(exc).__name__}: {exc}); delete it to recompute"
        ) from exc
    if _checksum(keys, x) != checksum or len(keys) != len(x):
        raise FeatureCacheError(f"{path}: feature cache file fails its checksum; delete it to recompute")
    return keys, x


ProgressFactory = Callable[[int, str], Callable[[int], None]]
# on_progress(model, done, total): called after every encoded batch, for progress outside a terminal
# (the lab's live view); ``done`` counts texts computed so far, ``total`` the texts the cache lacked.
ProgressHook = Callable[[str, int, int], None]


def rich_progress(total: int, label: str):
    """A context-managed rich progress bar; yields an ``advance(n)`` callback."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    @contextmanager
    def bar():
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} texts/s"),
            TimeRemainingColumn(),
        ]
        start = time.perf_counter()
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(label, total=total, rate="-")
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                rate = done[0] / max(time.perf_counter() - start, 1e-9)
                progress.update(task, advance=n, rate=f"{rate:.0f}")

            yield advance

    return bar()


def features(
    model: str,
    texts: Sequence[str],
    *,
    show_progress: bool = True,
    stats: ExtractionStats | None = None,
    encoder: Callable | None = None,
    revision: str | None = None,
    root: Path | None = None,
    on_progress: ProgressHook | None = None,
) -> np.ndarray:
    """Feature matrix for ``texts`` under ``model``, computing only what the cache lacks.

    ``show_progress`` draws a terminal bar with rate and ETA; ``on_progress`` gets (model, done, total)
    after each batch, whatever the terminal."""
    from aar.w2s.models import get_model, load_encoder

    rev = revision if revision is not None else get_model(model).revision
    cache = FeatureCache(model, rev, root=root)
    todo = cache.missing(texts)
    start = time.perf_counter()
    if todo:
        encode = encoder or load_encoder(model)
        done = [0]

        def hook(n: int) -> None:
            done[0] += n
            if on_progress is not None:
                on_progress(model, done[0], len(todo))

        if on_progress is not None:
            on_progress(model, 0, len(todo))
        if show_progress and len(todo) > 32:
            with rich_progress(len(todo), f"features {model}") as advance:
                x = encode(todo, lambda n: (advance(n), hook(n)))
        else:
            x = encode(todo, hook)
        cache.put(todo, x)
    if stats is not None:
        stats.computed += len(todo)
        stats.cached += len(texts) - len(todo)
        stats.seconds += time.perf_counter() - start
    return cache.get(texts)
