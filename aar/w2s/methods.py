"""The idea contract and the built-in baselines.

An idea is a Python module with ``def run(ctx: IdeaContext) -> probabilities``: given the strong
student's inputs and the weak teacher's soft labels on ``student_train``, return P(label=1) for
each input to predict. ``ctx.fit_student(inputs, targets, weights)`` trains the tier's fixed student
(``aar.w2s.students``): on the frozen-feature tiers inputs are feature rows (``ctx.train_x``), on the
LoRA tier they are texts, and ``ctx.train_inputs``/``ctx.test_inputs`` are whichever the tier gives, so
an idea written against them runs on every tier. Feature-only ideas fail on the LoRA tier with an
IdeaError that says so. The same function serves a researcher's quick local run (on dev inputs) and
the referee's official re-run (on final inputs and held-out tasks). ``ctx`` never carries true
labels, except ``ctx.true_labels`` for the ``ceiling`` reference, which the testbed fills and the
referee never does for submitted code.

Built-in baselines are ideas too, registered by name: vanilla, soft, confident, logconf,
bootstrap, zeroshot_prior, ceiling.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aar.w2s.student import HeadProtocol, LogisticHead, _sigmoid
from aar.w2s.students import Student, StudentSpec, make_student
from aar.w2s.toolkit import confidence_mask, prior_matched_hard


class IdeaError(ValueError):
    """An idea could not be loaded, or returned something that is not a probability per input."""


@dataclass
class IdeaContext:
    """Everything an idea may use. No true labels (except ``true_labels`` for the ceiling)."""

    task: str
    domain: str
    train_ids: list[str]
    train_texts: list[str]
    train_x: np.ndarray = field(repr=False)  # strong features of student_train
    weak: np.ndarray  # weak teacher's P(label=1) on student_train
    test_ids: list[str]
    test_texts: list[str]
    test_x: np.ndarray = field(repr=False)  # strong features of the inputs to predict
    seed: int
    protocol: HeadProtocol
    scratch_dir: Path | None = None
    budget_seconds: float = 600.0
    strong_model: str = ""
    true_labels: np.ndarray | None = field(default=None, repr=False)
    # the tier's student; None: the frozen-feature head with ``protocol``'s C (every feature tier)
    student: StudentSpec | None = None

    def __getattribute__(self, name: str):
        # A text tier has no features: say so at the first touch instead of handing out 0-column arrays
        # that a feature-only idea would turn into silent nonsense (e.g. all distances zero).
        if name in _FEATURE_FIELDS:
            spec = object.__getattribute__(self, "student")
            if spec is not None and spec.reads_texts:
                raise IdeaError(
                    f"ctx.{name}: the {spec.kind} tier gives texts, not features; use ctx.train_inputs / "
                    "ctx.test_inputs (texts here) with ctx.fit_student(inputs, targets, weights)"
                )
        return object.__getattribute__(self, name)

    @property
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    @property
    def student_spec(self) -> StudentSpec:
        """The fixed student every method trains (same hyper-parameters for every method)."""
        if self.student is not None:
            return self.student
        return StudentSpec(kind="head", params={"c": self.protocol.c})

    @property
    def reads_texts(self) -> bool:
        return self.student is not None and self.student.reads_texts

    @property
    def train_inputs(self) -> np.ndarray:
        """What the student reads for student_train: features, or texts (an object array, so a boolean
        mask selects rows on every tier: ``ctx.train_inputs[keep]``)."""
        if self.reads_texts:
            return np.array(self.train_texts, dtype=object)
        return self.train_x

    @property
    def test_inputs(self) -> np.ndarray:
        if self.reads_texts:
            return np.array(self.test_texts, dtype=object)
        return self.test_x

    def fit_student(
        self, inputs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
    ) -> Student:
        """Train a fresh copy of the tier's fixed student on soft ``targets`` (and per-row weights);
        its ``predict_proba(inputs)`` gives P(label=1). Seeded by ``ctx.seed``."""
        return make_student(self.student_spec, self.seed).fit(inputs, targets, weights)

    def fit_head(
        self, x: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> LogisticHead:
        """Train the student head with the fixed protocol (same regularisation for every method)."""
        if self.reads_texts:
            raise IdeaError(
                f"ctx.fit_head: the {self.student_spec.kind} tier has no feature head; use "
                "ctx.fit_student(ctx.train_inputs, targets, weights)"
            )
        return self.protocol.fit(x, targets, sample_weight)


_FEATURE_FIELDS = frozenset({"train_x", "test_x"})


Idea = Callable[[IdeaContext], "Sequence[float] | np.ndarray | Mapping[str, float]"]
_IDEAS: dict[str, Idea] = {}


def idea(name: str) -> Callable[[Idea], Idea]:
    def register(fn: Idea) -> Idea:
        _IDEAS[name] = fn
        return fn

    return register


def builtin_methods() -> list[str]:
    return list(_IDEAS)


def get_method(name: str) -> Idea:
    if name not in _IDEAS:
        raise IdeaError(f"unknown method {name!r}; built-in methods: {', '.join(_IDEAS)}")
    return _IDEAS[name]


def load_idea_file(path: Path) -> Idea:
    """Load ``run`` from an idea module on disk."""
    path = Path(path)
    if not path.is_file():
        raise IdeaError(f"{path}: idea file not found")
    spec = importlib.util.spec_from_file_location(f"aar_idea_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise IdeaError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise IdeaError(f"{path}: failed to import ({type(exc).__name__}: {exc})") from exc
    run = getattr(module, "run", None)
    if not callable(run):
        raise IdeaError(f"{path}: defines no callable run(ctx)")
    return run


def resolve_method(method: str) -> Idea:
    """A built-in name, or a path to an idea file (``something.py``)."""
    if method.endswith(".py") or "/" in method:
        return load_idea_file(Path(method))
    return get_method(method)


def validate_predictions(out: object, test_ids: Sequence[str]) -> np.ndarray:
    """Probabilities aligned with ``test_ids``; anything else is an IdeaError saying what is wrong."""
    if isinstance(out, Mapping):
        missing = [i for i in test_ids if i not in out]
        if missing:
            raise IdeaError(f"predictions miss {len(missing)} ids, e.g. {missing[0]!r}")
        extra = set(out) - set(test_ids)
        if extra:
            raise IdeaError(f"predictions have {len(extra)} unknown ids, e.g. {next(iter(extra))!r}")
        out = [out[i] for i in test_ids]
    try:
        arr = np.asarray(out, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise IdeaError(f"predictions are not numbers ({exc})") from exc
    if len(arr) != len(test_ids):
        raise IdeaError(f"expected {len(test_ids)} predictions, got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise IdeaError("predictions contain NaN or infinity")
    if arr.min(initial=0.0) < 0 or arr.max(initial=1.0) > 1:
        raise IdeaError("predictions must be probabilities in [0, 1]")
    return arr


# ---------------------------------------------------------------------------------------------
# Baselines


@idea("vanilla")
def vanilla(ctx: IdeaContext) -> np.ndarray:
    """Train on the weak teacher's hard labels."""
    return ctx.fit_student(ctx.train_inputs, (ctx.weak >= 0.5).astype(float)).predict_proba(ctx.test_inputs)


