"""Clean interactions and split them leave-one-out, as the original write-up describes.

Steps: drop rows with missing ids, drop exact duplicates, optionally collapse immediate
repeats of one item, iterative k-core filter, per-user chronological order (stable: ties
keep file order, as RecBole does), then leave-one-out (last item test, second-to-last
validation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.errors import ConfigError, DataError


@dataclass(frozen=True)
class CleanConfig:
    """How interactions are cleaned before the split.

    Example:
        >>> CleanConfig(user_min=5, item_min=5).user_min
        5
    """

    user_min: int = 5
    item_min: int = 1
    collapse_repeats: bool = True
    event_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.user_min < 3:
            raise ConfigError(f"user_min must be >= 3 for a leave-one-out split, got {self.user_min}")
        if self.item_min < 1:
            raise ConfigError(f"item_min must be >= 1, got {self.item_min}")


@dataclass(frozen=True)
class SequenceData:
    """Per-user chronological item sequences with a leave-one-out split.

    Item index 0 is padding; real items are ``1..n_items`` and ``item_ids[i - 1]`` is the
    external id of index ``i``.
    """

    item_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    sequences: tuple[np.ndarray, ...]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def train_sequences(self) -> list[np.ndarray]:
        """Every user's history without the validation and test items."""
        return [s[:-2] for s in self.sequences]

    def split(self, which: str) -> tuple[list[np.ndarray], np.ndarray]:
        """Inputs and targets for ``"valid"`` (history[:-2] → [-2]) or ``"test"`` ([:-1] → [-1])."""
        if which == "valid":
            return [s[:-2] for s in self.sequences], np.array([s[-2] for s in self.sequences])
        if which == "test":
            return [s[:-1] for s in self.sequences], np.array([s[-1] for s in self.sequences])
        raise ValueError(f"split must be 'valid' or 'test', got {which!r}")

    def item_counts(self, upto: str = "train") -> np.ndarray:
        """Interaction counts per item index over the training part (padding count 0)."""
        seqs = self.train_sequences() if upto == "train" else [s[:-1] for s in self.sequences]
        return np.bincount(np.concatenate(seqs), minlength=self.n_items + 1).astype(np.int64)


def _kcore(frame: pd.DataFrame, user_min: int, item_min: int) -> pd.DataFrame:
    while True:
        users = frame["user_id"].map(frame["user_id"].value_counts())
        items = frame["item_id"].map(frame["item_id"].value_counts())
        keep = (users >= user_min) & (items >= item_min)
        if keep.all():
            return frame
        frame = frame[keep]


def clean_interactions(frame: pd.DataFrame, config: CleanConfig = CleanConfig()) -> pd.DataFrame:
    """Return cleaned interactions sorted by user, then time (stable)."""
    frame = frame.dropna(subset=["user_id", "item_id"]).copy()
    if config.event_types is not None:
        frame = frame[frame["event_type"].isin(config.event_types)]
    frame["_order"] = np.arange(len(frame))
    frame = frame.drop_duplicates(subset=["user_id", "item_id", "timestamp", "event_type"])
    frame = frame.sort_values(["user_id", "timestamp", "_order"], kind="stable")
    if config.collapse_repeats:
        same_user = frame["user_id"].eq(frame["user_id"].shift())
        same_item = frame["item_id"].eq(frame["item_id"].shift())
        frame = frame[~(same_user & same_item).fillna(False).to_numpy(dtype=bool)]
    frame = _kcore(frame, config.user_min, config.item_min)
    if frame.empty:
        raise DataError("<interactions>", None, None,
                        f"no rows survive cleaning with user_min={config.user_min}, "
                        f"item_min={config.item_min}; lower the k-core thresholds")
    return frame.drop(columns="_order").reset_index(drop=True)


def leave_one_out(frame: pd.DataFrame) -> SequenceData:
    """Encode ids and group cleaned interactions into per-user sequences."""
    item_ids = np.unique(frame["item_id"].to_numpy(dtype=str))
    index = pd.Series(np.arange(1, len(item_ids) + 1), index=item_ids)
    encoded = index.reindex(frame["item_id"].to_numpy(dtype=str)).to_numpy(dtype=np.int64)
    users = frame["user_id"].to_numpy(dtype=str)
    boundaries = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate([[0], boundaries])
    seqs = tuple(np.split(encoded, boundaries))
    return SequenceData(
        item_ids=tuple(item_ids.tolist()),
        user_ids=tuple(users[starts].tolist()),
        sequences=seqs,
    )
