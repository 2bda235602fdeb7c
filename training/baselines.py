"""Non-neural baselines scored exactly like the transformer: popularity, transitions,
recency-weighted transitions, item-kNN.

Each baseline is fitted on training sequences and returns a :data:`~training.metrics.Scorer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.cooccurrence import MAX_DENSE_ITEMS, co_occurrence
from training.metrics import Scorer

#: Weights of the newest five history items in :func:`recency_transitions` (newest first).
RECENCY_WEIGHTS = (1.0, 0.7, 0.5, 0.35, 0.25)


def popularity(train: Sequence[np.ndarray], n_items: int) -> Scorer:
    """Most-popular: the same ranking for everyone."""
    counts = np.bincount(np.concatenate(train), minlength=n_items + 1)[1:].astype(np.float64)

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(counts, (len(histories), n_items))

    return score


def _popularity_tiebreak(train: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    counts = np.bincount(np.concatenate(train), minlength=n_items + 1)[1:].astype(np.float64)
    return 1e-6 * counts / max(counts.max(), 1.0)


def transition_counts(train: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``T[i, j]`` = how often item ``j + 1`` directly follows item ``i + 1`` in ``train``.

    Example:
        >>> transition_counts([np.array([1, 2, 1, 2])], 2).astype(int).tolist()
        [[0, 2], [1, 0]]
    """
    prev = np.concatenate([s[:-1] for s in train]) - 1
    nxt = np.concatenate([s[1:] for s in train]) - 1
    counts = np.zeros((n_items, n_items), dtype=np.float32)
    np.add.at(counts, (prev, nxt), 1.0)
    return counts


def transitions(train: Sequence[np.ndarray], n_items: int) -> Scorer:
    """First-order item-to-item transition counts from the last item, popularity tie-break."""
    counts = transition_counts(train, n_items)
    tiebreak = _popularity_tiebreak(train, n_items)

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        last = np.array([h[-1] - 1 for h in histories])
        return counts[last] + tiebreak

    return score


def recency_transitions(train: Sequence[np.ndarray], n_items: int,
                        weights: Sequence[float] = RECENCY_WEIGHTS) -> Scorer:
    """Transition counts from each of the newest ``len(weights)`` items, recency-weighted.

    ``score = Σ_j weights[j] · T[h[-1 - j]]``, popularity tie-break; a shorter history uses
    the first weights only.

    Example:
        >>> score = recency_transitions([np.array([1, 2]), np.array([3, 1])], 3, (1.0, 0.5))
        >>> score([np.array([3, 1])]).round(3).tolist()  # T[1] + 0.5·T[3] = [0.5, 1, 0]
        [[0.5, 1.0, 0.0]]
    """
    counts = transition_counts(train, n_items)
    tiebreak = _popularity_tiebreak(train, n_items)
    w = np.asarray(weights, dtype=np.float64)

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(histories), n_items), dtype=np.float64)
        for row, hist in enumerate(histories):
            tail = np.asarray(hist[-len(w):][::-1], dtype=np.int64) - 1
            out[row] = w[: len(tail)] @ counts[tail] + tiebreak
        return out

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
        out["recency_transitions"] = recency_transitions(train, n_items)
        out["item_knn"] = item_knn(train, n_items)
    return out