@idea("soft")
def soft(ctx: IdeaContext) -> np.ndarray:
    """Train on the weak teacher's soft labels (cross-entropy to probabilities)."""
    return ctx.fit_student(ctx.train_inputs, ctx.weak).predict_proba(ctx.test_inputs)


@idea("confident")
def confident(ctx: IdeaContext) -> np.ndarray:
    """Drop weak labels whose confidence lies in [0.25, 0.75]; train on the rest (hard)."""
    keep = confidence_mask(ctx.weak, 0.25, 0.75)
    if keep.sum() < 10 or len(np.unique(ctx.weak[keep] >= 0.5)) < 2:
        keep = np.ones(len(ctx.weak), dtype=bool)  # too few confident rows: fall back to vanilla
    hard = (ctx.weak[keep] >= 0.5).astype(float)
    return ctx.fit_student(ctx.train_inputs[keep], hard).predict_proba(ctx.test_inputs)


@idea("logconf")
def logconf(ctx: IdeaContext, alpha_max: float = 0.75, rounds: int = 4) -> np.ndarray:
    """Auxiliary confidence loss (Burns et al. 2023), for a convex head.

    Burns et al. minimise (1-a) CE(f, weak) + a CE(f, hard(f)), with hard(f) thresholded adaptively
    and a warmed up. For a logistic head the same objective is reached by alternating: fit to the
    mixed targets, recompute the student's own prior-matched hard labels, raise a, repeat.
    """
    weak_hard = (ctx.weak >= 0.5).astype(float)
    rate = float(weak_hard.mean())
    x = ctx.train_inputs
    head = ctx.fit_student(x, weak_hard)
    for r in range(1, rounds + 1):
        alpha = alpha_max * r / rounds
        own = prior_matched_hard(head.predict_proba(x), rate)
        head = ctx.fit_student(x, (1 - alpha) * weak_hard + alpha * own)
    return head.predict_proba(ctx.test_inputs)


