"""Recommendation quality of live answers: rank of the held-out item → HR@k and NDCG@k.

Every answered request of a held-out user is scored against that user's held-out test item,
so a drill sees quality drop (say, when the fallback tier answers) second by second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MISS", "UNSCORED", "Quality", "quality_of", "rank_of"]

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
