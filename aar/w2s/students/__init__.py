"""The student seam: one interface for every model that learns from (soft) labels.

openai/weak-to-strong put a linear probe, LoRA and an LM-head readout behind one ``TransformerWithHead``;
aar does the same with a ``Student`` protocol. The weak teacher, the ceiling and every idea's students go
through it, so a tier is just (weak model, strong model, student kind, fixed hyper-parameters) and a
new kind is one file here that registers itself with ``@student_kind``.

Kinds (imported lazily, so the frozen-feature tier never imports torch or peft):

* ``head``: today's logistic head on frozen features (``aar.w2s.student``); inputs are feature rows.
* ``lora``: a LoRA-fine-tuned causal LM that reads the label from the next-token logits of two label
  words; inputs are texts (``aar.w2s.students.lora``).

Hyper-parameters are fixed per tier and chosen without true labels (the head's C by CV on weak labels,
LoRA's by convention and CPU budget), so a method can only win by what it does with the weak labels.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Student",
    "StudentSpec",
    "load_student",
    "make_student",
    "student_kind",
    "student_kinds",
]


@runtime_checkable
class Student(Protocol):
    """Something that learns P(label=1) from inputs and soft targets."""

    def fit(
        self, inputs: Sequence[Any] | np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
    ) -> Student:
        """Train on soft ``targets`` in [0, 1] (cross-entropy), optionally weighted per row; returns self."""
        ...

    def predict_proba(self, inputs: Sequence[Any] | np.ndarray) -> np.ndarray:
        """P(label=1) per input, float64."""
        ...

    def save(self, path: Path) -> None:
        """Write the fitted student to a folder (``load_student`` reads it back)."""
        ...


@dataclass(frozen=True)
class StudentSpec:
    """Everything needed to build the same unfitted student anywhere (JSON-serialisable).

    ``model`` is a model spec (``aar.w2s.models``) for kinds that need one; ``params`` are the fixed
    hyper-parameters; ``prompt`` and ``label_words`` say how a text-reading kind asks its question and
    where it reads the answer (label 1's word first); ``device`` is where it runs (not part of the
    student's identity, but a CPU and a CUDA run differ by rounding).
    """

    kind: str
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    label_words: tuple[str, str] = (" Yes", " No")
    device: str = "cpu"

    @property
    def reads_texts(self) -> bool:
        return _kind(self.kind).reads_texts

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "params": dict(self.params),
            "prompt": self.prompt,
            "label_words": list(self.label_words),
            "device": self.device,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudentSpec:
        words = data.get("label_words") or (" Yes", " No")
        return cls(
            kind=str(data["kind"]),
            model=str(data.get("model", "")),
            params=dict(data.get("params") or {}),
            prompt=str(data.get("prompt", "")),
            label_words=(str(words[0]), str(words[1])),
            device=str(data.get("device", "cpu")),
        )

    def identity(self) -> str:
        """What determines the fitted result (for cache keys): everything but nothing else."""
        return json.dumps(self.to_json(), sort_keys=True)


@dataclass(frozen=True)
class _Kind:
    module: str  # imported on first use
    reads_texts: bool


# name -> where it lives; a new kind adds one line here and one module (its class registers itself)
_KINDS: dict[str, _Kind] = {
    "head": _Kind("aar.w2s.students.head", reads_texts=False),
    "lora": _Kind("aar.w2s.students.lora", reads_texts=True),
}
_FACTORIES: dict[str, Callable[[StudentSpec, int], Student]] = {}
_LOADERS: dict[str, Callable[[Path], Student]] = {}


def student_kind(
    name: str, *, load: Callable[[Path], Student]
) -> Callable[[Callable[[StudentSpec, int], Student]], Callable[[StudentSpec, int], Student]]:
    """Register a factory ``(spec, seed) -> unfitted Student`` and a loader ``folder -> Student``."""

    def register(factory: Callable[[StudentSpec, int], Student]) -> Callable[[StudentSpec, int], Student]:
        _FACTORIES[name] = factory
        _LOADERS[name] = load
        return factory

    return register


def student_kinds() -> list[str]:
    return list(_KINDS)


def _kind(name: str) -> _Kind:
    if name not in _KINDS:
        raise KeyError(f"unknown student kind {name!r}; kinds: {', '.join(_KINDS)}")
    return _KINDS[name]


def _ensure(name: str) -> None:
    if name not in _FACTORIES:
        importlib.import_module(_kind(name).module)


def make_student(spec: StudentSpec, seed: int = 0) -> Student:
    """An unfitted student of ``spec``; ``seed`` fixes its initialisation and data order."""
    _ensure(spec.kind)
    return _FACTORIES[spec.kind](spec, seed)


def load_student(path: Path) -> Student:
    """A fitted student written by ``Student.save``."""
    spec = StudentSpec.from_json(json.loads((Path(path) / "student.json").read_text())["spec"])
    _ensure(spec.kind)
    return _LOADERS[spec.kind](Path(path))
