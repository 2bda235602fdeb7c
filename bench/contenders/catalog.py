"""What every baseline server shares on top of serving's own ``Catalog``: one artifact's items
and user histories, the model's window, and top-K answers in serving's JSON contract (so the
load generator scores all contenders the same way). Unknown users or items raise serving's
``InvalidRequest`` (HTTP 400).

Pure numpy; no web framework and no model runtime here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.manifest import read_manifest
from serving.catalog import Catalog, Query, Ranked

__all__ = ["answer", "left_pad_one", "load_catalog", "top_k"]


def load_catalog(artifact: Path) -> Catalog:
    """serving's Catalog of an artifact directory, from its validated manifest.

    Baselines hold no public key, so this checks the manifest's format, not its signature.
    """
    return Catalog.from_manifest(artifact, read_manifest(artifact))


def answer(catalog: Catalog, scores: np.ndarray, query: Query, replica: str) -> dict[str, Any]:
    """The JSON body of a 200 answer for one row of scores (item index i at ``scores[i - 1]``).

    Example:
        >>> q = catalog.resolve(RecommendRequest(user_id="1", k=10))  # doctest: +SKIP
        >>> answer(catalog, scores, q, "raw-ort")["items"][0]  # doctest: +SKIP
    """
    picks = top_k(scores, query.seq if query.exclude_seen else None, query.k)
    ranked = Ranked(picks, np.asarray(scores)[picks - 1])
    return {"items": catalog.items_json(ranked), "model_version": catalog.version,
            "degraded": False, "replica": replica, "node": "127.0.0.1"}


def left_pad_one(history: np.ndarray, max_len: int) -> np.ndarray:
    """The newest ``max_len`` items as int64 ``[1, max_len]``, left-padded with 0.

    Example:
        >>> left_pad_one(np.array([4, 5]), 3).tolist()
        [[0, 4, 5]]
    """
    out = np.zeros((1, max_len), dtype=np.int64)
    tail = history[-max_len:]
    if len(tail):
        out[0, max_len - len(tail):] = tail
    return out


def top_k(scores: np.ndarray, exclude: np.ndarray | None, k: int) -> np.ndarray:
    """Item indices (1-based) of the ``k`` best scores, best first, leaving out ``exclude``.

    Example:
        >>> top_k(np.array([0.1, 0.9, 0.5, 0.7]), np.array([2]), 2).tolist()
        [4, 3]
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and len(exclude):
        scores[exclude - 1] = -np.inf
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")] + 1
