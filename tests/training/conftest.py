from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.clean import SequenceData
from training.fetch import fetch_movielens_100k


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """MovieLens-100k from the RecBole wheel (downloaded once into the user cache)."""
    return fetch_movielens_100k()


@pytest.fixture
def toy_data() -> SequenceData:
    """Users who walk a cycle of 12 items: a sequential model can learn it, popularity cannot."""
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(60):
        start = int(rng.integers(0, 12))
        seqs.append(np.array([(start + i) % 12 + 1 for i in range(int(rng.integers(6, 15)))]))
    return SequenceData(item_ids=tuple(f"i{i}" for i in range(12)),
                        user_ids=tuple(f"u{u}" for u in range(60)), sequences=tuple(seqs))