@idea("bootstrap")
def bootstrap(ctx: IdeaContext, rounds: int = 3, keep_frac: float = 0.7) -> np.ndarray:
    """Iterative self-training: relabel student_train with the student, keep the rows where it is
    most confident, retrain; a seed-dependent subsample of the rest adds diversity."""
    targets = (ctx.weak >= 0.5).astype(float)
    x = ctx.train_inputs
    head = ctx.fit_student(x, targets)
    rng = ctx.rng
    for _ in range(rounds):
        p = head.predict_proba(x)
        conf = np.abs(p - 0.5)
        keep = conf >= np.quantile(conf, 1 - keep_frac)
        keep |= rng.random(len(p)) < 0.1
        head = ctx.fit_student(x[keep], (p[keep] >= 0.5).astype(float))
    return head.predict_proba(ctx.test_inputs)


@idea("zeroshot_prior")
def zeroshot_prior(ctx: IdeaContext) -> np.ndarray:
    """The strong model's own prior, no weak-label training: the top principal direction of its
    features on the unlabeled inputs. Only two numbers come from the weak labels: the direction's sign
    (agreement) and the threshold (matching the weak positive rate)."""
    x = np.vstack([ctx.train_x, ctx.test_x]).astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8
    xs = (x - mean) / scale
    # top right-singular vector via a few power iterations (deterministic start)
    v = np.ones(xs.shape[1]) / math.sqrt(xs.shape[1])
    for _ in range(50):
        v = xs.T @ (xs @ v)
        v /= np.linalg.norm(v) + 1e-12
    z_train = ((ctx.train_x - mean) / scale) @ v
    z_test = ((ctx.test_x - mean) / scale) @ v
    weak_hard = ctx.weak >= 0.5
    # orient by agreement with the weak soft labels (continuous, so defined even when every hard
    # weak label is the same class)
    if np.std(ctx.weak) > 0 and np.cov(z_train, ctx.weak)[0, 1] < 0:
        z_train, z_test = -z_train, -z_test
    rate = float(weak_hard.mean())
    threshold = np.quantile(z_train, 1 - rate) if 0 < rate < 1 else float(np.median(z_train))
    spread = float(z_train.std()) or 1.0
    return _sigmoid(4.0 * (z_test - threshold) / spread)


@idea("ceiling")
def ceiling(ctx: IdeaContext) -> np.ndarray:
    """The strong student trained on the true labels of student_train (a reference, not a method)."""
    if ctx.true_labels is None:
        raise IdeaError("the ceiling needs true labels, which only the testbed's own runs provide")
    if ctx.reads_texts:  # the tier's fixed student, as for every method (LoRA has no C to tune)
        return ctx.fit_student(ctx.train_inputs, ctx.true_labels).predict_proba(ctx.test_inputs)
    from aar.w2s.student import cv_select_c, fit_logistic

    c = cv_select_c(ctx.train_x, ctx.true_labels, seed=ctx.seed)
    return fit_logistic(ctx.train_x, ctx.true_labels, c).predict_proba(ctx.test_x)
