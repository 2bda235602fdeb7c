"""Scoring answers against the held-out item: rank → HR@10 and NDCG@10."""

from __future__ import annotations

import math

import numpy as np

from bench.loadgen.quality import MISS, UNSCORED, quality_of, rank_of


def test_rank_of() -> None:
    assert rank_of("c", ["a", "b", "c"]) == 2
    assert rank_of("z", ["a"]) == MISS and rank_of(None, ["a"]) == UNSCORED


def test_hr_and_ndcg_at_10() -> None:
    q = quality_of(np.array([0, 3, 9, 10, MISS, UNSCORED]))
    assert q.scored == 5 and q.hr == 0.6
    expected = (1 + 1 / math.log2(5) + 1 / math.log2(11)) / 5
    assert q.ndcg == round(expected, 4)


def test_nothing_scored() -> None:
    assert quality_of(np.array([UNSCORED])).hr is None
