from __future__ import annotations

import numpy as np

from training.baselines import fit_baselines, item_knn, popularity, transitions
from training.clean import SequenceData
from training.metrics import evaluate


def test_popularity_ranks_by_count() -> None:
    score = popularity([np.array([1, 2, 2, 3, 3, 3])], 3)
    assert np.argsort(-score([np.array([1])])[0]).tolist() == [2, 1, 0]


def test_transitions_follow_the_last_item() -> None:
    score = transitions([np.array([1, 2, 3]), np.array([1, 2, 3])], 3)
    assert int(np.argmax(score([np.array([3, 1])])[0])) + 1 == 2


def test_item_knn_prefers_co_occurring_items() -> None:
    score = item_knn([np.array([1, 2]), np.array([1, 2]), np.array([3, 4])], 4)
    assert int(np.argmax(score([np.array([1])])[0])) + 1 == 2


def test_sequential_baselines_beat_popularity_on_cycles(toy_data: SequenceData) -> None:
    hist, tgt = toy_data.split("test")
    results = {name: evaluate(s, hist, tgt).unfiltered.hr
               for name, s in fit_baselines(toy_data.train_sequences(), toy_data.n_items).items()}
    assert results["transitions"] > 0.9 > results["popularity"]
