"""User-level item co-occurrence counts, built in chunks of users (bounded memory).

Dense ``[n_items, n_items]``: callers use it only below ``MAX_DENSE_ITEMS``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Beyond this catalog size the dense item×item matrices are skipped (10^4² float32 = 400 MB).
MAX_DENSE_ITEMS = 10_000

_CHUNK_CELLS = 1 << 24  # users × items per chunk of the incidence matrix (64 MB of float32)


def co_occurrence(train: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``co[i, j]`` = number of users whose history holds both item ``i + 1`` and ``j + 1``.

    Example:
        >>> co_occurrence([np.array([1, 2]), np.array([2, 3])], 3).astype(int).tolist()
        [[1, 1, 0], [1, 2, 1], [0, 1, 1]]
    """
    co = np.zeros((n_items, n_items), dtype=np.float32)
    chunk = max(1, _CHUNK_CELLS // max(n_items, 1))
    for start in range(0, len(train), chunk):
        part = train[start:start + chunk]
        incidence = np.zeros((len(part), n_items), dtype=np.float32)
        rows = np.repeat(np.arange(len(part)), [len(s) for s in part])
        incidence[rows, np.concatenate(part) - 1] = 1.0
        co += incidence.T @ incidence
    return co
