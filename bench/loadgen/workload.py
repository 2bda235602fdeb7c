"""Held-out test users as requests: each replays a user's history without its last item and
carries that item as the target its answer is scored against; optionally held-out search
queries beside them, each scored against its set of relevant items.

Histories come from the artifact (``histories.npz``, which already leaves the test item out);
targets from the training checkpoint (``sequences.npz``: the last item of each sequence, opened
in memory when sealed); search queries from the artifact's ``search/queries.parquet``.

A pseudonymised artifact (``pseudonym_key_id`` in its manifest) names users by pseudonym only.
Replaying them by ``user_id`` needs their clear ids, which only the training checkpoint (the
private training zone) holds: with it, each pseudonym is matched to its clear id through the
pseudonym key; without it, users are replayed by history. Clear ids stay in memory: nothing
here writes them anywhere.

Requests are indexed recommend first, then search: with ``u`` users and ``q`` queries, index
``i < u`` recommends for user ``i`` and index ``u + j`` searches query ``j``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from bench.loadgen.errors import ConfigError, WorkloadError
from security.datadir import read_data
from security.errors import SecurityError
from security.pseudonym import Pseudonymiser
from serving.schemas import MAX_HISTORY, RecommendRequest, SearchRequest

__all__ = ["HeldOutQuery", "HeldOutUser", "Workload", "artifact_pseudonymiser",
           "checkpoint_sequences", "heldout_users", "load_search_queries", "load_targets",
           "load_workload"]

Mode = Literal["user", "history"]
Split = Literal["validation", "test"]


@dataclass(frozen=True)
class HeldOutUser:
    """One user to replay: id, item-id history (oldest first) and the held-out item id."""

    user_id: str
    history: tuple[str, ...]
    target: str | None


@dataclass(frozen=True)
class HeldOutQuery:
    """One search to replay: the query text and the item ids relevant to it (one or more).

    Example:
        >>> HeldOutQuery("red shoes", ("i7", "i9")).relevant
        ('i7', 'i9')
    """

    query: str
    relevant: tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    """Users to replay and how to ask: by ``user_id`` (server-side history) or by ``history``;
    plus held-out ``searches``, sent as ``search_share`` of the requests (0: none).

    Example:
        >>> users = (HeldOutUser("u", ("a",), "b"),)
        >>> w = Workload(users, searches=(HeldOutQuery("shoe", ("s1",)),), search_share=0.5)
        >>> [type(r).__name__ for r in w.requests()], int((w.order(10) >= 1).sum())
        (['RecommendRequest', 'SearchRequest'], 5)
    """

    users: tuple[HeldOutUser, ...]
    mode: Mode = "user"
    k: int = 10
    searches: tuple[HeldOutQuery, ...] = ()
    search_share: float = 0.0

    def __post_init__(self) -> None:
        if not self.users:
            raise ConfigError("a workload needs at least one user")
        if self.mode not in ("user", "history"):
            raise ConfigError(f"mode must be 'user' or 'history', found {self.mode!r}")
        if not 0.0 <= self.search_share <= 1.0:
            raise ConfigError(f"search_share must be in [0, 1], found {self.search_share}")
        if self.search_share > 0 and not self.searches:
            raise ConfigError(f"search_share={self.search_share} needs held-out searches; load "
                              "them with load_search_queries(artifact)")

    def requests(self) -> list[RecommendRequest | SearchRequest]:
        """One validated request per user, in user order, then one per search query."""
        recommend: list[RecommendRequest | SearchRequest]
        if self.mode == "user":
            recommend = [RecommendRequest(user_id=u.user_id, k=self.k) for u in self.users]
        else:
            recommend = [RecommendRequest(history=list(u.history[-MAX_HISTORY:]), k=self.k)
                         for u in self.users]
        return recommend + [SearchRequest(query=q.query, k=self.k) for q in self.searches]

    def targets(self) -> list[str | None]:
        """The held-out item of each user, in user order (recommend requests only)."""
        return [u.target for u in self.users]

    def relevant(self) -> list[tuple[str, ...]]:
        """The relevant items of each search query, in query order (search requests only)."""
        return [q.relevant for q in self.searches]

    def order(self, n: int, seed: int = 0) -> np.ndarray:
        """Which request each of ``n`` scheduled requests sends: seeded shuffles of the users,
        repeated; with ``search_share`` > 0, ``round(n * search_share)`` seeded positions send
        shuffled searches instead (request index ``len(users) + j``)."""
        rng = np.random.default_rng(seed)
        if self.search_share == 0:  # the recommend-only order, as it always was
            return _shuffled(rng, len(self.users), n)
        is_search = np.zeros(n, dtype=bool)
        is_search[rng.permutation(n)[:round(n * self.search_share)]] = True
        out = np.empty(n, dtype=np.int64)
        out[~is_search] = _shuffled(rng, len(self.users), int((~is_search).sum()))
        out[is_search] = len(self.users) + _shuffled(rng, len(self.searches),
                                                     int(is_search.sum()))
        return out


def _shuffled(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``n`` picks from ``range(size)``: seeded permutations, concatenated."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    reps = -(-n // size)
    return np.concatenate([rng.permutation(size) for _ in range(reps)])[:n]


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


def checkpoint_sequences(checkpoint: Path) -> dict[str, np.ndarray]:
    """Every user's full sequence in a checkpoint's ``sequences.npz``, by clear user id (the
    file is decrypted in memory when sealed, with the data key file)."""
    path = checkpoint / "sequences.npz"
    if not path.exists():
        raise WorkloadError(f"{path} is missing: pass the training checkpoint directory")
    try:
        blob = read_data(path)
    except (OSError, SecurityError) as exc:
        raise WorkloadError(f"{path}: cannot be read: {exc}") from exc
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return dict(zip(npz["user_ids"].tolist(), np.split(npz["flat"], npz["offsets"]),
                        strict=True))


def load_targets(checkpoint: Path, user_ids: Sequence[str], histories: Sequence[np.ndarray],
                 pseudonymiser: Pseudonymiser | None = None) -> list[int]:
    """Held-out item index per user from a checkpoint's ``sequences.npz`` (last item).

    ``user_ids`` are the artifact's: pseudonyms under ``pseudonymiser`` when given, else clear
    ids. Checks that each full sequence is the artifact's history plus one item.
    """
    full = checkpoint_sequences(checkpoint)
    if pseudonymiser is not None:
        full = {pseudonymiser.of(u): seq for u, seq in full.items()}
    return _targets(full, user_ids, histories)


def _targets(full: dict[str, np.ndarray], user_ids: Sequence[str],
             histories: Sequence[np.ndarray]) -> list[int]:
    targets = []
    for user, hist in zip(user_ids, histories, strict=True):
        seq = full.get(str(user))
        if seq is None or len(seq) != len(hist) + 1 or not np.array_equal(seq[:-1], hist):
            raise WorkloadError(f"user {user!r}: the checkpoint's sequence is not the artifact's "
                                "history plus one held-out item; are they from the same run?")
        targets.append(int(seq[-1]))
    return targets


def artifact_pseudonymiser(artifact: Path, key_path: Path | None = None
                           ) -> tuple[str | None, Pseudonymiser | None]:
    """The pseudonym key id of ``artifact`` (None: clear ids) and, when it has one, the
    pseudonymiser of ``key_path`` (default key file) if that file holds the same key. A bare
    table directory without manifest.json counts as clear ids."""
    path = artifact / "manifest.json"
    if not path.exists():
        return None, None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkloadError(f"{artifact}: cannot read manifest.json: {exc}") from exc
    key_id = manifest.get("pseudonym_key_id")
    if key_id is None:
        return None, None
    try:
        pseudonymiser = Pseudonymiser.load(key_path)
    except SecurityError:
        return key_id, None
    return key_id, pseudonymiser if pseudonymiser.key_id == key_id else None


def load_workload(artifact: Path, checkpoint: Path | None = None, mode: Mode = "user",
                  k: int = 10, limit: int | None = None,
                  pseudonym_key: Path | None = None) -> Workload:
    """Held-out users of an artifact; targets (for quality) only when ``checkpoint`` is given.

    For a pseudonymised artifact, users are replayed by their clear ids from ``checkpoint``
    (matched through ``pseudonym_key``, default the default key file); without a checkpoint,
    by history instead (the workload's ``mode`` says so).
    """
    try:
        with np.load(artifact / "histories.npz", allow_pickle=False) as npz:
            user_ids = npz["user_ids"].tolist()
            histories = np.split(npz["flat"], npz["offsets"])
        items = pd.read_parquet(artifact / "items.parquet").sort_values("index")
    except (OSError, KeyError) as exc:
        raise WorkloadError(f"{artifact}: cannot read histories.npz / items.parquet: {exc}") from exc
    if limit is not None:
        user_ids, histories = user_ids[:limit], histories[:limit]
    key_id, pseudonymiser = artifact_pseudonymiser(artifact, pseudonym_key)
    targets = None
    if checkpoint is None and key_id is not None:
        mode = "history"  # pseudonyms only: a user_id request would be an unknown user
    elif checkpoint is not None:
        if key_id is not None and pseudonymiser is None:
            raise WorkloadError(
                f"{artifact}: user ids are pseudonymised with key id {key_id} and the pseudonym "
                "key at hand is missing or another; set RECDRILL_PSEUDONYM_KEY to the key the "
                "artifact was exported with, or replay without the checkpoint (by history)")
        full = checkpoint_sequences(checkpoint)
        clear = {u: u for u in full}
        if pseudonymiser is not None:
            clear = {pseudonymiser.of(u): u for u in full}
            full = {p: full[u] for p, u in clear.items()}
        targets = _targets(full, user_ids, histories)  # every user is in ``clear`` past this
        user_ids = [clear[u] for u in user_ids]
    users = heldout_users(user_ids, histories, items["item_id"].astype(str).tolist(), targets)
    return Workload(users, mode, k)


def load_search_queries(artifact: Path, split: Split = "test", limit: int | None = None
                        ) -> tuple[HeldOutQuery, ...]:
    """The held-out search queries of one ``split`` from an artifact that carries search
    (``io["search"]`` in its manifest, ``search/queries.parquet``).

    Relevant ids are those of the artifact's catalogue (``items.parquet``), as the export
    measured them; queries left without a relevant item are left out (nothing to score).
    """
    try:
        manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkloadError(f"{artifact}: cannot read manifest.json: {exc}") from exc
    search = (manifest.get("io") or {}).get("search")
    if not search:
        raise WorkloadError(f"{artifact}: the artifact carries no search model (no io.search in "
                            "its manifest); export one with `python -m export build ... "
                            "--search <checkpoint>`, or set search_share to 0")
    path = artifact / str(search.get("queries", "search/queries.parquet"))
    try:
        table = pd.read_parquet(path, columns=["query", "split", "relevant"])
    except (OSError, KeyError, ValueError) as exc:
        raise WorkloadError(f"{path}: cannot read the held-out queries (columns query, split, "
                            f"relevant): {exc}") from exc
    try:
        catalogue = set(pd.read_parquet(artifact / "items.parquet", columns=["item_id"])
                        ["item_id"].astype(str))
    except (OSError, KeyError, ValueError) as exc:
        raise WorkloadError(f"{artifact}: cannot read items.parquet: {exc}") from exc
    rows = table[table["split"] == split]
    served = ((str(q), tuple(str(i) for i in rel if str(i) in catalogue))
              for q, rel in zip(rows["query"], rows["relevant"], strict=True)
              if rel is not None and str(q).strip())
    queries = tuple(HeldOutQuery(q, rel) for q, rel in served if rel)
    if limit is not None:
        queries = queries[:limit]
    if not queries:
        found = sorted(map(str, table["split"].unique()))
        raise WorkloadError(f"{path}: expected held-out queries with relevant items in split "
                            f"{split!r}, found none (splits present: {found})")
    return queries
