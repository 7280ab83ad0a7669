"""Starting directions for researchers: nine deliberately vague, different starting points drawn from the
idea list of the published study (shared/seeds). Vague on purpose: the point is diversity of search, not
a recipe; each researcher may drift once the forum shows what works."""

from __future__ import annotations

import re

DEFAULT_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("prior", "Unsupervised elicitation: find out what the strong model already believes, without labels."),
    ("confidence", "Reweight the weak labels by how much they can be trusted, e.g. by confidence."),
    ("combine", "Combine the weak labels with the strong model's own prior."),
    ("channel", "Model the weak teacher as a noisy channel between the truth and its labels."),
    ("distill", "Distillation tricks: soft targets, temperatures, self-training, ensembles of students."),
    ("simplicity", "A simplicity bias: prefer the simplest hypothesis that explains most weak labels."),
    ("learnable", "Select the labels that are learnable and drop the ones that fight the student."),
    ("evolve", "Evolutionary search over training recipes, keeping what survives held-out checks."),
    ("truth", "Interpretability: look for a truth direction in the strong model's features."),
)


def slug(text: str, limit: int = 24) -> str:
    """A name fragment the referee accepts ([a-z0-9_-])."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "r"


def default_direction(i: int) -> tuple[str, str]:
    """The i-th default (short name, direction), cycling past nine."""
    return DEFAULT_DIRECTIONS[i % len(DEFAULT_DIRECTIONS)]
