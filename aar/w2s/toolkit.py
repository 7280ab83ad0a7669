"""Building blocks ideas can compose (``from aar.w2s.toolkit import knn_smooth``).

They use only what an :class:`~aar.w2s.methods.IdeaContext` holds (features and weak soft labels),
never a true label, so a researcher's idea built from them stays within the rules.
"""

from __future__ import annotations

import numpy as np


def cosine_neighbours(x: np.ndarray, k: int, *, block: int = 1024) -> np.ndarray:
    """Indices of each row's ``k`` nearest other rows by cosine similarity of standardised features.

    Computed in blocks so memory stays O(block x n) rather than O(n^2).
    """
    x = np.asarray(x, dtype=np.float64)
    z = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    n = len(z)
    k = max(1, min(k, n - 1))
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        sims = z[start : start + block] @ z.T
        rows = np.arange(start, min(start + block, n))
        sims[rows - start, rows] = -np.inf  # never your own neighbour
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        out[rows - start] = np.take_along_axis(part, order, axis=1)
    return out


def knn_smooth(x: np.ndarray, targets: np.ndarray, k: int = 10, self_weight: float = 0.0) -> np.ndarray:
    """Replace each target by the mean target of its ``k`` nearest neighbours in feature space.

    Why it can help: a weak teacher's errors are noise with respect to the strong model's geometry,
    while the true label is smooth in it; averaging over strong-feature neighbours denoises the labels
    before the student sees them.
    """
    targets = np.asarray(targets, dtype=np.float64)
    neighbours = cosine_neighbours(x, k)
    smoothed = targets[neighbours].mean(axis=1)
    return self_weight * targets + (1 - self_weight) * smoothed


def confidence_mask(weak: np.ndarray, low: float = 0.25, high: float = 0.75) -> np.ndarray:
    """Rows whose weak label lies outside [low, high]."""
    weak = np.asarray(weak)
    return (weak < low) | (weak > high)


def prior_matched_hard(p: np.ndarray, positive_rate: float) -> np.ndarray:
    """Hard labels thresholded so that the positive rate matches ``positive_rate``."""
    p = np.asarray(p, dtype=np.float64)
    threshold = np.quantile(p, 1 - positive_rate) if 0 < positive_rate < 1 else 0.5
    return (p >= threshold).astype(float)
