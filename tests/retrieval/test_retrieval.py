"""retrieval: BM25 against a direct formula, top-K against a full sort, metrics by hand."""

from __future__ import annotations

import doctest
import importlib
import math
from collections import Counter

import numpy as np
import pytest

from retrieval import (
    BM25Index,
    exact_search,
    item_text,
    ndcg_at_k,
    per_query_ndcg,
    recall_at_k,
    top_k,
    top_k_rows,
    words,
)


@pytest.mark.parametrize("module", ["retrieval", "retrieval.text", "retrieval.bm25",
                                    "retrieval.topk", "retrieval.metrics"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _bm25_direct(texts: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    docs = [Counter(words(t)) for t in texts]
    avg = sum(sum(d.values()) for d in docs) / len(docs)
    out = np.zeros(len(docs))
    for word in set(words(query)):
        df = sum(1 for d in docs if word in d)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.get(word, 0)
            if tf:
                length = sum(d.values())
                out[i] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg))
    return out


def test_bm25_matches_the_formula_on_random_texts() -> None:
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(vocab, rng.integers(1, 9))) for _ in range(200)]
    index = BM25Index.build(texts)
    for _ in range(20):
        query = " ".join(rng.choice(vocab + ["unseen"], 3))
        np.testing.assert_allclose(index.scores(query), _bm25_direct(texts, query), rtol=1e-5,
                                   atol=1e-6)


def test_bm25_search_returns_only_matching_documents() -> None:
    index = BM25Index.build([item_text("Fargo", "Crime Drama"), item_text("Heat", "Action"),
                             "", item_text("Crimson Tide", "Drama Thriller")])
    idx, scores = index.search("drama", 10)
    assert sorted(idx.tolist()) == [0, 3] and (scores > 0).all()
    assert index.search("nothing matches", 5)[0].size == 0
    assert BM25Index.build([]).search("x", 3)[0].size == 0


def test_top_k_agrees_with_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((7, 500)).astype(np.float32)
    for k in (1, 10, 499, 500, 900):
        idx, vals = top_k_rows(scores, k)
        expect = np.argsort(-scores, axis=1, kind="stable")[:, :min(k, 500)]
        np.testing.assert_array_equal(idx, expect)
        np.testing.assert_array_equal(vals, np.take_along_axis(scores, expect, axis=1))
        np.testing.assert_array_equal(top_k(scores[2], k)[0], expect[2])
    assert top_k(scores[0], 0)[0].size == 0


def test_exact_search_in_chunks_equals_one_matrix_product() -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    items = rng.standard_normal((1_001, 16)).astype(np.float32)
    whole = top_k_rows(queries @ items.T, 10)
    for chunk in (7, 100, 1_001, 5_000):
        idx, vals = exact_search(queries, items, 10, chunk=chunk)
        np.testing.assert_array_equal(idx, whole[0])
        np.testing.assert_allclose(vals, whole[1], rtol=1e-6)


def test_metrics_by_hand() -> None:
    ranked = [[5, 1, 7], [2, 3, 4], [9]]
    relevant = [{1}, {4, 8}, set()]
    assert recall_at_k(ranked, relevant, k=2) == pytest.approx((1 + 0 + 0) / 3)
    first = (1 / math.log2(3)) / 1.0
    second = (1 / math.log2(4)) / (1 + 1 / math.log2(3))
    np.testing.assert_allclose(per_query_ndcg(ranked, relevant, k=3), [first, second, 0.0])
    assert ndcg_at_k(ranked, relevant, k=3) == pytest.approx((first + second) / 3)
    with pytest.raises(ValueError, match="one relevant set per ranking"):
        recall_at_k(ranked, relevant[:2])
