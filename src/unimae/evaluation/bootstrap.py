"""Seeded bootstrap intervals: shared resamples, percentile intervals, averages and paired differences.

Resamples depend only on (task name, number of items, seed): two result folders scored on the same task
draw the same items, so their replicate scores pair up, and a paired difference needs no embeddings.

    draws = draw_indices("LeeSTS", 1225, seed=0, n_replicates=1000)   # (1000, 1225) item indices
    low, high = percentile_interval(replicates)                        # 95% percentile interval
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_REPLICATES = 1000
N_REPLICATES_CLUSTERING = 200  # each clustering replicate fits k-means: 200 keep a 2,000-text task near 10 s
LEVEL = 0.95
SEED = 0


def _generator(task: str, n_items: int, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{task}|{n_items}|{seed}".encode()).digest()
    return np.random.default_rng(np.frombuffer(digest[:16], dtype=np.uint32))


def draw_indices(task: str, n_items: int, seed: int = SEED, n_replicates: int = N_REPLICATES) -> np.ndarray:
    """``(n_replicates, n_items)`` int64 item indices drawn with replacement; row ``b`` depends only on
    (task, n_items, seed, b): a shorter request gives the first rows of a longer one."""
    rng = _generator(task, n_items, seed)
    return np.stack([rng.integers(0, n_items, n_items) for _ in range(n_replicates)]).reshape(
        n_replicates, n_items
    )


def replicate_seeds(
    task: str, n_items: int, seed: int = SEED, n_replicates: int = N_REPLICATES
) -> np.ndarray:
    """One int seed per replicate (for k-means restarts), from the same key as ``draw_indices``."""
    return _generator(f"{task}/restarts", n_items, seed).integers(0, 2**31 - 1, n_replicates)


def counts(draws: np.ndarray, n_items: int) -> np.ndarray:
    """``(B, n_items)`` float: how often each item is in each row of ``draws`` ``(B, k)``."""
    out = np.zeros((draws.shape[0], n_items))
    np.add.at(out, (np.arange(draws.shape[0])[:, None], draws), 1.0)
    return out


def percentile_interval(
    replicates: Sequence[float] | np.ndarray, level: float = LEVEL
) -> tuple[float, float]:
    """(low, high): the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates; a nan
    replicate (a statistic undefined on its resample, e.g. a correlation of constants) is left out."""
    values = np.asarray(replicates, dtype=float)
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class TaskInterval:
    """A task's main score, its bootstrap interval and the replicate scores it came from.

    ``score`` is the statistic on all items (equal to mteb's main score); ``n_items`` how many items were
    resampled (pairs, test texts, queries or documents).
    """

    score: float
    ci_low: float
    ci_high: float
    replicates: list[float]
    n_items: int


def interval(score: float, replicates: np.ndarray, n_items: int, level: float = LEVEL) -> TaskInterval:
    low, high = percentile_interval(replicates, level)
    return TaskInterval(float(score), low, high, [float(x) for x in replicates], n_items)


def mean_replicates(replicates: Mapping[str, Sequence[float]], n_replicates: int | None = None) -> np.ndarray:
    """Per-replicate mean over tasks: row ``b`` averages each task's replicate ``b mod B_task`` (tasks
    may have fewer replicates, e.g. clustering; a nan replicate of a task is left out of its row).
    ``n_replicates``: default the largest B."""
    arrays = [np.asarray(r, dtype=float) for r in replicates.values()]
    n = n_replicates or max(len(a) for a in arrays)
    with warnings.catch_warnings():  # a row of nan only (tiny tasks): nan, without a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean([a[np.arange(n) % len(a)] for a in arrays], axis=0)


@dataclass
class Difference:
    """``a - b`` of one score (a task's or the average), with its paired-bootstrap interval."""

    difference: float
    ci_low: float | None
    ci_high: float | None

    @property
    def includes_zero(self) -> bool | None:
        """True when the interval includes 0 (no clear difference); None without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low <= 0.0 <= self.ci_high


def paired_difference(
    score_a: float,
    score_b: float,
    replicates_a: Sequence[float] | None,
    replicates_b: Sequence[float] | None,
    level: float = LEVEL,
) -> Difference:
    """``a - b`` and the percentile interval of the replicate-wise differences (same resamples on both
    sides); no interval when either side has no replicates."""
    if replicates_a is None or replicates_b is None:
        return Difference(score_a - score_b, None, None)
    ra, rb = np.asarray(replicates_a, dtype=float), np.asarray(replicates_b, dtype=float)
    if ra.shape != rb.shape:
        raise ValueError(f"replicates differ in number: {ra.shape} vs {rb.shape}")
    low, high = percentile_interval(ra - rb, level)
    return Difference(score_a - score_b, low, high)
