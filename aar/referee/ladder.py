"""The Ladder (Blum and Hardt 2015), hardened for colluding researchers, as a pure function.

Why: the released scorer of the study returned exact counts, so one flipped prediction per call read
one label. The Ladder answers a submission with a *new* score only when a paired test on per-item
losses shows that it beats the best released submission by a significant margin; the score is then
rounded. Otherwise the previous released score is repeated, so a refused query tells only one bit.

What the plain Ladder does not survive, and the rule here adds (tests/referee/test_collusion.py):
- **one state per task for everyone.** With a ladder per token, k colluding tokens get k fresh
  ladders that all start at the weak teacher, which anyone can rebuild from the public files. The
  caller keeps one state per task across all researchers of a campaign.
- **alpha spending.** A boosting attacker submits many label-blind variants and keeps the lucky ones.
  The j-th query against the same best must pass z > Phi^-1(1 - alpha / (j (j + 1))); the levels
  sum to alpha, so however many queries all tokens together send, a submission with no real
  improvement is released with probability at most ``alpha`` per released best (union bound).
- **a minimum number of changed rows.** A release must change at least ``min_changed(n)`` rows
  against the best, so no release can certify the label of a handful of items.
- **keyed jitter.** A pivot attack finds a set sitting just under the threshold and then adds one
  item at a time, reading each item's label from the answer. The threshold is raised by a half-normal
  jitter drawn from a keyed hash of the submission (``jitter_u``), so adding one item re-draws the
  threshold and the answer no longer isolates that item; resubmitting the same labels gets the
  same answer, so the jitter cannot be averaged away.

Two older choices stay: 0/1 loss on thresholded predictions (sub-threshold "tagging" carries no
signal) and releases rounded to the binomial resolution 0.5/sqrt(n), the coarsest honest one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


def zero_one_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1.0 where the thresholded prediction (p >= 0.5) is wrong."""
    return ((np.asarray(probs) >= 0.5).astype(np.int8) != np.asarray(labels).astype(np.int8)).astype(
        np.float64
    )


@dataclass(frozen=True)
class LadderRule:
    """The release rule's constants; one instance per referee (see RefereeConfig)."""

    alpha: float = 0.05  # chance per released best that a no-improvement submission is released
    min_rows: int = 10  # a release changes at least this many rows against the best...
    min_fraction: float = 0.05  # ...and at least this fraction of them
    jitter: float = 0.5  # scale of the keyed, upward-only threshold jitter (z units)

    def threshold(self, j: int) -> float:
        """The z a submission must beat when it is the j-th query (j >= 1) against the same best."""
        return float(norm.isf(self.alpha / (j * (j + 1))))

    def min_changed(self, n: int) -> int:
        return max(self.min_rows, math.ceil(self.min_fraction * n))


@dataclass(frozen=True)
class LadderDecision:
    released_accuracy: float  # what researchers are told (rounded); the previous value when not improved
    improved: bool
    resolution: float  # accuracy units of the rounding
    z: float  # the paired statistic (never returned to researchers; stored for integrity review)
    threshold: float  # what z had to beat (alpha level + jitter); stored for review
    changed_rows: int  # rows whose thresholded prediction differs from the best's


def jitter_u(key: bytes, *parts: bytes | str | int) -> float:
    """A uniform number in (0, 1) from a keyed hash: the same submission always gets the same one."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part if isinstance(part, bytes) else str(part).encode())
        mac.update(b"\0")
    return (int.from_bytes(mac.digest()[:8], "big") + 0.5) / 2**64


def ladder_step(
    new_loss: np.ndarray,
    best_loss: np.ndarray,
    best_released: float,
    *,
    query_index: int,
    u: float,
    rule: LadderRule = LadderRule(),
) -> LadderDecision:
    """Decide what to release for a new submission against the task's best released one.

    ``new_loss``/``best_loss`` are per-item 0/1 losses on the same items (the best starts as the weak
    teacher); ``query_index`` is j, counting queries against this best from 1; ``u`` the keyed
    uniform for this submission's jitter.
    """
    n = len(new_loss)
    step = 0.5 / math.sqrt(n)
    diff = best_loss - new_loss  # > 0 where the new submission is right and the best was wrong
    changed = int(np.count_nonzero(diff))
    threshold = rule.threshold(max(1, query_index)) + rule.jitter * abs(float(norm.ppf(u)))
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1)) if n > 1 else 0.0
    se = sd / math.sqrt(n)
    z = mean / se if se > 0 else 0.0
    if changed >= rule.min_changed(n) and z > threshold:
        released = max(_round_to(1.0 - float(new_loss.mean()), step), best_released)
        return LadderDecision(released, True, step, z, threshold, changed)
    return LadderDecision(best_released, False, step, z, threshold, changed)


def _round_to(value: float, step: float) -> float:
    return round(round(value / step) * step, 6)
