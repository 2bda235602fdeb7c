"""Held-out users: histories from the artifact, targets from the checkpoint, checked to match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.loadgen.errors import ConfigError, WorkloadError
from bench.loadgen.workload import HeldOutUser, Workload, heldout_users, load_workload


def _files(tmp_path: Path, full: list[list[int]], *, drop_last: bool = True) -> tuple[Path, Path]:
    art, ck = tmp_path / "art", tmp_path / "ck"
    art.mkdir()
    ck.mkdir()
    hist = [s[:-1] if drop_last else s for s in full]
    lengths = np.cumsum([len(h) for h in hist])[:-1]
    np.savez(art / "histories.npz", user_ids=np.array(["u0", "u1"]),
             flat=np.concatenate(hist).astype(np.int64), offsets=lengths)
    pd.DataFrame({"index": [1, 2, 3, 4], "item_id": ["a", "b", "c", "d"], "title": list("ABCD"),
                  "category": [""] * 4}).to_parquet(art / "items.parquet")
    np.savez(ck / "sequences.npz", user_ids=np.array(["u0", "u1"]),
             flat=np.concatenate(full).astype(np.int64), offsets=np.cumsum([len(s) for s in full])[:-1])
    return art, ck


def test_load_workload_with_targets(tmp_path: Path) -> None:
    art, ck = _files(tmp_path, [[1, 2, 3], [4, 1]])
    w = load_workload(art, ck)
    assert w.users == (HeldOutUser("u0", ("a", "b"), "c"), HeldOutUser("u1", ("d",), "a"))
    assert load_workload(art).targets() == [None, None]
    assert [r.user_id for r in w.requests()] == ["u0", "u1"]
    history = Workload(w.users, mode="history", k=5).requests()
    assert (history[0].history, history[0].user_id, history[0].k) == (["a", "b"], None, 5)


def test_mismatched_checkpoint_is_refused(tmp_path: Path) -> None:
    art, ck = _files(tmp_path, [[1, 2, 3], [4, 1]], drop_last=False)
    with pytest.raises(WorkloadError, match="same run"):
        load_workload(art, ck)


def test_order_is_seeded_and_covers_every_user() -> None:
    w = Workload(heldout_users(["a", "b", "c"], [np.array([1])] * 3, ["x"]))
    order = w.order(7, seed=1)
    assert sorted(order[:3].tolist()) == [0, 1, 2] and len(order) == 7
    assert np.array_equal(order, w.order(7, seed=1))


def test_empty_histories_are_left_out_and_bad_modes_refused() -> None:
    users = heldout_users(["a", "b"], [np.array([], dtype=np.int64), np.array([1])], ["x"])
    assert [u.user_id for u in users] == ["b"]
    with pytest.raises(ConfigError):
        Workload(users, mode="session")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Workload(())
