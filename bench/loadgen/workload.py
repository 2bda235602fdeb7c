"""Held-out test users as requests: each replays a user's history without its last item and
carries that item as the target its answer is scored against.

Histories come from the artifact (``histories.npz``, which already leaves the test item out);
targets from the training checkpoint (``sequences.npz``: the last item of each sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from bench.loadgen.errors import ConfigError, WorkloadError
from serving.schemas import MAX_HISTORY, RecommendRequest

__all__ = ["HeldOutUser", "Workload", "heldout_users", "load_targets", "load_workload"]

Mode = Literal["user", "history"]


@dataclass(frozen=True)
class HeldOutUser:
    """One user to replay: id, item-id history (oldest first) and the held-out item id."""

    user_id: str
    history: tuple[str, ...]
    target: str | None


@dataclass(frozen=True)
class Workload:
    """Users to replay and how to ask: by ``user_id`` (server-side history) or by ``history``."""

    users: tuple[HeldOutUser, ...]
    mode: Mode = "user"
    k: int = 10

    def __post_init__(self) -> None:
        if not self.users:
            raise ConfigError("a workload needs at least one user")
        if self.mode not in ("user", "history"):
            raise ConfigError(f"mode must be 'user' or 'history', found {self.mode!r}")

    def requests(self) -> list[RecommendRequest]:
        """One validated request per user, in user order."""
        if self.mode == "user":
            return [RecommendRequest(user_id=u.user_id, k=self.k) for u in self.users]
        return [RecommendRequest(history=list(u.history[-MAX_HISTORY:]), k=self.k)
                for u in self.users]

    def targets(self) -> list[str | None]:
        """The held-out item of each user, in user order."""
        return [u.target for u in self.users]

    def order(self, n: int, seed: int = 0) -> np.ndarray:
        """Which user each of ``n`` scheduled requests replays: seeded shuffles, repeated."""
        rng = np.random.default_rng(seed)
        reps = -(-n // len(self.users))
        return np.concatenate([rng.permutation(len(self.users)) for _ in range(reps)])[:n]


def heldout_users(user_ids: Sequence[str], histories: Sequence[np.ndarray],
                  item_ids: Sequence[str], targets: Sequence[int] | None = None
                  ) -> tuple[HeldOutUser, ...]:
    """Users from index histories; ``item_ids[j - 1]`` is the id of item index ``j``.

    Users with an empty history are left out (the API needs at least one item).

    Example:
        >>> heldout_users(["u"], [np.array([1, 2])], ["a", "b", "c"], [3])
        (HeldOutUser(user_id='u', history=('a', 'b'), target='c'),)
    """
    ids = np.asarray(item_ids, dtype=object)
    out = []
    for row, (user, hist) in enumerate(zip(user_ids, histories, strict=True)):
        if len(hist) == 0:
            continue
        target = None if targets is None else str(ids[int(targets[row]) - 1])
        out.append(HeldOutUser(str(user), tuple(ids[np.asarray(hist) - 1].tolist()), target))
    return tuple(out)


def load_targets(checkpoint: Path, user_ids: Sequence[str],
                 histories: Sequence[np.ndarray]) -> list[int]:
    """Held-out item index per user from a checkpoint's ``sequences.npz`` (last item).

    Checks that each full sequence is the artifact's history plus one item.
    """
    path = checkpoint / "sequences.npz"
    if not path.exists():
        raise WorkloadError(f"{path} is missing: pass the training checkpoint directory")
    with np.load(path, allow_pickle=False) as npz:
        full = dict(zip(npz["user_ids"].tolist(), np.split(npz["flat"], npz["offsets"]),
                        strict=True))
    targets = []
    for user, hist in zip(user_ids, histories, strict=True):
        seq = full.get(str(user))
        if seq is None or len(seq) != len(hist) + 1 or not np.array_equal(seq[:-1], hist):
            raise WorkloadError(f"user {user!r}: the checkpoint's sequence is not the artifact's "
                                "history plus one held-out item; are they from the same run?")
        targets.append(int(seq[-1]))
    return targets


def load_workload(artifact: Path, checkpoint: Path | None = None, mode: Mode = "user",
                  k: int = 10, limit: int | None = None) -> Workload:
    """Held-out users of an artifact; targets (for quality) only when ``checkpoint`` is given."""
    try:
        with np.load(artifact / "histories.npz", allow_pickle=False) as npz:
            user_ids = npz["user_ids"].tolist()
            histories = np.split(npz["flat"], npz["offsets"])
        items = pd.read_parquet(artifact / "items.parquet").sort_values("index")
    except (OSError, KeyError) as exc:
        raise WorkloadError(f"{artifact}: cannot read histories.npz / items.parquet: {exc}") from exc
    if limit is not None:
        user_ids, histories = user_ids[:limit], histories[:limit]
    targets = None if checkpoint is None else load_targets(checkpoint, user_ids, histories)
    users = heldout_users(user_ids, histories, items["item_id"].astype(str).tolist(), targets)
    return Workload(users, mode, k)
