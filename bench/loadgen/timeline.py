"""Per-second timeline and caller-named phases (before / during / after a fault), pure.

Requests are bucketed by their *intended* send time, so a stall shows up in the seconds whose
requests it delayed, not in the second the answers finally arrived.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.loadgen.errors import ConfigError
from bench.loadgen.outcomes import Outcomes, Status
from bench.loadgen.quality import quality_of, search_quality_of
from bench.loadgen.recorder import histogram_of, summarize

__all__ = ["Phase", "WindowStats", "parse_phases", "per_phase", "per_second", "window_stats"]

_FAILED = (Status.ERROR, Status.SHED, Status.TIMEOUT)


@dataclass(frozen=True)
class Phase:
    """A named span of the run, ``[start_s, end_s)`` seconds from its start."""

    name: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class WindowStats:
    """What happened to the requests intended inside one window (a second or a phase).

    ``errors`` counts errors, sheds and timeouts; ``degraded`` counts successful answers the
    fallback tier gave; latencies are of successful answers, from the intended send time.
    Counts and latencies cover every request; ``hr10`` / ``ndcg10`` / ``scored`` score the
    recommend answers only. The ``search_*`` fields cover the search requests alone:
    ``searches`` offered, ``search_ok`` answered, their latency, and their mean Recall@10 /
    NDCG@10 over ``search_scored`` scored answers (None when none was).
    """

    label: str
    start_s: float
    end_s: float
    offered: int
    ok: int
    errors: int
    shed: int
    timeouts: int
    dropped: int
    degraded: int
    goodput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    hr10: float | None
    ndcg10: float | None
    scored: int
    searches: int = 0
    search_ok: int = 0
    search_p50_ms: float | None = None
    search_p99_ms: float | None = None
    search_recall10: float | None = None
    search_ndcg10: float | None = None
    search_scored: int = 0

    @property
    def success_ratio(self) -> float | None:
        """ok / offered (None for an empty window)."""
        return round(self.ok / self.offered, 4) if self.offered else None


def window_stats(outcomes: Outcomes, label: str, start_s: float, end_s: float) -> WindowStats:
    """Stats of the requests whose intended send time is in ``[start_s, end_s)``.

    Example:
        >>> import numpy as np
        >>> from bench.loadgen.outcomes import OutcomeBuffer
        >>> buf = OutcomeBuffer(np.array([0.1, 0.2]))
        >>> buf.done(0, Status.OK, 0, 0.002, 0.002, rank=0); buf.drop(1)
        >>> w = window_stats(buf.freeze(), "0", 0, 1)
        >>> (w.offered, w.ok, w.dropped, w.p50_ms, w.hr10, w.searches, w.search_ndcg10)
        (2, 1, 1, 2.0, 1.0, 0, None)
    """
    rows = outcomes.select((outcomes.intended_s >= start_s) & (outcomes.intended_s < end_s))
    ok = rows.status == Status.OK
    search = rows.searches
    lat = summarize(histogram_of(rows.latency_us[ok]))
    quality = quality_of(rows.rank[ok & ~search])
    span = end_s - start_s
    searches: dict[str, Any] = {}
    if search.any():  # a search-free window skips the second histogram
        search_ok = ok & search
        search_lat = summarize(histogram_of(rows.latency_us[search_ok]))
        found = search_quality_of(rows.search_recall10[search_ok], rows.search_ndcg10[search_ok])
        searches = {"searches": int(search.sum()), "search_ok": int(search_ok.sum()),
                    "search_p50_ms": search_lat.p50_ms, "search_p99_ms": search_lat.p99_ms,
                    "search_recall10": found.recall, "search_ndcg10": found.ndcg,
                    "search_scored": found.scored}
    return WindowStats(
        label=label, start_s=start_s, end_s=end_s, offered=len(rows), ok=int(ok.sum()),
        errors=rows.count(*_FAILED), shed=rows.count(Status.SHED),
        timeouts=rows.count(Status.TIMEOUT), dropped=rows.count(Status.DROPPED),
        degraded=int((rows.degraded & ok).sum()),
        goodput_rps=round(float(ok.sum()) / span, 2) if span > 0 else 0.0,
        p50_ms=lat.p50_ms, p99_ms=lat.p99_ms, max_ms=lat.max_ms,
        hr10=quality.hr, ndcg10=quality.ndcg, scored=quality.scored, **searches)


def per_second(outcomes: Outcomes, duration_s: float) -> list[WindowStats]:
    """One :class:`WindowStats` per second of the schedule, labelled "0", "1", ..."""
    return [window_stats(outcomes, str(s), float(s), float(s + 1))
            for s in range(max(1, math.ceil(duration_s)))]


def per_phase(outcomes: Outcomes, phases: Sequence[Phase]) -> list[WindowStats]:
    """One :class:`WindowStats` per caller-named phase."""
    return [window_stats(outcomes, p.name, p.start_s, p.end_s) for p in phases]


def parse_phases(spec: str) -> list[Phase]:
    """Phases from ``"before:0-10,during:10-20,after:20-30"`` (seconds from the start).

    Example:
        >>> parse_phases("before:0-5,during:5-7.5")
        [Phase(name='before', start_s=0.0, end_s=5.0), Phase(name='during', start_s=5.0, end_s=7.5)]
    """
    phases = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            name, span = part.split(":")
            start, end = (float(x) for x in span.split("-"))
        except ValueError as exc:
            raise ConfigError(f"phase must look like 'name:start-end', found {part!r}") from exc
        if not end > start >= 0:
            raise ConfigError(f"phase {name!r} needs 0 <= start < end, found {start}-{end}")
        phases.append(Phase(name, start, end))
    return phases
