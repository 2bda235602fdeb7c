"""The search bench's pure parts on tiny inputs: summaries, scaling, query maker (no timings)."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import bench.search_bench as sb
from retrieval import BM25Index, words


def test_docstring_examples() -> None:
    result = doctest.testmod(sb)
    assert result.attempted > 0 and result.failed == 0


def test_summary_orders_percentiles_and_refuses_nothing() -> None:
    s = sb.summarize([float(x) for x in range(1, 101)])
    assert s["n"] == 100 and s["p50_ms"] <= s["p99_ms"] <= 100.0
    assert sb.per_query(s, 4)["query_p50_ms"] == pytest.approx(s["p50_ms"] / 4, abs=1e-4)
    with pytest.raises(ValueError):
        sb.summarize([])


def test_timed_counts_calls_after_warmup() -> None:
    calls: list[int] = []
    times = sb.timed(calls.append, [1, 2, 3], warmup=2)
    assert len(times) == 3 and calls == [1, 2, 1, 2, 3] and min(times) >= 0


def test_windows_wrap_and_cover() -> None:
    assert sb.windows([1, 2, 3, 4], 4, 2) == [[1, 2, 3, 4], [1, 2, 3, 4]]
    with pytest.raises(ValueError):
        sb.windows([], 2, 1)


def test_target_metrics_counts_rank_and_misses() -> None:
    m = sb.target_metrics([[3, 1], [1], [2, 3]], [3, 9, 3])
    assert m["hr@10"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(3)) / 3, abs=1e-4)
    assert sb.target_metrics([[5] * 20], [5], k=10)["hr@10"] == 1.0


@pytest.mark.parametrize(("category", "kind", "expected"), [
    ("Animation Children's Comedy", "genre", "animation"),
    ("Animation Children's Comedy", "category", "animation children's comedy"),
    ("Sci-Fi", "genre", "sci-fi"),
    ("apparel/shoes/Running Trainers", "genre", "running"),
    ("  ", "genre", ""),
])
def test_personal_query(category: str, kind: str, expected: str) -> None:
    assert sb.personal_query(category, kind) == expected


def test_personal_query_refuses_unknown_kind() -> None:
    with pytest.raises(ValueError):
        sb.personal_query("Drama", "title")


def test_best_weight_prefers_smaller_weight_on_ties() -> None:
    rows = [{"weight": 0.0, "ndcg@10": 0.2}, {"weight": 0.05, "ndcg@10": 0.3},
            {"weight": 0.1, "ndcg@10": 0.3}]
    assert sb.best_weight(rows) == 0.05


def test_topk_scaling_on_a_tiny_catalogue() -> None:
    r = sb.measure_topk(500, dim=8, k=5, batches=(1, 4))
    assert r["n_items"] == 500 and r["catalogue_mb"] >= 0
    for key in ("batch1", "batch4"):
        assert r[key]["n"] >= 20 and r[key]["query_p50_ms"] <= r[key]["p50_ms"]
    assert r["matmul_batch1"]["n"] >= 20 and r["topk_over_matmul_p50"] > 0


def test_synthetic_bm25_corpus_is_searchable() -> None:
    texts = sb.synthetic_items(300, seed=3)
    assert texts == sb.synthetic_items(300, seed=3) and len(texts) == 300
    index = BM25Index.build(texts)
    for query in sb.synthetic_queries(texts, 20, seed=3):
        assert set(words(query)) <= set(index.vocab)
        assert len(index.search(query, 10)[0]) > 0
    r = sb.measure_bm25(300, n_queries=10)
    assert r["query"]["n"] == 10 and r["postings"] > 0


def test_spawned_scaling_skips_what_would_pass_the_budget(tmp_path: Path) -> None:
    out = sb.run_scaling(sizes=(300,), bm25_sizes=(200, 10**9), budget_s=60.0)
    assert [r["n_items"] for r in out["topk"]] == [300]
    assert "query" in out["bm25"][0] and "skipped" in out["bm25"][1]
    png = sb.plot_scaling(out, tmp_path / "scaling.png")
    assert png.stat().st_size > 0


def test_unit_vectors_are_normalised_in_chunks() -> None:
    v = sb.unit_vectors(np.random.default_rng(0), 1000, 16, chunk=64)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_blend_splits_leave_out_too_short_histories() -> None:
    s = sb.blend_splits([np.array([4, 5, 6]), np.array([], np.int64), np.array([9])], [7, 8, 3])
    assert [h.tolist() for h in s["validation"][0]] == [[4, 5]] and s["validation"][1] == [6]
    assert [h.tolist() for h in s["test"][0]] == [[4, 5, 6], [9]] and s["test"][1] == [7, 3]
