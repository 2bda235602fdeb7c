"""The Ray-free model runner: one verified artifact version in onnxruntime, ready to rank.

It turns a request into item indices (``resolve``), scores a batch of them in one
onnxruntime call (``score``: left-pad, top-K by argpartition, exclude-seen), answers from the
artifact's popularity / co-visitation lists without the model (``fallback``), and proves
itself with a probe prediction before it is put into service (``probe``).

Example:
    >>> runner = ModelRunner.load(DirectorySource(art, pub).fetch_verified())  # doctest: +SKIP
    >>> q = runner.resolve(RecommendRequest(user_id="1", k=5))  # doctest: +SKIP
    >>> runner.items_json(runner.score([q])[0])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from export.verify import VerifiedArtifact
from serving.catalog import Catalog, Query, Ranked
from serving.errors import ModelLoadError
from serving.search import SearchModel, SearchQuery, has_search
from serving.users import UserPrivacy

__all__ = ["ModelRunner", "Query", "Ranked", "choose_providers", "session_options"]


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

    def __init__(self, session: ort.InferenceSession, catalog: Catalog,
                 load_s: float = 0.0, search: SearchModel | None = None) -> None:
        self.catalog = catalog
        self.search = search  # the version's product search, when its artifact carries one
        self.version = catalog.version
        self.max_seq_len = catalog.max_seq_len
        self.n_items = catalog.n_items
        self.load_s = load_s
        self._session = session
        self._input = session.get_inputs()[0].name
        # The model-free part answers for the runner (one implementation of each).
        self.resolve = catalog.resolve
        self.fallback = catalog.fallback
        self.items_json = catalog.items_json

    @classmethod
    def load(cls, artifact: VerifiedArtifact, *, threads: int | None = None,
             providers: Sequence[str] | None = None, use_int8: bool = False,
             privacy: UserPrivacy | None = None) -> ModelRunner:
        """Load a verified artifact (its verified Manifest included); raises ModelLoadError on
        any defect, or when its user ids are pseudonymised under a key ``privacy`` does not
        name (see ``serving.users``)."""
        root, version, t0 = artifact.path, artifact.version, time.perf_counter()
        try:
            graph = root / ("model.int8.onnx" if use_int8 and (root / "model.int8.onnx").exists()
                            else "model.onnx")
            threads = threads or len(os.sched_getaffinity(0))
            session = ort.InferenceSession(str(graph), session_options(threads),
                                           providers=list(providers or choose_providers()))
            catalog = Catalog.from_manifest(root, artifact.manifest, privacy)
            search = (SearchModel.load(root, artifact.manifest, threads=threads,
                                       providers=providers, use_int8=use_int8,
                                       popular=catalog.popular)
                      if has_search(artifact.manifest) else None)
            return cls(session, catalog, time.perf_counter() - t0, search)
        except ModelLoadError:
            raise
        except Exception as exc:  # any defect of a verified artifact is still a refusal
            raise ModelLoadError(f"version {version}: cannot load {root}: {exc}") from exc

    # -- requests -------------------------------------------------------------------------

    def score(self, queries: Sequence[Query]) -> list[Ranked]:
        """Rank a batch with one onnxruntime call (left-padded to the longest input)."""
        scores = self.item_scores([q.seq for q in queries])
        return [self._top_k(scores[row], q) for row, q in enumerate(queries)]

    def item_scores(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """The recommender's score of every item ``[b, n_items]`` for each history."""
        tails = [seq[-self.max_seq_len:] for seq in seqs]
        width = max(len(t) for t in tails)
        batch = np.zeros((len(tails), width), dtype=np.int64)
        for row, tail in enumerate(tails):
            batch[row, width - len(tail):] = tail
        scores: np.ndarray = self._session.run(None, {self._input: batch})[0]
        return scores

    def search_batch(self, queries: Sequence[SearchQuery], weight: float) -> list[Ranked]:
        """Search a batch: one encoder call, one recommender call for the personalised rows."""
        assert self.search is not None
        personal = [row for row, q in enumerate(queries) if q.seq is not None]
        if not personal or weight == 0.0:
            return self.search.rank(queries)
        rec = self.item_scores([queries[row].seq for row in personal])  # type: ignore[misc]
        rows = np.zeros((len(queries), self.n_items), np.float32)
        rows[personal] = rec
        return self.search.rank(queries, rows, weight)  # a zero row blends in nothing

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

    def probe(self) -> None:
        """A prediction must come back finite and well-formed, else the version is refused."""
        seq = self.catalog.some_history
        try:
            ranked = self.score([Query(seq, 10, True)])[0]
        except Exception as exc:
            raise ModelLoadError(f"version {self.version}: probe prediction failed: {exc}") from exc
        ok = (len(ranked.indices) > 0 and np.isfinite(ranked.scores).all()
              and ((ranked.indices >= 1) & (ranked.indices <= self.n_items)).all())
        if not ok:
            raise ModelLoadError(f"version {self.version}: probe prediction is malformed "
                                 f"(indices {ranked.indices[:5]}, scores {ranked.scores[:5]})")
        if self.search is not None:
            self._probe_search(seq)

    def _probe_search(self, seq: np.ndarray) -> None:
        """An item's own text must find that item (or one with the same text) among the top
        10, with finite scores."""
        assert self.search is not None
        item = int(seq[-1])
        title = self.search.texts[item - 1]
        try:
            found = self.search_batch([SearchQuery(title, 10, seq)], 0.0)[0]
        except Exception as exc:
            raise ModelLoadError(f"version {self.version}: search probe failed: {exc}") from exc
        texts = self.search.texts
        if not (np.isfinite(found.scores).all()
                and any(texts[i - 1] == title for i in found.indices.tolist())):
            raise ModelLoadError(
                f"version {self.version}: search probe: the query {title!r} did not find its "
                f"own item {item} in the top 10 (found {found.indices.tolist()}); the "
                "encoder or the item embeddings are broken")

    @property
    def some_user(self) -> str | None:
        """A user id known to this version, as callers send it (None: pseudonyms only)."""
        return self.catalog.some_user
