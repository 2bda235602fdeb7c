"""Non-neural baselines scored exactly like the transformer: popularity, transitions, item-kNN.

Each baseline is fitted on training sequences and returns a :data:`~training.metrics.Scorer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.cooccurrence import MAX_DENSE_ITEMS, co_occurrence
from training.metrics import Scorer



def popularity(train: Sequence[np.ndarray], n_items: int) -> Scorer:
    """Most-popular: the same ranking for everyone."""
    counts = np.bincount(np.concatenate(train), minlength=n_items + 1)[1:].astype(np.float64)

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(counts, (len(histories), n_items))

    return score


def _popularity_tiebreak(train: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    counts = np.bincount(np.concatenate(train), minlength=n_items + 1)[1:].astype(np.float64)
    return 1e-6 * counts / max(counts.max(), 1.0)


def transitions(train: Sequence[np.ndarray], n_items: int) -> Scorer:
    """First-order item-to-item transition counts from the last item, popularity tie-break."""
    prev = np.concatenate([s[:-1] for s in train]) - 1
    nxt = np.concatenate([s[1:] for s in train]) - 1
    counts = np.zeros((n_items, n_items), dtype=np.float32)
    np.add.at(counts, (prev, nxt), 1.0)
    tiebreak = _popularity_tiebreak(train, n_items)

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        last = np.array([h[-1] - 1 for h in histories])
        return counts[last] + tiebreak

    return score


def item_knn(train: Sequence[np.ndarray], n_items: int, recent: int = 5,
             decay: float = 0.7) -> Scorer:
    """Cosine item-item similarity over user co-occurrence, summed over recent items."""
    co = co_occurrence(train, n_items)
    norms = np.sqrt(np.diag(co)) + 1e-9
    sim = co / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    tiebreak = _popularity_tiebreak(train, n_items)
    weights = decay ** np.arange(recent)

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(histories), n_items), dtype=np.float64)
        for row, hist in enumerate(histories):
            tail = hist[-recent:][::-1] - 1
            out[row] = weights[: len(tail)] @ sim[tail] + tiebreak
        return out

    return score


def fit_baselines(train: Sequence[np.ndarray], n_items: int) -> dict[str, Scorer]:
    """Every baseline that is affordable at this catalog size, by name."""
    out = {"popularity": popularity(train, n_items)}
    if n_items <= MAX_DENSE_ITEMS:
        out["transitions"] = transitions(train, n_items)
        out["item_knn"] = item_knn(train, n_items)
    return out
