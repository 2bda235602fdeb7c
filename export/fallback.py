"""The degraded tier's data: popularity top-K and per-item co-visitation lists.

Served without the model when no model replica can answer (``degraded: true``). Pure numpy,
sparse enough for 10^6 items: co-visitation pairs are counted with one sort, never a dense
item×item matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FallbackLists:
    """``popular[k]`` item indices by popularity; ``covisit[i]`` neighbours of item ``i`` (-1 pad)."""

    popular: np.ndarray
    covisit: np.ndarray


def build_fallback(histories: Sequence[np.ndarray], n_items: int, top_k: int = 100,
                   window: int = 3) -> FallbackLists:
    """Count items and ordered co-visits within ``window`` steps, keep the top ``top_k`` each.

    Example:
        >>> fb = build_fallback([np.array([1, 2, 3])], 3, top_k=2, window=1)
        >>> fb.popular.tolist(), fb.covisit[2].tolist()
        ([1, 2], [1, 3])
    """
    flat = np.concatenate(histories).astype(np.int64)
    counts = np.bincount(flat, minlength=n_items + 1)
    counts[0] = 0
    popular = np.argsort(-counts[1:], kind="stable")[:top_k] + 1
    src_parts, dst_parts = [], []
    for seq in histories:
        seq = np.asarray(seq, dtype=np.int64)
        for off in range(1, window + 1):
            if len(seq) > off:
                src_parts += [seq[:-off], seq[off:]]
                dst_parts += [seq[off:], seq[:-off]]
    covisit = np.full((n_items + 1, top_k), -1, dtype=np.int64)
    if src_parts:
        src, dst = np.concatenate(src_parts), np.concatenate(dst_parts)
        keep = src != dst
        keys, pair_counts = np.unique(src[keep] * (n_items + 1) + dst[keep], return_counts=True)
        a, b = keys // (n_items + 1), keys % (n_items + 1)
        # Sort by source item, then count descending, then neighbour popularity descending.
        order = np.lexsort((-counts[b], -pair_counts, a))
        a, b = a[order], b[order]
        starts = np.searchsorted(a, a, side="left")
        rank = np.arange(len(a)) - starts
        sel = rank < top_k
        covisit[a[sel], rank[sel]] = b[sel]
    return FallbackLists(popular=popular.astype(np.int64), covisit=covisit)


def recommend_fallback(lists: FallbackLists, history: Sequence[int], k: int,
                       exclude: set[int] | None = None) -> list[int]:
    """Co-visitation neighbours of the newest items first, then popular items, deduplicated."""
    picked: list[int] = []
    seen = set(exclude or ())
    candidates = [lists.covisit[i] for i in reversed(list(history)[-3:])
                  if 0 < i < len(lists.covisit)]
    for item in (*[int(x) for row in candidates for x in row if x > 0],
                 *[int(x) for x in lists.popular]):
        if item not in seen:
            seen.add(item)
            picked.append(item)
            if len(picked) == k:
                break
    return picked
