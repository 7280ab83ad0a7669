"""PGR and its honest statistics.

``PGR = (acc(student) - acc(weak)) / (acc(ceiling) - acc(weak))``, all three evaluated on the same
items. Uncertainty comes from a paired, hierarchical bootstrap: each replicate resamples seeds (with
replacement) and then items (with replacement), and recomputes the three accuracies on the *same*
resampled items and seeds, so the correlation between weak, student and ceiling is kept.

PGR is reported as undefined (NaN) when the ceiling-weak gap is not significantly positive (its 95%
CI does not exclude 0): a ratio over a gap that may be zero is noise, whatever its point value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

N_BOOT = 2000


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
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(finite, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


@dataclass
class PGRResult:
    weak_acc: float
    ceiling_acc: float
    transfer_acc: float
    pgr: float  # NaN when undefined
    pgr_ci: tuple[float, float]
    gap: float
    gap_ci: tuple[float, float]
    weak_acc_ci: tuple[float, float]
    ceiling_acc_ci: tuple[float, float]
    transfer_acc_ci: tuple[float, float]
    transfer_seed_std: float
    n_items: int
    n_seeds: int

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
    bw, bc, bt = _bootstrap_means(mats, n_boot, np.random.default_rng(seed))
    gap_samples = bc - bw
    gap_ci = _ci(gap_samples)
    defined = gap_ci[0] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        pgr_samples = np.where(gap_samples > 0, (bt - bw) / gap_samples, np.nan)
    pgr = (t - w) / (c - w) if defined else math.nan
    seed_acc = mats[2].mean(axis=1)
    return PGRResult(
        weak_acc=w,
        ceiling_acc=c,
        transfer_acc=t,
        pgr=pgr,
        pgr_ci=_ci(pgr_samples) if defined else (math.nan, math.nan),
        gap=c - w,
        gap_ci=gap_ci,
        weak_acc_ci=_ci(bw),
        ceiling_acc_ci=_ci(bc),
        transfer_acc_ci=_ci(bt),
        transfer_seed_std=float(seed_acc.std(ddof=1)) if s > 1 else 0.0,
        n_items=n_items,
        n_seeds=s,
    )


@dataclass
class Comparison:
    """Method A minus method B, paired on the same items and seeds."""

    acc_diff: float
    acc_diff_ci: tuple[float, float]
    pgr_diff: float  # acc_diff / gap; NaN when the gap is undefined
    pgr_diff_ci: tuple[float, float]
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
    gap_samples = bc - bw
    gap_ok = _ci(gap_samples)[0] > 0
    gap = float(mats[1].mean() - mats[0].mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        pgr_samples = np.where(gap_samples > 0, d_samples / gap_samples, np.nan)
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
        pgr_diff_ci=_ci(pgr_samples) if gap_ok else (math.nan, math.nan),
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
