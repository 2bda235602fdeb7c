"""Pre-training of item embeddings from co-occurrence (PPMI + truncated eigendecomposition).

The transformer is then fine-tuned from these embeddings instead of random ones: on small
data such as MovieLens-100k it starts from the collaborative signal that item-kNN exploits,
and learns the order on top. Dense, so only for catalogs up to ``MAX_PRETRAIN_ITEMS``
(larger catalogs start from random embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.cooccurrence import MAX_DENSE_ITEMS, co_occurrence

MAX_PRETRAIN_ITEMS = MAX_DENSE_ITEMS


def ppmi_embeddings(train: Sequence[np.ndarray], n_items: int, dim: int,
                    target_std: float = 0.05) -> np.ndarray:
    """``[n_items, dim]`` embeddings for item indices 1..N (row ``j`` is item ``j + 1``).

    Example:
        >>> ppmi_embeddings([np.array([1, 2]), np.array([1, 2]), np.array([3])], 3, 2).shape
        (3, 2)
    """
    co = co_occurrence(train, n_items).astype(np.float64)
    np.fill_diagonal(co, 0.0)
    total = co.sum()
    if total == 0:
        return np.random.default_rng(0).normal(0, target_std, (n_items, dim)).astype(np.float32)
    marginal = co.sum(axis=1) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log((co / total) / np.outer(marginal, marginal))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
    values, vectors = np.linalg.eigh(ppmi)
    top = np.argsort(-np.abs(values))[:dim]
    emb = vectors[:, top] * np.sqrt(np.abs(values[top]))
    if emb.shape[1] < dim:
        emb = np.pad(emb, ((0, 0), (0, dim - emb.shape[1])))
    std = emb.std()
    return (emb * (target_std / std if std > 0 else 1.0)).astype(np.float32)
