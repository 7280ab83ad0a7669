"""The frozen-feature student: ``aar.w2s.student``'s logistic head behind the ``Student`` protocol.

It calls the same ``fit_logistic`` with the same C as ``HeadProtocol.fit``, so every number of the
feature tiers is unchanged whichever door an idea uses (``ctx.fit_head`` or ``ctx.fit_student``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aar.w2s.student import LogisticHead, Standardizer, fit_logistic
from aar.w2s.students import StudentSpec, student_kind


class HeadStudent:
    """L2-regularised logistic regression on standardised features; ``params["c"]`` is its C."""

    def __init__(self, spec: StudentSpec, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self.head: LogisticHead | None = None

    @property
    def c(self) -> float:
        return float(self.spec.params["c"])

    def fit(
        self, inputs: Sequence[Any] | np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
    ) -> HeadStudent:
        self.head = fit_logistic(np.asarray(inputs), targets, self.c, sample_weight=weights)
        return self

    def predict_proba(self, inputs: Sequence[Any] | np.ndarray) -> np.ndarray:
        if self.head is None:
            raise RuntimeError("predict_proba before fit")
        return self.head.predict_proba(np.asarray(inputs))

    def save(self, path: Path) -> None:
        if self.head is None:
            raise RuntimeError("save before fit")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        h = self.head
        std = h.standardize
        np.savez(path / "head.npz", w=h.w, b=np.array(h.b), mean=std.mean, scale=std.scale)
        (path / "student.json").write_text(json.dumps({"spec": self.spec.to_json(), "seed": self.seed}))


def _load(path: Path) -> HeadStudent:
    meta = json.loads((path / "student.json").read_text())
    student = HeadStudent(StudentSpec.from_json(meta["spec"]), int(meta["seed"]))
    with np.load(path / "head.npz") as data:
        student.head = LogisticHead(
            w=data["w"], b=float(data["b"]), standardize=Standardizer(data["mean"], data["scale"])
        )
    return student


@student_kind("head", load=_load)
def make_head(spec: StudentSpec, seed: int) -> HeadStudent:
    return HeadStudent(spec, seed)
