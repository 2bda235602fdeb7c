"""Product search of one artifact version: tokenise, encode with onnxruntime, exact top-K.

The artifact's ``search/`` part (``export.search_export``) holds the query encoder graph
(``input_ids``, ``attention_mask`` → L2-normalised ``embedding``), its tokenizer (truncation
and padding configured at export), and every item's embedding, precomputed and signed. A
query is scored against all items by one matrix product (exact, no approximate index; the
catalogue scan per query at batch 1 on one core here: 2 ms at 10^4 items of 384 dims, 28 ms at
10^5, 0.3 s at 10^6, where it is memory-bandwidth bound: beyond 10^5 items, batch the queries
(32 at once cut 10^6 to 58 ms each) or index approximately; ``bench.search_bench`` measures
it). With a history, the recommender's scores for that history are blended in:
``cosine + blend · z``, where ``z`` is the recommender's score standardised over the
catalogue, so the weight means the same for any model scale.

The degraded tier needs no model: BM25 over item text (``retrieval``), padded with the most
popular items, answers with ``degraded: true``.

Example:
    >>> model = SearchModel.load(art, manifest, threads=1)  # doctest: +SKIP
    >>> model.rank([SearchQuery("space sci-fi", 5)])[0].indices  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from tokenizers import Tokenizer

from export.manifest import Manifest
from retrieval import BM25Index, exact_search, item_text, top_k_rows
from serving.catalog import Ranked
from serving.errors import ModelLoadError

__all__ = ["DEFAULT_BLEND", "SEARCH_DIR", "SearchModel", "SearchQuery", "blend", "has_search"]

SEARCH_DIR = "search"
DEFAULT_BLEND = 0.05  # weight of the standardised recommender score (serving config)


@dataclass(frozen=True)
class SearchQuery:
    """A resolved search: text, k, and the history (item indices) to personalise by, if any."""

    text: str
    k: int
    seq: np.ndarray | None = None


def has_search(manifest: Manifest) -> bool:
    """Whether this version carries a search model (``io["search"]`` in its manifest)."""
    return isinstance(manifest.io.get("search"), dict)


def blend(cosine: np.ndarray, rec_scores: np.ndarray, weight: float) -> np.ndarray:
    """``cosine + weight · z(rec_scores)``; ``z`` standardises each row over the catalogue.

    Example:
        >>> blend(np.array([[0.5, 0.4]]), np.array([[0.0, 2.0]]), 0.1).round(2).tolist()
        [[0.4, 0.5]]
    """
    if weight == 0.0:
        return cosine
    mean = rec_scores.mean(axis=-1, keepdims=True)
    std = rec_scores.std(axis=-1, keepdims=True)
    z = (rec_scores - mean) / np.where(std > 0, std, 1.0)
    return (cosine + weight * z).astype(np.float32)


class SearchModel:
    """Encoder session, tokenizer, item embeddings and the BM25 fallback of one version."""

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer,
                 item_vectors: np.ndarray, texts: list[str], popular: np.ndarray,
                 max_query_tokens: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.item_vectors = item_vectors
        self.n_items, self.dim = item_vectors.shape
        self.texts = texts  # item text of index i + 1, as encoded at export
        self._bm25 = BM25Index.build(texts)
        self._popular = popular
        self.max_query_tokens = max_query_tokens
        self._inputs = {i.name for i in session.get_inputs()}

    @classmethod
    def load(cls, root: Path, manifest: Manifest, *, threads: int,
             providers: Sequence[str] | None = None, use_int8: bool = False,
             popular: np.ndarray | None = None) -> SearchModel:
        """Load ``root/search`` of a verified artifact; raises ModelLoadError on any defect."""
        from serving.runner import choose_providers, session_options

        spec: dict[str, Any] = manifest.io["search"]  # type: ignore[typeddict-item]
        folder = root / SEARCH_DIR
        int8 = folder / "encoder.int8.onnx"
        graph = int8 if use_int8 and int8.exists() else folder / "encoder.onnx"
        session = ort.InferenceSession(str(graph), session_options(threads),
                                       providers=list(providers or choose_providers()))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        vectors = np.load(folder / "item_embeddings.npy", allow_pickle=False)
        items = pd.read_parquet(root / "items.parquet", columns=["index", "title", "category"]
                                ).sort_values("index")
        n_items = int(manifest.io["n_items"])
        if vectors.dtype != np.float32 or vectors.shape != (n_items, int(spec["dim"])):
            raise ModelLoadError(f"search/item_embeddings.npy: expected float32 "
                                 f"[{n_items}, {spec['dim']}], found {vectors.dtype} "
                                 f"{list(vectors.shape)}")
        texts = [item_text(t, c) for t, c in zip(items["title"], items["category"], strict=True)]
        ranked_popular = (np.arange(1, n_items + 1, dtype=np.int64) if popular is None
                          else np.asarray(popular, np.int64))
        return cls(session, tokenizer, vectors, texts, ranked_popular,
                   int(spec["max_query_tokens"]))

    # -- the model path -------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Tokenise (padded to the longest, truncated at ``max_query_tokens``) and encode:
        unit rows ``[b, dim]``."""
        encodings = self._tokenizer.encode_batch(list(texts))
        feeds = {"input_ids": np.array([e.ids for e in encodings], np.int64),
                 "attention_mask": np.array([e.attention_mask for e in encodings], np.int64)}
        vectors: np.ndarray = self._session.run(
            None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        return vectors

    def rank(self, queries: Sequence[SearchQuery], rec_scores: np.ndarray | None = None,
             weight: float = DEFAULT_BLEND) -> list[Ranked]:
        """Top-k items of each query; ``rec_scores[b, n_items]`` (rows of queries with a
        history) are blended in with ``weight``. Item indices are 1-based."""
        vectors = self.encode([q.text for q in queries])
        k = max(q.k for q in queries)
        if rec_scores is None or weight == 0.0:
            idx, vals = exact_search(vectors, self.item_vectors, k)
        else:
            idx, vals = top_k_rows(blend(vectors @ self.item_vectors.T, rec_scores, weight), k)
        return [Ranked(idx[row, :q.k] + 1, vals[row, :q.k]) for row, q in enumerate(queries)]

    # -- the degraded tier ----------------------------------------------------------------

    def fallback(self, q: SearchQuery) -> Ranked:
        """BM25 over item text, then the most popular items; scores 1/(rank+1)."""
        idx, _ = self._bm25.search(q.text, q.k)
        picked = list((idx + 1).tolist())
        if len(picked) < q.k:
            seen = set(picked)
            picked += [int(i) for i in self._popular if int(i) not in seen][:q.k - len(picked)]
        return Ranked(np.asarray(picked, np.int64),
                      1.0 / np.arange(1, len(picked) + 1, dtype=np.float32), True)

    def truncated(self, text: str) -> bool:
        """Whether ``text`` is longer than the encoder reads (it is then cut, and said so).

        Every token covers at least one character and two are [CLS] and [SEP], so a text of
        at most ``max_query_tokens - 2`` characters fits without tokenising it again."""
        if len(text) <= self.max_query_tokens - 2:
            return False
        return bool(self._tokenizer.encode(text).overflowing)
