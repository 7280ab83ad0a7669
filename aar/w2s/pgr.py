"""PGR and its honest statistics.

``PGR = (acc(student) - acc(weak)) / (acc(ceiling) - acc(weak))``, all three evaluated on the same
items. Uncertainty comes from a paired, hierarchical bootstrap: each replicate resamples seeds (with
replacement) and then items (with replacement), and recomputes the three accuracies on the *same*
resampled items and seeds, so the correlation between weak, student and ceiling is kept.

When PGR is defined. A ratio over a gap that may be zero is noise, whatever its point value, so PGR
is reported as undefined (NaN) unless the ceiling-weak gap exceeds ``MIN_GAP_Z`` (3) standard
errors. The standard error is analytic, from the paired per-item differences (ceiling correctness
minus weak correctness, each averaged over seeds): ``sd(ddof=1) / sqrt(n)``. So whether PGR is
defined is a deterministic function of the predictions; it does not move with the bootstrap's seed
or its number of replicates.

The CI of a ratio never drops a replicate. A replicate whose gap is <= 0 has an unbounded ratio: +inf
or -inf by the sign of its numerator; a 0/0 replicate counts as unbounded on *both* sides (-inf for
the lower percentile, +inf for the upper), the conservative choice. Percentiles are taken over all
replicates, and a percentile that lands on (or interpolates with) an unbounded replicate is reported
as NaN on that side: the CI reads "unbounded", never an optimistic interval over the lucky replicates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

N_BOOT = 2000
MIN_GAP_Z = 3.0  # PGR is defined iff gap > MIN_GAP_Z * gap_se


def _as_seed_matrix(pred: np.ndarray, n_items: int, n_seeds: int) -> np.ndarray:
    """Correctness matrix (seeds x items) from hard or soft predictions; one row broadcasts to all."""
    arr = np.asarray(pred, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape[1] != n_items:
        raise ValueError(f"predictions cover {arr.shape[1]} items, labels {n_items}")
    if arr.shape[0] == 1 and n_seeds > 1:
        arr = np.repeat(arr, n_seeds, axis=0)
    if arr.shape[0] != n_seeds:
        raise ValueError(f"predictions have {arr.shape[0]} seeds, expected {n_seeds} (or 1)")
    return arr


def correctness(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1.0 where the thresholded prediction (p >= 0.5) equals the label."""
    return ((np.asarray(pred) >= 0.5).astype(int) == np.asarray(labels)[None, :]).astype(np.float64)


def _correctness_matrices(labels: np.ndarray, *preds: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels as ints and one (seeds x items) correctness matrix per prediction set, all with the same
    number of seeds (a single-row prediction, e.g. the fixed weak teacher, is repeated)."""
    labels = np.asarray(labels).astype(int)
    if len(labels) == 0:
        raise ValueError("no test items")
    seeds = max(np.asarray(p).shape[0] if np.asarray(p).ndim == 2 else 1 for p in preds)
    return labels, [correctness(_as_seed_matrix(p, len(labels), seeds), labels) for p in preds]


def _bootstrap_means(correct: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Hierarchical paired bootstrap of mean accuracy for several (seeds x items) matrices."""
    n_seeds, n_items = correct[0].shape
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    item_idx = rng.integers(0, n_items, size=(n_boot, n_items))
    out = []
    for mat in correct:
        # per-seed accuracy on the resampled items, then mean over resampled seeds
        per_seed = np.stack([mat[s][item_idx].mean(axis=1) for s in range(n_seeds)], axis=1)  # boot x seeds
        out.append(np.take_along_axis(per_seed, seed_idx, axis=1).mean(axis=1))
    return out


def _ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of samples that are all finite (accuracies, gaps)."""
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def _quantile_or_nan(sorted_samples: np.ndarray, q: float) -> float:
    """Linear-interpolated quantile of sorted samples; NaN when it touches an infinite sample."""
    pos = (len(sorted_samples) - 1) * q
    lo, hi = sorted_samples[math.floor(pos)], sorted_samples[math.ceil(pos)]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    return float(lo + (hi - lo) * (pos - math.floor(pos)))


def ratio_samples(numerator: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Per-replicate ``numerator / gap``; a gap <= 0 gives +-inf by the numerator's sign, 0/0 NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / gap
    unbounded = np.where(numerator > 0, np.inf, np.where(numerator < 0, -np.inf, np.nan))
    return np.where(gap > 0, ratio, unbounded)


def ratio_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI over *all* replicates of a ratio (see the module docstring): NaN replicates
    (0/0) count as -inf for the lower bound and +inf for the upper; an infinite bound reads NaN."""
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) == 0:
        return (math.nan, math.nan)
    low = np.sort(np.where(np.isnan(samples), -np.inf, samples))
    high = np.sort(np.where(np.isnan(samples), np.inf, samples))
    return (_quantile_or_nan(low, (1 - level) / 2), _quantile_or_nan(high, 1 - (1 - level) / 2))


