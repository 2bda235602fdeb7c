"""The per-request record of a run: one row per scheduled request, in columns.

The dispatcher writes rows into an :class:`OutcomeBuffer` (preallocated, cheap to fill on the
hot path); everything after the run (histograms, timeline, quality) is computed from the frozen
:class:`Outcomes`, so generator processes merge by concatenating their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum

import numpy as np

__all__ = ["OutcomeBuffer", "Outcomes", "RequestKind", "Status"]


class Status(IntEnum):
    """What happened to one scheduled request."""

    OK = 0
    ERROR = 1      # transport error, 4xx/5xx other than shedding
    SHED = 2       # 503 / RESOURCE_EXHAUSTED / UNAVAILABLE: the server refused fast
    TIMEOUT = 3    # no answer within the client timeout
    DROPPED = 4    # never sent: the in-flight cap was reached at its send time


class RequestKind(IntEnum):
    """Which API one scheduled request called."""

    RECOMMEND = 0
    SEARCH = 1


def _unset() -> np.ndarray:
    return np.empty(0)


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Columns, one entry per scheduled request (times in µs, offsets in s from run start).

    ``latency_us`` runs from the *intended* send time, ``service_us`` from the actual one,
    ``lag_us`` is actual minus intended; all three are 0 for dropped requests. ``rank`` is the
    0-based rank of the held-out item in a recommend answer, -1 if absent, -2 if not scored
    (always -2 for searches). ``kind`` is a :class:`RequestKind`; ``search_recall10`` and
    ``search_ndcg10`` score a search answer against its query's relevant items (NaN when not
    scored, always NaN for recommends). The last three columns default to a recommend-only run.
    """

    intended_s: np.ndarray
    lag_us: np.ndarray
    latency_us: np.ndarray
    service_us: np.ndarray
    status: np.ndarray
    degraded: np.ndarray
    rank: np.ndarray
    kind: np.ndarray = field(default_factory=_unset)
    search_recall10: np.ndarray = field(default_factory=_unset)
    search_ndcg10: np.ndarray = field(default_factory=_unset)

    def __post_init__(self) -> None:
        n = len(self.intended_s)
        defaults = {"kind": lambda: np.zeros(n, dtype=np.int8),
                    "search_recall10": lambda: np.full(n, np.nan, dtype=np.float32),
                    "search_ndcg10": lambda: np.full(n, np.nan, dtype=np.float32)}
        for name, make in defaults.items():
            size = len(getattr(self, name))
            if size == 0 and n:  # left out: every row is an unscored recommend
                object.__setattr__(self, name, make())
            elif size != n:
                raise ValueError(f"column {name}: expected {n} rows, found {size}")

    @property
    def searches(self) -> np.ndarray:
        """Mask of the search rows."""
        return np.asarray(self.kind == RequestKind.SEARCH)

    def __len__(self) -> int:
        return len(self.intended_s)

    def select(self, mask: np.ndarray) -> Outcomes:
        """The rows where ``mask`` is true."""
        return Outcomes(*(getattr(self, f.name)[mask] for f in fields(self)))

    def count(self, *statuses: Status) -> int:
        """How many rows have one of ``statuses``."""
        return int(np.isin(self.status, [int(s) for s in statuses]).sum())

    @staticmethod
    def concat(parts: Sequence[Outcomes]) -> Outcomes:
        """Rows of several generators, re-sorted by intended send time."""
        cols = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Outcomes)}
        order = np.argsort(cols["intended_s"], kind="stable")
        return Outcomes(**{name: col[order] for name, col in cols.items()})


class OutcomeBuffer:
    """Preallocated columns filled by the dispatcher; :meth:`freeze` returns :class:`Outcomes`."""

    def __init__(self, intended_s: np.ndarray) -> None:
        n = len(intended_s)
        self.intended_s = np.asarray(intended_s, dtype=np.float64)
        self.lag_us = np.zeros(n, dtype=np.int64)
        self.latency_us = np.zeros(n, dtype=np.int64)
        self.service_us = np.zeros(n, dtype=np.int64)
        self.status = np.full(n, int(Status.TIMEOUT), dtype=np.int8)
        self.degraded = np.zeros(n, dtype=bool)
        self.rank = np.full(n, -2, dtype=np.int32)
        self.kind = np.zeros(n, dtype=np.int8)
        self.search_recall10 = np.full(n, np.nan, dtype=np.float32)
        self.search_ndcg10 = np.full(n, np.nan, dtype=np.float32)
        self.finished = np.zeros(n, dtype=bool)

    def drop(self, i: int) -> None:
        """Request ``i`` was not sent (in-flight cap)."""
        self.status[i] = Status.DROPPED
        self.finished[i] = True

    def live_seconds(self, first_s: int, upto_s: int) -> list[dict[str, int]]:
        """Counts of seconds ``[first_s, upto_s)`` so far (for live progress and abort checks):
        offered, finished, ok, degraded; unfinished rows are neither ok nor failed yet.

        Example:
            >>> buf = OutcomeBuffer(np.array([0.1, 0.5, 1.2]))
            >>> buf.done(0, Status.OK, 0, 0.001, 0.001); buf.done(1, Status.ERROR, 0, 0.1, 0.1)
            >>> buf.live_seconds(0, 2)
            [{'second': 0, 'offered': 2, 'finished': 2, 'ok': 1, 'degraded': 0}, \
{'second': 1, 'offered': 1, 'finished': 0, 'ok': 0, 'degraded': 0}]
        """
        out = []
        for second in range(max(0, first_s), upto_s):
            rows = (self.intended_s >= second) & (self.intended_s < second + 1)
            done = rows & self.finished
            ok = done & (self.status == Status.OK)
            out.append({"second": second, "offered": int(rows.sum()), "finished": int(done.sum()),
                        "ok": int(ok.sum()), "degraded": int((ok & self.degraded).sum())})
        return out

    def done(self, i: int, status: Status, lag_s: float, latency_s: float, service_s: float,
             degraded: bool = False, rank: int = -2) -> None:
        """Request ``i`` finished (or timed out) with these timings in seconds."""
        self.status[i] = status
        self.lag_us[i] = round(lag_s * 1e6)
        self.latency_us[i] = round(latency_s * 1e6)
        self.service_us[i] = round(service_s * 1e6)
        self.degraded[i] = degraded
        self.rank[i] = rank
        self.finished[i] = True

    def searched(self, i: int, recall10: float, ndcg10: float) -> None:
        """Search ``i`` was answered with these scores (NaN: not scored)."""
        self.kind[i] = RequestKind.SEARCH
        self.search_recall10[i] = recall10
        self.search_ndcg10[i] = ndcg10

    def freeze(self) -> Outcomes:
        """The filled columns (copies)."""
        return Outcomes(self.intended_s.copy(), self.lag_us.copy(), self.latency_us.copy(),
                        self.service_us.copy(), self.status.copy(), self.degraded.copy(),
                        self.rank.copy(), self.kind.copy(), self.search_recall10.copy(),
                        self.search_ndcg10.copy())
