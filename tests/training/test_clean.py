from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.clean import CleanConfig, clean_interactions, leave_one_out
from training.errors import ConfigError, DataError


def _frame(rows: list[tuple[object, object, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype(
        {"user_id": "string", "item_id": "string"})
    frame["event_type"] = "interaction"
    return frame


def test_drops_missing_ids_and_duplicates() -> None:
    rows = [("u", "a", 1), ("u", "a", 1), ("u", None, 2), ("u", "b", 3), ("u", "c", 4)]
    out = clean_interactions(_frame(rows), CleanConfig(user_min=3))
    assert out["item_id"].tolist() == ["a", "b", "c"]


def test_ties_keep_file_order() -> None:
    rows = [("u", "c", 5), ("u", "a", 1), ("u", "z", 5), ("u", "b", 5)]
    out = clean_interactions(_frame(rows), CleanConfig(user_min=3))
    assert out["item_id"].tolist() == ["a", "c", "z", "b"]


def test_collapse_repeats_is_optional() -> None:
    rows = [("u", "a", 1), ("u", "a", 2), ("u", "b", 3), ("u", "c", 4)]
    assert len(clean_interactions(_frame(rows), CleanConfig(user_min=3))) == 3
    assert len(clean_interactions(_frame(rows), CleanConfig(user_min=3, collapse_repeats=False))) == 4


def test_kcore_is_iterative() -> None:
    # item "rare" has 1 interaction; removing it drops u2 below 3, which drops item "x" to 2.
    rows = [("u1", "x", 1), ("u1", "y", 2), ("u1", "z", 3),
            ("u2", "x", 1), ("u2", "y", 2), ("u2", "rare", 3),
            ("u3", "x", 1), ("u3", "y", 2), ("u3", "z", 3)]
    out = clean_interactions(_frame(rows), CleanConfig(user_min=3, item_min=2))
    assert sorted(out["user_id"].unique()) == ["u1", "u3"]


def test_nothing_survives_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="lower the k-core"):
        clean_interactions(_frame([("u", "a", 1)]), CleanConfig(user_min=3))


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        CleanConfig(user_min=2)


def test_leave_one_out_split() -> None:
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4),
            ("u2", "d", 1), ("u2", "c", 2), ("u2", "a", 3)]
    data = leave_one_out(clean_interactions(_frame(rows), CleanConfig(user_min=3)))
    assert data.item_ids == ("a", "b", "c", "d") and data.user_ids == ("u1", "u2")
    hist, tgt = data.split("test")
    assert [h.tolist() for h in hist] == [[1, 2, 3], [4, 3]] and tgt.tolist() == [4, 1]
    hist, tgt = data.split("valid")
    assert [h.tolist() for h in hist] == [[1, 2], [4]] and tgt.tolist() == [3, 3]
    assert data.item_counts().tolist() == [0, 1, 1, 0, 1]
    with pytest.raises(ValueError):
        data.split("train")
    assert isinstance(data.sequences[0], np.ndarray)
