"""Retrieval primitives shared by every stage: item text, BM25, exact top-K, search metrics.

Pure numpy (no torch, no onnxruntime), so training, export, serving's degraded tier and the
bench all rank text the same way.

Example:
    >>> from retrieval import BM25Index, item_text
    >>> index = BM25Index.build([item_text("Fargo", "Crime Drama"), item_text("Heat", "Action")])
    >>> index.search("fargo", 1)[0].tolist()
    [0]
"""

from __future__ import annotations

from retrieval.bm25 import BM25Index
from retrieval.metrics import ndcg_at_k, per_query_ndcg, recall_at_k
from retrieval.text import item_text, words
from retrieval.topk import exact_search, top_k, top_k_rows

__all__ = ["BM25Index", "exact_search", "item_text", "ndcg_at_k", "per_query_ndcg",
           "recall_at_k", "top_k", "top_k_rows", "words"]
