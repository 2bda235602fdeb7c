from __future__ import annotations

import numpy as np
import pytest

from training.metrics import evaluate, ndcg_per_user, summarize, target_ranks
from training.sequences import left_pad, next_item_windows


def test_rank_counts_ties_against_target() -> None:
    assert target_ranks(np.zeros((1, 5)), np.array([3])).tolist() == [4]


def test_seen_items_are_excluded_but_never_the_target() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0]])
    assert target_ranks(scores, np.array([3])).tolist() == [2]
    assert target_ranks(scores, np.array([3]), exclude=[np.array([1, 2, 3])]).tolist() == [0]


def test_summarize_values() -> None:
    m = summarize(np.array([0, 1, 10]), k=10)
    assert m.hr == pytest.approx(2 / 3)
    assert m.ndcg == pytest.approx((1 + 1 / np.log2(3)) / 3)
    assert m.mrr == pytest.approx((1 + 1 / 2 + 1 / 11) / 3)


def test_evaluate_perfect_scorer() -> None:
    targets = np.array([2, 3])
    result = evaluate(lambda h: np.eye(4)[targets[: len(h)] - 1] if len(h) == 2 else None,
                      [np.array([1]), np.array([1])], targets)
    assert result.unfiltered.hr == 1.0 and result.seen_filtered.ndcg == 1.0


def test_windows_cover_long_histories() -> None:
    x, y = next_item_windows([np.arange(1, 8)], 3)
    assert x.tolist() == [[4, 5, 6], [1, 2, 3]]
    assert y.tolist() == [[5, 6, 7], [2, 3, 4]]
    assert left_pad([np.array([], dtype=np.int64)], 2).tolist() == [[0, 0]]


def test_per_user_ndcg_averages_to_the_summary() -> None:
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 21, size=4) for _ in range(30)]
    targets = rng.integers(1, 21, size=30)
    result = evaluate(lambda h: rng.random((len(h), 20)), histories, targets, batch_size=7)
    assert result.ranks.shape == (30,) and result.filtered_ranks.shape == (30,)
    assert result.user_ndcg().mean() == pytest.approx(result.unfiltered.ndcg)
    assert result.user_ndcg(filtered=True).mean() == pytest.approx(result.seen_filtered.ndcg)
    assert ndcg_per_user(np.array([0, 9, 10])).tolist() == pytest.approx([1.0, 1 / np.log2(11), 0])
