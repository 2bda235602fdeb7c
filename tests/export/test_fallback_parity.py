from __future__ import annotations

import numpy as np
import pytest

from export.errors import ParityError, QuantizationRejected
from export.fallback import build_fallback, recommend_fallback
from export.parity import accept_quantized, check_parity, probe_grid, top10_agreement, top10_overlap


def test_fallback_popularity_and_covisitation() -> None:
    lists = build_fallback([np.array([1, 2, 3]), np.array([1, 2]), np.array([2, 4])], 4,
                           top_k=3, window=1)
    assert lists.popular.tolist() == [2, 1, 3]
    assert lists.covisit[1].tolist() == [2, -1, -1]
    assert lists.covisit[2].tolist() == [1, 3, 4]  # 1 co-visited twice, then by popularity


def test_fallback_recommendation_dedupes_and_excludes() -> None:
    lists = build_fallback([np.array([1, 2, 3]), np.array([1, 2])], 5, top_k=4, window=1)
    recs = recommend_fallback(lists, [1], k=3, exclude={1})
    assert recs[0] == 2 and len(recs) == len(set(recs)) == 3 and 1 not in recs


def test_probe_grid_shapes() -> None:
    shapes = [g.shape for g in probe_grid(50, 20)]
    assert shapes == [(1, 1), (1, 20), (8, 1), (8, 20), (32, 1), (32, 20)]
    assert all((g[:, -1] > 0).all() for g in probe_grid(50, 20))


def _scorer(noise: float, seed: int = 0):
    def score(ids: np.ndarray) -> np.ndarray:
        base = np.sin(ids.sum(axis=1, keepdims=True) * np.arange(1, 41))
        rng = np.random.default_rng(seed)
        return base + noise * rng.standard_normal(base.shape)
    return score


def test_parity_passes_for_identical_and_fails_for_drift() -> None:
    probes, tests = probe_grid(40, 5), probe_grid(40, 5, seed=1)
    report = check_parity(_scorer(0), _scorer(0), probes, tests)
    assert report.max_abs_diff == 0 and report.top10_identical == 1.0
    with pytest.raises(ParityError, match="differ"):
        check_parity(_scorer(0), _scorer(1e-3), probes, tests)


def test_parity_fails_on_top10_disagreement() -> None:
    ref = _scorer(0)
    with pytest.raises(ParityError, match="top-10"):
        check_parity(ref, lambda ids: -ref(ids), [], probe_grid(40, 5), max_abs_diff=10.0)


def test_int8_acceptance() -> None:
    tests = probe_grid(40, 5)
    assert accept_quantized(_scorer(0), _scorer(1e-4), tests) > 0.9
    with pytest.raises(QuantizationRejected):
        accept_quantized(_scorer(0), _scorer(1.0), tests)


def test_agreement_metrics() -> None:
    a = np.arange(20, dtype=float)[None, :]
    b = a.copy()
    b[0, [19, 18]] = b[0, [18, 19]]
    assert top10_agreement(a, b) == 0.0 and top10_overlap(a, b) == 1.0
