from __future__ import annotations

import numpy as np

from training.baselines import (
    fit_baselines,
    item_knn,
    popularity,
    recency_transitions,
    transition_counts,
    transitions,
)
from training.clean import SequenceData
from training.metrics import evaluate


def test_popularity_ranks_by_count() -> None:
    score = popularity([np.array([1, 2, 2, 3, 3, 3])], 3)
    assert np.argsort(-score([np.array([1])])[0]).tolist() == [2, 1, 0]


def test_transitions_follow_the_last_item() -> None:
    score = transitions([np.array([1, 2, 3]), np.array([1, 2, 3])], 3)
    assert int(np.argmax(score([np.array([3, 1])])[0])) + 1 == 2


def test_transition_counts_count_each_consecutive_pair() -> None:
    counts = transition_counts([np.array([1, 2, 3]), np.array([2, 3, 1])], 3)
    assert counts.astype(int).tolist() == [[0, 1, 0], [0, 0, 2], [1, 0, 0]]


def test_recency_transitions_weigh_the_newest_items_by_hand() -> None:
    # T: 1→2 twice, 2→3 once, 3→4 once, 4→1 twice.
    train = [np.array([1, 2, 3, 4, 1]), np.array([4, 1, 2])]
    score = recency_transitions(train, 4, weights=(1.0, 0.5, 0.25))
    # History [..., 2, 3, 1]: newest 1 → T[1] = (0, 2, 0, 0) · 1; 3 → T[3] = (0, 0, 0, 1) · 0.5;
    # 2 → T[2] = (0, 0, 1, 0) · 0.25; the oldest item, 4, is beyond the three weights.
    got = score([np.array([4, 2, 3, 1])])[0]
    np.testing.assert_allclose(got, [0.0, 2.0, 0.25, 0.5], atol=1e-5)
    assert np.argsort(-got).tolist() == [1, 3, 2, 0]
    # A one-item history uses the first weight only and equals plain transitions.
    np.testing.assert_allclose(score([np.array([2])]), transitions(train, 4)([np.array([2])]))


def test_recency_transitions_break_ties_by_popularity() -> None:
    score = recency_transitions([np.array([1, 2]), np.array([3, 3, 3])], 3)
    # From item 2 nothing follows: only the popularity tie-break orders items (3, then 1 = 2).
    assert int(np.argmax(score([np.array([2])])[0])) + 1 == 3


def test_item_knn_prefers_co_occurring_items() -> None:
    score = item_knn([np.array([1, 2]), np.array([1, 2]), np.array([3, 4])], 4)
    assert int(np.argmax(score([np.array([1])])[0])) + 1 == 2


def test_sequential_baselines_beat_popularity_on_cycles(toy_data: SequenceData) -> None:
    hist, tgt = toy_data.split("test")
    results = {name: evaluate(s, hist, tgt).unfiltered.hr
               for name, s in fit_baselines(toy_data.train_sequences(), toy_data.n_items).items()}
    assert results["transitions"] > 0.9 > results["popularity"]
    assert results["recency_transitions"] > 0.9


def test_every_dense_baseline_is_registered() -> None:
    assert list(fit_baselines([np.array([1, 2, 3])], 3)) == [
        "popularity", "transitions", "recency_transitions", "item_knn"]