def gap_standard_error(weak_correct: np.ndarray, ceiling_correct: np.ndarray) -> tuple[float, float, float]:
    """(gap, se, z) of ceiling minus weak accuracy from the paired per-item differences, each item's
    correctness averaged over seeds first. With one item the SE is NaN (and the gap undefined)."""
    diff = ceiling_correct.mean(axis=0) - weak_correct.mean(axis=0)
    gap = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
    if math.isnan(se):
        z = math.nan
    elif se > 0:
        z = gap / se
    else:  # every item has the same difference: z is +-inf, or 0 for no gap at all
        z = math.copysign(math.inf, gap) if gap else 0.0
    return gap, se, z


def gap_is_defined(gap: float, se: float) -> bool:
    """The 3-SE rule: the ceiling-weak gap exceeds ``MIN_GAP_Z`` standard errors."""
    return not math.isnan(se) and gap > MIN_GAP_Z * se


@dataclass
class PGRResult:
    weak_acc: float
    ceiling_acc: float
    transfer_acc: float
    pgr: float  # NaN when undefined
    pgr_ci: tuple[float, float]  # NaN on a side that is unbounded (or both, when PGR is undefined)
    gap: float
    gap_ci: tuple[float, float]
    weak_acc_ci: tuple[float, float]
    ceiling_acc_ci: tuple[float, float]
    transfer_acc_ci: tuple[float, float]
    transfer_seed_std: float
    n_items: int
    n_seeds: int
    gap_se: float = math.nan  # analytic, from paired per-item differences
    gap_z: float = math.nan  # gap / gap_se; PGR is defined iff gap_z > MIN_GAP_Z

    @property
    def defined(self) -> bool:
        return not math.isnan(self.pgr)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def pgr_stats(
    labels: np.ndarray,
    weak: np.ndarray,
    ceiling: np.ndarray,
    student: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> PGRResult:
    """PGR with paired bootstrap CIs. Predictions are (seeds x items) or (items,) probabilities."""
    labels, mats = _correctness_matrices(labels, weak, ceiling, student)
    n_items, s = len(labels), mats[0].shape[0]
    w, c, t = (float(m.mean()) for m in mats)
    gap, gap_se, gap_z = gap_standard_error(mats[0], mats[1])
    defined = gap_is_defined(gap, gap_se)
    bw, bc, bt = _bootstrap_means(mats, n_boot, np.random.default_rng(seed))
    seed_acc = mats[2].mean(axis=1)
    return PGRResult(
        weak_acc=w,
        ceiling_acc=c,
        transfer_acc=t,
        pgr=(t - w) / (c - w) if defined else math.nan,
        pgr_ci=ratio_ci(ratio_samples(bt - bw, bc - bw)) if defined else (math.nan, math.nan),
        gap=c - w,
        gap_ci=_ci(bc - bw),
        weak_acc_ci=_ci(bw),
        ceiling_acc_ci=_ci(bc),
        transfer_acc_ci=_ci(bt),
        transfer_seed_std=float(seed_acc.std(ddof=1)) if s > 1 else 0.0,
        n_items=n_items,
        n_seeds=s,
        gap_se=gap_se,
        gap_z=gap_z,
    )


@dataclass
class Comparison:
    """Method A minus method B, paired on the same items and seeds."""

    acc_diff: float
    acc_diff_ci: tuple[float, float]
    pgr_diff: float  # acc_diff / gap; NaN unless the gap passes the 3-SE rule
    pgr_diff_ci: tuple[float, float]  # over all replicates; NaN on an unbounded side
    p_value: float  # two-sided bootstrap p-value for acc_diff == 0


def compare_methods(
    labels: np.ndarray,
    weak: np.ndarray,
    ceiling: np.ndarray,
    student_a: np.ndarray,
    student_b: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Comparison:
    labels, mats = _correctness_matrices(labels, weak, ceiling, student_a, student_b)
    bw, bc, ba, bb = _bootstrap_means(mats, n_boot, np.random.default_rng(seed))
    diff = float(mats[2].mean() - mats[3].mean())
    d_samples = ba - bb
    gap, gap_se, _ = gap_standard_error(mats[0], mats[1])
    gap_ok = gap_is_defined(gap, gap_se)
    # Two-sided p-value: how often the bootstrap distribution, centred at 0, is as extreme.
    centred = d_samples - d_samples.mean()
    p = (
        float((np.abs(centred) >= abs(diff) - 1e-12).mean())
        if np.any(centred != 0)
        else (0.0 if diff else 1.0)
    )
    return Comparison(
        acc_diff=diff,
        acc_diff_ci=_ci(d_samples),
        pgr_diff=diff / gap if gap_ok else math.nan,
        pgr_diff_ci=ratio_ci(ratio_samples(d_samples, bc - bw)) if gap_ok else (math.nan, math.nan),
        p_value=max(p, 1.0 / n_boot) if diff else p,
    )


def holm(p_values: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm-Bonferroni: which of many claimed wins survive correction for multiple comparisons."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    reject = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] <= alpha / (m - rank):
            reject[i] = True
        else:
            break
    return reject


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input's order: ``holm(p, alpha)[i]`` iff ``adjusted[i] <= alpha``.

    The k-th smallest p (0-based) is multiplied by ``m - k``, made monotone (a running maximum in
    sorted order) and capped at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out
