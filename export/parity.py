"""Parity between the PyTorch model and its ONNX graph, and the int8 acceptance check.

Pure comparisons over score arrays; the runners that produce the scores are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from export.errors import ParityError, QuantizationRejected

ScoreFn = Callable[[np.ndarray], np.ndarray]

#: Batch sizes and sequence lengths at which torch and ONNX must agree.
PARITY_BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class ParityReport:
    """Worst score difference over the probe grid and the top-10 agreement on test users."""

    max_abs_diff: float
    top10_identical: float
    users: int
    probes: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def topk(scores: np.ndarray, k: int = 10) -> np.ndarray:
    """Top-``k`` column indices per row, best first (ties by lower index).

    Example:
        >>> topk(np.array([[0.1, 0.9, 0.5]]), 2).tolist()
        [[1, 2]]
    """
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top10_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose top-10 lists are identical, order included."""
    return float((topk(a) == topk(b)).all(axis=1).mean())


def top10_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row's top-10 items found in the other's top-10 (order ignored)."""
    ta, tb = topk(a), topk(b)
    return float(np.mean([len(np.intersect1d(x, y)) / 10.0 for x, y in zip(ta, tb)]))


def probe_grid(n_items: int, max_seq_len: int, seed: int = 0) -> list[np.ndarray]:
    """Random histories at batch sizes 1/8/32 and sequence lengths 1 and max (with padding)."""
    rng = np.random.default_rng(seed)
    grid = []
    for batch in PARITY_BATCHES:
        for seq_len in (1, max_seq_len):
            ids = rng.integers(1, n_items + 1, size=(batch, seq_len), dtype=np.int64)
            if seq_len > 1:
                for row in range(batch):
                    ids[row, : rng.integers(0, seq_len)] = 0
            grid.append(ids)
    return grid


def check_parity(reference: ScoreFn, candidate: ScoreFn, probes: Sequence[np.ndarray],
                 test_batches: Sequence[np.ndarray], max_abs_diff: float = 1e-4,
                 min_top10_identical: float = 0.99) -> ParityReport:
    """Compare two scorers; raise :class:`ParityError` if either threshold fails."""
    worst = 0.0
    for ids in probes:
        worst = max(worst, float(np.abs(reference(ids) - candidate(ids)).max()))
    same, users = 0.0, 0
    for ids in test_batches:
        ref, cand = reference(ids), candidate(ids)
        worst = max(worst, float(np.abs(ref - cand).max()))
        same += top10_agreement(ref, cand) * len(ids)
        users += len(ids)
    report = ParityReport(worst, same / max(users, 1), users, len(probes))
    if worst > max_abs_diff:
        raise ParityError(f"ONNX scores differ from PyTorch by {worst:.3g} (allowed "
                          f"{max_abs_diff:g}); refusing to package this export")
    if report.top10_identical < min_top10_identical:
        raise ParityError(f"top-10 identical for {report.top10_identical:.2%} of {users} test "
                          f"users (need {min_top10_identical:.0%}); refusing to package")
    return report


def accept_quantized(fp32: ScoreFn, int8: ScoreFn, test_batches: Sequence[np.ndarray],
                     min_overlap: float = 0.9) -> float:
    """Top-10 overlap of int8 against fp32; raise :class:`QuantizationRejected` below the bar."""
    overlaps = [top10_overlap(fp32(ids), int8(ids)) * len(ids) for ids in test_batches]
    overlap = sum(overlaps) / max(sum(len(ids) for ids in test_batches), 1)
    if overlap < min_overlap:
        raise QuantizationRejected(f"int8 top-10 overlap with fp32 is {overlap:.3f} "
                                   f"(need {min_overlap}); keeping fp32 only")
    return overlap
