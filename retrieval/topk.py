"""Exact top-K: argpartition then a stable sort of the K, for one row or a batch of rows.

Deterministic: among the K picked, equal scores keep index order.

Example:
    >>> top_k(np.array([0.1, 0.9, 0.5], np.float32), 2)[0].tolist()
    [1, 2]
"""

from __future__ import annotations

import numpy as np

__all__ = ["exact_search", "top_k", "top_k_rows"]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (int64) and values of the ``k`` highest scores, best first."""
    n = scores.shape[0]
    k = max(0, min(k, n))
    if k == 0:
        return np.empty(0, np.int64), scores[:0]
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = part[np.lexsort((part, -scores[part]))]
    return order.astype(np.int64), scores[order]


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` of every row of a 2-D array: indices ``[b, k]`` and values ``[b, k]``."""
    b, n = scores.shape
    k = max(0, min(k, n))
    if k == 0:
        return np.empty((b, 0), np.int64), scores[:, :0]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (b, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(vals, order, axis=1)


def exact_search(queries: np.ndarray, items: np.ndarray, k: int,
                 chunk: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by dot product for each query row (``[b, d]`` against ``[n, d]``).

    The catalogue is scanned in chunks of ``chunk`` items so memory stays ``b × chunk``
    however large it is; each chunk's top-K is merged into the running best.
    """
    best_idx = np.empty((queries.shape[0], 0), np.int64)
    best_val = np.empty((queries.shape[0], 0), np.float32)
    for start in range(0, items.shape[0], chunk):
        scores = queries @ items[start:start + chunk].T
        idx, val = top_k_rows(scores, k)
        merged_idx = np.concatenate([best_idx, idx + start], axis=1)
        merged_val = np.concatenate([best_val, val.astype(np.float32)], axis=1)
        keep, best_val = top_k_rows(merged_val, k)
        best_idx = np.take_along_axis(merged_idx, keep, axis=1)
    return best_idx, best_val
