"""Quality of live answers: rank of the held-out item → HR@k and NDCG@k (recommend), and
Recall@k / NDCG@k of a search answer against its query's relevant items (search).

Every answered request of a held-out user is scored against that user's held-out test item,
and every answered held-out search against its relevant set, so a drill sees quality drop
(say, when the fallback tier or BM25 answers) second by second. The search metrics are
``retrieval.metrics``' definitions (binary gains, log2 discount, ideal DCG over
``min(k, |relevant|)`` items) for one answer of string ids, cheap enough for the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MISS", "UNSCORED", "Quality", "SearchQuality", "quality_of", "rank_of",
           "search_quality_of", "search_scores"]

MISS = -1
UNSCORED = -2


@dataclass(frozen=True)
class Quality:
    """HR@k and NDCG@k over ``scored`` answers (None when nothing was scored)."""

    scored: int
    hr: float | None
    ndcg: float | None
    k: int = 10


def rank_of(target: str | None, returned: Sequence[str]) -> int:
    """0-based position of ``target`` in ``returned``; MISS if absent, UNSCORED if no target.

    Example:
        >>> rank_of("b", ["a", "b"]), rank_of("z", ["a"]), rank_of(None, ["a"])
        (1, -1, -2)
    """
    if target is None:
        return UNSCORED
    for pos, item in enumerate(returned):
        if item == target:
            return pos
    return MISS


def quality_of(ranks: np.ndarray, k: int = 10) -> Quality:
    """HR@k and NDCG@k (one relevant item: 1/log2(rank+2)) over the scored ranks.

    Example:
        >>> q = quality_of(np.array([0, -1, -2, 1]))
        >>> q.scored, q.hr, round(q.ndcg, 4)
        (3, 0.6667, 0.5436)
    """
    ranks = np.asarray(ranks)
    ranks = ranks[ranks != UNSCORED]
    if len(ranks) == 0:
        return Quality(0, None, None, k)
    hit = (ranks >= 0) & (ranks < k)
    gain = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return Quality(len(ranks), round(float(hit.mean()), 4), round(float(gain.mean()), 4), k)


@dataclass(frozen=True)
class SearchQuality:
    """Mean Recall@k and NDCG@k over ``scored`` search answers (None when none was scored)."""

    scored: int
    recall: float | None
    ndcg: float | None
    k: int = 10


def search_scores(relevant: Collection[str], returned: Sequence[str], k: int = 10
                  ) -> tuple[float, float]:
    """Recall@k and NDCG@k of one search answer; NaN for both when nothing is relevant.

    Example:
        >>> recall, ndcg = search_scores({"b", "z"}, ["a", "b", "c"])
        >>> recall, round(ndcg, 4)
        (0.5, 0.3869)
    """
    if not relevant:
        return math.nan, math.nan
    wanted = set(relevant)
    top = list(dict.fromkeys(returned[:k]))  # a repeated item is found once
    gain = sum(1.0 / math.log2(pos + 2) for pos, item in enumerate(top) if item in wanted)
    ideal = sum(1.0 / math.log2(pos + 2) for pos in range(min(k, len(wanted))))
    hits = sum(item in wanted for item in top)
    return hits / len(wanted), gain / ideal


def search_quality_of(recall: np.ndarray, ndcg: np.ndarray, k: int = 10) -> SearchQuality:
    """Means over the scored answers (NaN marks an unscored one).

    Example:
        >>> search_quality_of(np.array([1.0, np.nan, 0.5]), np.array([1.0, np.nan, 0.25]))
        SearchQuality(scored=2, recall=0.75, ndcg=0.625, k=10)
    """
    recall, ndcg = np.asarray(recall, dtype=np.float64), np.asarray(ndcg, dtype=np.float64)
    scored = ~np.isnan(recall)
    if not scored.any():
        return SearchQuality(0, None, None, k)
    return SearchQuality(int(scored.sum()), round(float(recall[scored].mean()), 4),
                         round(float(ndcg[scored].mean()), 4), k)
