"""Search quality with binary relevance: Recall@K and NDCG@K over a set of queries.

A query may have several relevant items; ideal DCG counts ``min(k, |relevant|)`` of them.

Example:
    >>> recall_at_k([[3, 1, 2]], [{1, 9}], k=2)
    0.5
    >>> round(ndcg_at_k([[1, 3]], [{1}], k=10), 3)
    1.0
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

import numpy as np

__all__ = ["ndcg_at_k", "per_query_ndcg", "per_query_recall", "recall_at_k"]

Ranked = Sequence[Sequence[Hashable]]  # item ids (any hashable: indices or strings), best first
Relevant = Sequence[Collection[Hashable]]


def _check(ranked: Ranked, relevant: Relevant) -> None:
    if len(ranked) != len(relevant):
        raise ValueError(f"expected one relevant set per ranking, found {len(ranked)} rankings "
                         f"and {len(relevant)} relevant sets")


def per_query_recall(ranked: Ranked, relevant: Relevant,
                     k: int = 10) -> np.ndarray:
    """Share of each query's relevant items found in its top ``k`` (0 when none is relevant)."""
    _check(ranked, relevant)
    out = np.zeros(len(ranked), np.float64)
    for q, (rank, rel) in enumerate(zip(ranked, relevant, strict=True)):
        if rel:
            out[q] = len(set(list(rank)[:k]) & set(rel)) / len(rel)
    return out


def per_query_ndcg(ranked: Ranked, relevant: Relevant,
                   k: int = 10) -> np.ndarray:
    """NDCG@``k`` of each query (binary gains, log2 discount)."""
    _check(ranked, relevant)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(len(ranked), np.float64)
    for q, (rank, rel) in enumerate(zip(ranked, relevant, strict=True)):
        if not rel:
            continue
        rel_set = set(rel)
        gains = np.array([1.0 if i in rel_set else 0.0 for i in list(rank)[:k]])
        ideal = discount[:min(k, len(rel_set))].sum()
        out[q] = float((gains * discount[:len(gains)]).sum() / ideal)
    return out


def recall_at_k(ranked: Ranked, relevant: Relevant,
                k: int = 10) -> float:
    """Mean Recall@``k`` over queries."""
    values = per_query_recall(ranked, relevant, k)
    return float(values.mean()) if len(values) else 0.0


def ndcg_at_k(ranked: Ranked, relevant: Relevant,
              k: int = 10) -> float:
    """Mean NDCG@``k`` over queries."""
    values = per_query_ndcg(ranked, relevant, k)
    return float(values.mean()) if len(values) else 0.0
