"""The parameter-free Ladder (Blum and Hardt 2015), on 0/1 loss, as a pure function.

Why: the released scorer of the study returned exact counts, so one flipped prediction per call read
one label. The Ladder answers a submission with a *new* score only when a paired test on per-item
losses shows that it beats the agent's best released submission by a significant margin; the score is
then rounded to the test's resolution. Otherwise the previous released score is repeated. An attacker
therefore learns at most one coarse bit ("significantly better") per query, and only a few of those
can be spent before the bar is out of reach.

Two choices here are deliberate and tested (tests/referee/test_attacks.py):
- 0/1 loss on thresholded predictions: probabilities that differ but agree on the label carry no
  signal, so sub-threshold "tagging" of items cannot be read back.
- the significance level ``z`` (default 2.0, a one-sided paired z-test at about 2.5%): with ``z > 1``
  a submission differing in one item is never released (its paired z statistic is exactly 1), and
  with ``z = 2`` an improvement needs at least four net wins among the differing items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_Z = 2.0


def zero_one_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1.0 where the thresholded prediction (p >= 0.5) is wrong."""
    return ((np.asarray(probs) >= 0.5).astype(np.int8) != np.asarray(labels).astype(np.int8)).astype(
        np.float64
    )


@dataclass(frozen=True)
class LadderDecision:
    released_accuracy: float  # what the agent is told (rounded); the previous value when not improved
    improved: bool
    resolution: float  # accuracy units; 0 for the first release (rounded to 1/sqrt(n) then)
    z: float  # the paired statistic (never returned to agents; stored for integrity review)


def ladder_step(
    new_loss: np.ndarray,
    best_loss: np.ndarray | None,
    best_released: float | None,
    *,
    z_threshold: float = DEFAULT_Z,
) -> LadderDecision:
    """Decide what to release for a new submission, given the agent's best released one.

    ``new_loss``/``best_loss`` are per-item 0/1 losses on the same items. The first submission is
    released rounded to the binomial standard error 0.5/sqrt(n), the coarsest honest resolution.
    """
    n = len(new_loss)
    new_acc = 1.0 - float(np.mean(new_loss))
    if best_loss is None or best_released is None:
        step = 0.5 / math.sqrt(n)
        return LadderDecision(_round_to(new_acc, step), True, step, math.inf)
    diff = best_loss - new_loss  # > 0 where the new submission is right and the best was wrong
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1)) if n > 1 else 0.0
    se = sd / math.sqrt(n)
    if se == 0.0:  # identical losses on every item: nothing new can be learned
        return LadderDecision(best_released, False, 0.0, 0.0)
    z = mean / se
    if z > z_threshold:
        return LadderDecision(max(_round_to(new_acc, se), best_released), True, se, z)
    return LadderDecision(best_released, False, se, z)


def _round_to(value: float, step: float) -> float:
    if step <= 0:
        return value
    return round(round(value / step) * step, 6)
