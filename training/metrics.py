"""Full-ranking leave-one-out metrics (no sampled negatives): HR@k, NDCG@k, MRR.

Scores are ``[batch, n_items]`` arrays where column ``j`` scores item index ``j + 1``.
Ties count against the target (a constant scorer ranks every target last), so a baseline
cannot gain from ties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Scorer = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class RankingMetrics:
    """HR@k, NDCG@k and MRR over a set of users."""

    hr: float
    ndcg: float
    mrr: float
    k: int
    users: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}hr@{self.k}": self.hr, f"{prefix}ndcg@{self.k}": self.ndcg,
                f"{prefix}mrr": self.mrr}


def _no_ranks() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class EvalResult:
    """Unfiltered and seen-items-excluded metrics of one scorer on one split.

    ``ranks`` / ``filtered_ranks`` keep every user's 0-based target rank (in split order) for
    paired statistics; they are left out of equality and of :meth:`as_dict`.
    """

    unfiltered: RankingMetrics
    seen_filtered: RankingMetrics
    ranks: np.ndarray = field(default_factory=_no_ranks, compare=False, repr=False)
    filtered_ranks: np.ndarray = field(default_factory=_no_ranks, compare=False, repr=False)

    def as_dict(self) -> dict[str, float]:
        return {**self.unfiltered.as_dict(), **self.seen_filtered.as_dict("filtered_")}

    def user_ndcg(self, filtered: bool = False) -> np.ndarray:
        """Per-user NDCG@k, in split order (what :attr:`unfiltered` ``.ndcg`` averages)."""
        metrics = self.seen_filtered if filtered else self.unfiltered
        return ndcg_per_user(self.filtered_ranks if filtered else self.ranks, metrics.k)


def target_ranks(scores: np.ndarray, targets: np.ndarray,
                 exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """0-based rank of each target item index among all items (pessimistic on ties).

    Example:
        >>> target_ranks(np.array([[0.1, 0.9, 0.5]]), np.array([3])).tolist()
        [1]
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows = np.arange(len(targets))
    cols = np.asarray(targets) - 1
    if exclude is not None:
        for row, seen in enumerate(exclude):
            seen_cols = np.asarray(seen, dtype=np.int64) - 1
            seen_cols = seen_cols[(seen_cols >= 0) & (seen_cols != cols[row])]
            scores[row, seen_cols] = -np.inf
    target_scores = scores[rows, cols][:, None]
    return (scores >= target_scores).sum(axis=1) - 1


def ndcg_per_user(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of each user from 0-based target ranks (one relevant item: 1/log2(rank + 2)).

    Example:
        >>> ndcg_per_user(np.array([0, 1, 10]), k=10).round(4).tolist()
        [1.0, 0.6309, 0.0]
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def summarize(ranks: np.ndarray, k: int = 10) -> RankingMetrics:
    """Aggregate 0-based ranks into HR@k, NDCG@k and MRR.

    Example:
        >>> summarize(np.array([0, 20]), k=10).hr
        0.5
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < k
    return RankingMetrics(hr=float(hit.mean()), ndcg=float(ndcg_per_user(ranks, k).mean()),
                          mrr=float((1.0 / (ranks + 1.0)).mean()), k=k, users=len(ranks))


def evaluate(scorer: Scorer, histories: Sequence[np.ndarray], targets: np.ndarray,
             k: int = 10, batch_size: int = 256) -> EvalResult:
    """Score every history, rank its target over all items, unfiltered and seen-filtered."""
    plain, filtered = [], []
    for start in range(0, len(histories), batch_size):
        hist = histories[start:start + batch_size]
        tgt = targets[start:start + batch_size]
        scores = scorer(hist)
        plain.append(target_ranks(scores, tgt))
        filtered.append(target_ranks(scores, tgt, exclude=hist))
    ranks, filtered_ranks = np.concatenate(plain), np.concatenate(filtered)
    return EvalResult(summarize(ranks, k), summarize(filtered_ranks, k), ranks, filtered_ranks)
