"""The Ray-free model runner: one verified artifact version in onnxruntime, ready to rank.

It turns a request into item indices (``resolve``), scores a batch of them in one
onnxruntime call (``score``: left-pad, top-K by argpartition, exclude-seen), answers from the
artifact's popularity / co-visitation lists without the model (``fallback``), and proves
itself with a probe prediction before it is put into service (``probe``).

Example:
    >>> runner = ModelRunner.load("/tmp/sample-artifact", "v1")  # doctest: +SKIP
    >>> q = runner.resolve(RecommendRequest(user_id="1", k=5))  # doctest: +SKIP
    >>> runner.items_json(runner.score([q])[0])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from export.fallback import FallbackLists, recommend_fallback
from serving.errors import InvalidRequest, ModelLoadError
from serving.schemas import RecommendRequest

__all__ = ["ModelRunner", "Query", "Ranked", "choose_providers", "session_options"]

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


def choose_providers(available: Sequence[str] | None = None) -> list[str]:
    """CUDA when onnxruntime offers it, CPU always as the last resort."""
    available = list(ort.get_available_providers() if available is None else available)
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + [
        "CPUExecutionProvider"]


def session_options(threads: int) -> ort.SessionOptions:
    """One intra-op thread per CPU of the replica, no spinning (measured best on 2 cores)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class ModelRunner:
    """One artifact version loaded for inference; immutable once built, safe across threads."""

    def __init__(self, version: str, session: ort.InferenceSession, max_seq_len: int,
                 items: pd.DataFrame, histories: dict[str, np.ndarray],
                 fallback_lists: FallbackLists, load_s: float = 0.0) -> None:
        self.version = version
        self.max_seq_len = max_seq_len
        self.n_items = len(items)
        self.load_s = load_s
        self._session = session
        self._input = session.get_inputs()[0].name
        ordered = items.sort_values("index")
        if ordered["index"].tolist() != list(range(1, self.n_items + 1)):
            raise ModelLoadError("items.parquet: expected indices 1..N without gaps")
        self._item_ids: list[str] = [""] + [str(x) for x in ordered["item_id"]]
        self._titles: list[str] = [""] + [str(x) for x in ordered["title"]]
        self._index = {item_id: i for i, item_id in enumerate(self._item_ids) if i}
        self._histories = histories
        self._fallback = fallback_lists

    @classmethod
    def load(cls, path: str | os.PathLike[str], version: str, *, threads: int | None = None,
             providers: Sequence[str] | None = None, use_int8: bool = False) -> ModelRunner:
        """Load an already verified artifact directory; raises ModelLoadError on any defect."""
        root, t0 = Path(path), time.perf_counter()
        try:
            import json

            io = json.loads((root / "manifest.json").read_text())["io"]
            graph = root / ("model.int8.onnx" if use_int8 and (root / "model.int8.onnx").exists()
                            else "model.onnx")
            threads = threads or len(os.sched_getaffinity(0))
            session = ort.InferenceSession(str(graph), session_options(threads),
                                           providers=list(providers or choose_providers()))
            items = pd.read_parquet(root / "items.parquet", columns=["index", "item_id", "title"])
            with np.load(root / "fallback.npz") as npz:
                lists = FallbackLists(popular=npz["popular"], covisit=npz["covisit"])
            histories: dict[str, np.ndarray] = {}
            if (root / "histories.npz").exists():
                with np.load(root / "histories.npz") as npz:
                    seqs = np.split(npz["flat"].astype(np.int64), npz["offsets"])
                    histories = {str(u): s for u, s in zip(npz["user_ids"], seqs, strict=True)}
            return cls(version, session, int(io["max_seq_len"]), items, histories, lists,
                       time.perf_counter() - t0)
        except ModelLoadError:
            raise
        except Exception as exc:  # any defect of a verified artifact is still a refusal
            raise ModelLoadError(f"version {version}: cannot load {root}: {exc}") from exc

    # -- requests -------------------------------------------------------------------------

    def resolve(self, req: RecommendRequest) -> Query:
        """Map ids to item indices; unknown users or items are the caller's error."""
        if req.user_id is not None:
            seq = self._histories.get(req.user_id)
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

    def score(self, queries: Sequence[Query]) -> list[Ranked]:
        """Rank a batch with one onnxruntime call (left-padded to the longest input)."""
        tails = [q.seq[-self.max_seq_len:] for q in queries]
        width = max(len(t) for t in tails)
        batch = np.zeros((len(tails), width), dtype=np.int64)
        for row, tail in enumerate(tails):
            batch[row, width - len(tail):] = tail
        scores = self._session.run(None, {self._input: batch})[0]
        return [self._top_k(scores[row], q) for row, q in enumerate(queries)]

    def _top_k(self, row: np.ndarray, q: Query) -> Ranked:
        if q.exclude_seen:
            row = row.copy()
            row[q.seq - 1] = -np.inf
            k = min(q.k, self.n_items - len(np.unique(q.seq)))
        else:
            k = min(q.k, self.n_items)
        if k <= 0:
            return Ranked(np.empty(0, np.int64), np.empty(0, np.float32))
        top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
        top = top[np.argsort(-row[top], kind="stable")]
        return Ranked(top + 1, row[top])

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

    def probe(self) -> None:
        """A prediction must come back finite and well-formed, else the version is refused."""
        seq = next(iter(self._histories.values()), np.array([1], dtype=np.int64))
        try:
            ranked = self.score([Query(seq, 10, True)])[0]
        except Exception as exc:
            raise ModelLoadError(f"version {self.version}: probe prediction failed: {exc}") from exc
        ok = (len(ranked.indices) > 0 and np.isfinite(ranked.scores).all()
              and ((ranked.indices >= 1) & (ranked.indices <= self.n_items)).all())
        if not ok:
            raise ModelLoadError(f"version {self.version}: probe prediction is malformed "
                                 f"(indices {ranked.indices[:5]}, scores {ranked.scores[:5]})")

    @property
    def some_user(self) -> str | None:
        """A user id known to this version (for probes and examples)."""
        return next(iter(self._histories), None)
