"""What a version knows besides its graph: items, users' histories, the fallback lists.

Model-free, so the degraded tier can run where no onnxruntime session does — inside a
replica whose model stalls, and inside ``serving.client`` when no replica answers at all.
Built from the verified Manifest (``from_manifest``): version and window come from it, never
from reading manifest.json again. Users are looked up through a ``serving.users.UserGate``: by
pseudonym when the artifact stores pseudonyms, and never when the forget register names them.

Example:
    >>> artifact = DirectorySource("/tmp/sample-artifact", pub).fetch_verified()  # doctest: +SKIP
    >>> catalog = Catalog.from_manifest(artifact.path, artifact.manifest)  # doctest: +SKIP
    >>> catalog.items_json(catalog.fallback(catalog.resolve(RecommendRequest(user_id="1"))))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from export.fallback import FallbackLists, recommend_fallback
from export.manifest import Manifest
from serving.errors import InvalidRequest, ModelLoadError
from serving.schemas import RecommendRequest
from serving.users import UserGate, UserPrivacy

__all__ = ["Catalog", "Query", "Ranked"]

_MAX_UNKNOWN_SHOWN = 5


@dataclass(frozen=True)
class Query:
    """A resolved request: the full history (item indices, oldest first), k, exclude flag."""

    seq: np.ndarray
    k: int
    exclude_seen: bool


@dataclass(frozen=True)
class Ranked:
    """Item indices best first and their scores (rank-based in the degraded tier)."""

    indices: np.ndarray
    scores: np.ndarray
    degraded: bool = False


class Catalog:
    """Item table, user histories and fallback lists of one verified artifact version."""

    def __init__(self, version: str, max_seq_len: int, items: pd.DataFrame,
                 histories: dict[str, np.ndarray], fallback_lists: FallbackLists,
                 users: UserGate | None = None) -> None:
        self.version = version
        self.max_seq_len = max_seq_len
        self.n_items = len(items)
        ordered = items.sort_values("index")
        if ordered["index"].tolist() != list(range(1, self.n_items + 1)):
            raise ModelLoadError("items.parquet: expected indices 1..N without gaps")
        self._item_ids: list[str] = [""] + [str(x) for x in ordered["item_id"]]
        self._titles: list[str] = [""] + [str(x) for x in ordered["title"]]
        self._index = {item_id: i for i, item_id in enumerate(self._item_ids) if i}
        self._users = users or UserGate.clear()
        self._histories = histories  # keyed by stored id; replaced whole, never mutated
        self._forget_generation = 0
        self._drop_forgotten()
        self._fallback = fallback_lists

    @classmethod
    def from_manifest(cls, path: str | os.PathLike[str], manifest: Manifest,
                      privacy: UserPrivacy | None = None) -> Catalog:
        """The tables of the artifact at ``path`` that ``manifest`` describes (everything but
        the graph); pass the Manifest its verification returned. ``privacy`` says where the
        pseudonym key and the forget register are (default: their default paths); a
        pseudonymised version without its key is a ModelLoadError."""
        users = UserGate.for_version(manifest, privacy or UserPrivacy())
        root = Path(path)
        items = pd.read_parquet(root / "items.parquet", columns=["index", "item_id", "title"])
        with np.load(root / "fallback.npz") as npz:
            lists = FallbackLists(popular=npz["popular"], covisit=npz["covisit"])
        histories: dict[str, np.ndarray] = {}
        if any(entry.path == "histories.npz" for entry in manifest.files):
            with np.load(root / "histories.npz") as npz:
                seqs = np.split(npz["flat"].astype(np.int64), npz["offsets"])
                histories = {str(u): s for u, s in zip(npz["user_ids"], seqs, strict=True)}
        return cls(manifest.version, manifest.io["max_seq_len"], items, histories, lists, users)

    def _drop_forgotten(self) -> None:
        generation, forgotten = self._users.forgotten()
        if generation != self._forget_generation:
            self._histories = self._users.without(self._histories, forgotten)
            self._forget_generation = generation

    def resolve(self, req: RecommendRequest) -> Query:
        """Map ids to item indices; unknown (or forgotten) users or items are the caller's
        error."""
        if req.user_id is not None:
            self._drop_forgotten()
            # A forgotten user gets the unknown user's answer: it reveals nothing.
            seq = self._histories.get(self._users.stored_id(req.user_id))
            if seq is None:
                raise InvalidRequest(f"user_id {req.user_id!r} is unknown to model version "
                                     f"{self.version}; send a history of item ids instead")
            if len(seq) == 0:
                raise InvalidRequest(f"user_id {req.user_id!r} has an empty history; send one")
        else:
            assert req.history is not None
            idx = [self._index.get(i, 0) for i in req.history]
            if 0 in idx:
                unknown = [i for i, j in zip(req.history, idx, strict=True) if j == 0]
                raise InvalidRequest(
                    f"history: {len(unknown)} unknown item id(s) for model version "
                    f"{self.version}: {unknown[:_MAX_UNKNOWN_SHOWN]!r}; send ids from the catalog")
            seq = np.asarray(idx, dtype=np.int64)
        return Query(seq, req.k, req.exclude_seen)

    def fallback(self, q: Query) -> Ranked:
        """The degraded tier: co-visitation then popularity, scores 1/(rank+1)."""
        exclude = set(q.seq.tolist()) if q.exclude_seen else None
        picked = np.asarray(recommend_fallback(self._fallback, q.seq.tolist(), q.k, exclude),
                            dtype=np.int64)
        return Ranked(picked, 1.0 / np.arange(1, len(picked) + 1, dtype=np.float32), True)

    def items_json(self, ranked: Ranked) -> list[dict[str, Any]]:
        """``[{"item_id", "title", "score"}]`` ready for JSON or protobuf."""
        ids, titles = self._item_ids, self._titles
        return [{"item_id": ids[i], "title": titles[i], "score": float(s)}
                for i, s in zip(ranked.indices.tolist(), ranked.scores.tolist(), strict=True)]

    @property
    def popular(self) -> np.ndarray:
        """Item indices, most popular first (the fallback's list)."""
        return self._fallback.popular

    @property
    def some_history(self) -> np.ndarray:
        """A known user's history, or ``[1]`` (for probes)."""
        return next(iter(self._histories.values()), np.array([1], dtype=np.int64))

    @property
    def n_users(self) -> int:
        """Users with a history in memory (forgotten users are dropped at the next look)."""
        self._drop_forgotten()
        return len(self._histories)

    @property
    def some_user(self) -> str | None:
        """A user id known to this version, as a caller sends it (for probes and examples);
        None when the version stores pseudonyms only."""
        return None if self._users.pseudonymised else next(iter(self._histories), None)
