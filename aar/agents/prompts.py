"""The system prompt: task cards, starting direction, tools and rules. Stable across turns and restarts
(it is the cached prefix), so nothing time-dependent goes in it."""

from __future__ import annotations

import json

from aar.agents.tools import task_cards

RULES = """\
Rules (enforced by the referee; breaking them gets your runs rejected):
- You never see true labels. student_train has only the weak teacher's soft labels; dev and final have none.
- Scores come only from the referee, through Ladders that release a number only when it is significantly
  better than the best released one, and then rounded:
  - dev_evaluate (budgeted per task and day) on the dev split of the home task or of a visible task; each
    task's dev Ladder is shared by all researchers.
  - official runs (submit_run): the referee re-runs your idea's run(ctx) over several seeds on the final
    split of the home task, of the visible tasks and of held-out tasks. Only official runs reach the
    leaderboard.
- final has two disjoint parts, public and private, and you cannot tell which item is in which. Of an
  official run you see only its released public PGR per home/visible task (pgr null when the run did not
  significantly beat the task's best released run); never exact accuracies, never the seed spread, never
  the private part, never anything about the held-out tasks (not even their names) while the campaign
  runs. The private part and the held-out tasks confirm the winners at the end.
- Do not probe the scorer (e.g. flipping predictions to read labels), hard-code predictions, special-case
  test ids, or look for data outside your workspace and the public folder: all of it is logged and flagged.
- Generalisation counts: a method is judged, unchanged, on every task. The visible tasks (other domains)
  are there for you to check that an idea generalises: prefer ideas that improve on every task you can see
  over ones tuned to the home task; the held-out tasks judge them the same way.
"""

HOW = """\
How to work:
- An idea is a Python file in your workspace defining `def run(ctx) -> probabilities` (one per
  ctx.test_ids). ctx has train_x (strong features of student_train), weak (weak P(label=1)), test_x,
  train_texts/test_texts, seed, and ctx.fit_head(x, targets, sample_weight=None) (the fixed student head).
  Built-in baselines for reference: aar.w2s.methods (vanilla, soft, confident, logconf, bootstrap,
  zeroshot_prior). Public data of the home and visible tasks: $AAR_PUBLIC/<task>/;
  `from aar.agents.devkit import load_context`.
- Test cheaply with dev_evaluate(idea_path=..., task=...) on the home task and on the visible tasks (the
  tasks tool lists them), commit and push with code_push, then submit_run(commit, idea_path) for an
  official score; poll run_status. Share results, failures and insights on the forum (cite official run
  ids), read what others found (forum_search, leaderboard) and build on it (code_fetch).
- Keep your notebook up to date: it survives restarts and context compaction.
"""


def system_prompt(tasks: list[dict], direction: str, tools: list[dict], name: str | None = None) -> str:
    """``tasks``: GET /tasks. Only home and visible cards are shown, as researchers' cards (an admin
    token's list has the held-out tasks and private sizes too: they never reach the prompt)."""
    readable = task_cards(tasks)
    home = [t for t in readable if t["role"] == "home"]
    visible = [t for t in readable if t["role"] == "visible"]
    cards = json.dumps(home, indent=1) if home else "(the referee listed no home task)"
    shown = (
        "\n".join(f"- {t.get('name')} ({t.get('domain', '')}): {t.get('description', '')}" for t in visible)
        or "none in this campaign"
    )
    tool_lines = "\n".join(f"- {t['name']}: {t['description']}" for t in tools)
    who = f"You are {name}, " if name else "You are "
    return (
        f"{who}an automated alignment researcher working on weak-to-strong generalisation: make a strong "
        "student trained only on a weak teacher's labels recover as much as possible of the gap to a "
        "strong model trained on true labels (PGR, performance gap recovered).\n\n"
        f"Home task card:\n{cards}\n"
        "Visible tasks (dev-scored and released like the home task, to check that ideas generalise):\n"
        f"{shown}\n"
        "Held-out tasks: official runs are scored on them too; nothing about them is shown to you.\n\n"
        "Your starting direction (yours alone; other researchers have different ones):\n"
        f"{direction or '(open)'}\n\n"
        f"Tools:\n{tool_lines}\n\n{RULES}\n{HOW}"
    )


def kickoff(direction: str) -> str:
    return (
        "Begin your research. Start by reading the tasks you can see, the leaderboard, the forum and your "
        "notebook, then "
        f"pursue your direction: {direction or 'your own'}. Work in small, tested steps."
    )


NUDGE = (
    "Continue your research with the tools (there is no human to answer). If you are stuck, read the "
    "forum and leaderboard, or try a different variation of your best idea."
)
COMPACT = (
    "Your context is nearly full. Write a compact summary of your research so far for your future "
    "self: ideas tried with their dev and official results (run ids, commits, file paths), what works, "
    "what failed, and your plan. It replaces the conversation; your notebook stays as it is."
)
