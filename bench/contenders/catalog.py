"""What every baseline server shares: the item table, user histories, and top-K answers in
serving's JSON contract (so the load generator scores all contenders the same way).

Pure numpy; no web framework and no model runtime here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.schemas import RecommendRequest

__all__ = ["Catalog", "InvalidInput", "left_pad_one", "top_k"]


class InvalidInput(ValueError):
    """The request names an unknown user or item (HTTP 400)."""


@dataclass(frozen=True, eq=False)
class Catalog:
    """Items (index 1..N ↔ id, title), user histories (item indices) and the model's window."""

    item_ids: np.ndarray
    titles: np.ndarray
    index_of: dict[str, int]
    histories: dict[str, np.ndarray]
    max_seq_len: int
    version: str

    @staticmethod
    def build(items: pd.DataFrame, user_ids: Sequence[str], histories: Sequence[np.ndarray],
              max_seq_len: int, version: str) -> Catalog:
        """From an item table (index, item_id, title) and per-user index histories."""
        items = items.sort_values("index")
        ids = items["item_id"].astype(str).to_numpy(dtype=object)
        return Catalog(ids, items["title"].astype(str).to_numpy(dtype=object),
                       {item: i + 1 for i, item in enumerate(ids)},
                       {str(u): np.asarray(h, dtype=np.int64) for u, h in zip(user_ids, histories,
                                                                             strict=True)},
                       max_seq_len, version)

    @staticmethod
    def from_artifact(artifact: Path) -> Catalog:
        """Items and held-out-test histories of an artifact directory."""
        manifest = json.loads((artifact / "manifest.json").read_text())
        with np.load(artifact / "histories.npz", allow_pickle=False) as npz:
            users, hists = npz["user_ids"].tolist(), np.split(npz["flat"], npz["offsets"])
        return Catalog.build(pd.read_parquet(artifact / "items.parquet"), users, hists,
                             int(manifest["io"]["max_seq_len"]), str(manifest["version"]))

    def history_of(self, request: RecommendRequest) -> np.ndarray:
        """Item indices of the request's history (given, or the known user's)."""
        if request.user_id is not None:
            try:
                return self.histories[request.user_id]
            except KeyError:
                raise InvalidInput(f"unknown user_id {request.user_id!r}") from None
        try:
            return np.array([self.index_of[i] for i in request.history or ()], dtype=np.int64)
        except KeyError as exc:
            raise InvalidInput(f"unknown item id {exc.args[0]!r} in history") from None

    def answer(self, scores: np.ndarray, history: np.ndarray, request: RecommendRequest,
               replica: str) -> dict[str, Any]:
        """The JSON body of a 200 answer for one row of scores."""
        picks = top_k(scores, history if request.exclude_seen else None, request.k)
        return {"items": [{"item_id": self.item_ids[j - 1], "title": self.titles[j - 1],
                           "score": float(scores[j - 1])} for j in picks.tolist()],
                "model_version": self.version, "degraded": False, "replica": replica,
                "node": "127.0.0.1"}


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
