"""Past saturation: what one overload run did, and whether the server held, sagged or
collapsed. Pure functions over a run's summary; nothing here is asserted against numbers.

A server *holds* when its goodput under overload stays near its saturation (it sheds the
excess, ideally fast); it *collapses* when goodput falls far below it (queues grow, requests
time out, the work done is for clients that already gave up). Goodput counts every successful
answer; *SLO goodput* only those answered within the SLO's latency bound, which tells a server
that sheds the excess from one that answers everything late.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.loadgen.outcomes import Outcomes, Status

__all__ = ["Overload", "OverloadVerdict", "added_ms", "answered_within", "judge_overload",
           "overload_from_summary"]


@dataclass(frozen=True)
class Overload:
    """One overload run: shares of the offered requests by outcome, and latencies.

    ``shed`` = refused by the server (503 / RESOURCE_EXHAUSTED / UNAVAILABLE), ``error`` = any
    other failed answer or broken connection, ``timeout`` = no answer within the client
    timeout, ``dropped`` = never sent (the generator's in-flight cap). ``failed_*`` are the
    latencies of shed + error + timeout, from the intended send time; ``slo_goodput_rps``
    counts only answers within the SLO bound (None when not computed).
    """

    offered_rps: float
    duration_s: float
    goodput_rps: float
    ok_share: float
    shed_share: float
    error_share: float
    timeout_share: float
    dropped_share: float
    ok_p50_ms: float | None
    ok_p99_ms: float | None
    failed_p50_ms: float | None
    failed_p99_ms: float | None
    degraded_share: float | None
    valid: bool
    slo_goodput_rps: float | None = None

    @property
    def failed_share(self) -> float:
        """Share of offered requests not answered successfully (sent or not)."""
        return round(1.0 - self.ok_share, 4)


def answered_within(outcomes: Outcomes, bound_ms: float) -> int:
    """How many requests were answered successfully within ``bound_ms`` of their intended
    send time.

    Example:
        >>> o = Outcomes(*(np.zeros(3) for _ in range(2)), np.array([1e3, 5e4, 2e5]),
        ...              np.zeros(3), np.array([0, 0, 1]), np.zeros(3, bool), np.zeros(3))
        >>> answered_within(o, 100.0)
        2
    """
    ok = outcomes.status == Status.OK
    return int(np.count_nonzero(ok & (outcomes.latency_us <= bound_ms * 1000.0)))


def overload_from_summary(summary: dict[str, Any], within_slo: int | None = None) -> Overload:
    """An :class:`Overload` from :meth:`LoadResult.summary` output (and, if given, the count
    of answers within the SLO, :func:`answered_within`).

    Example:
        >>> lat = {"p50_ms": 2.0, "p99_ms": 9.0}
        >>> o = overload_from_summary({"offered_rps": 100, "duration_s": 10, "offered": 1000,
        ...     "ok": 600, "shed": 300, "timeouts": 50, "errors": 390, "dropped": 10,
        ...     "goodput_rps": 60.0, "latency_ms": lat, "failed_ms": lat,
        ...     "degraded_share": 0.0, "valid": True})
        >>> o.shed_share, o.error_share, o.timeout_share, o.failed_share
        (0.3, 0.04, 0.05, 0.4)
    """
    n = summary["offered"] or 1
    shed, timeouts = summary["shed"], summary["timeouts"]
    other = summary["errors"] - shed - timeouts  # "errors" counts error + shed + timeout
    ok_lat, failed_lat = summary["latency_ms"], summary["failed_ms"]
    return Overload(
        offered_rps=summary["offered_rps"], duration_s=summary["duration_s"],
        goodput_rps=summary["goodput_rps"], ok_share=round(summary["ok"] / n, 4),
        shed_share=round(shed / n, 4), error_share=round(other / n, 4),
        timeout_share=round(timeouts / n, 4), dropped_share=round(summary["dropped"] / n, 4),
        ok_p50_ms=ok_lat["p50_ms"], ok_p99_ms=ok_lat["p99_ms"],
        failed_p50_ms=failed_lat["p50_ms"], failed_p99_ms=failed_lat["p99_ms"],
        degraded_share=summary["degraded_share"], valid=summary["valid"],
        slo_goodput_rps=(None if within_slo is None
                         else round(within_slo / summary["duration_s"], 2)))


@dataclass(frozen=True)
class OverloadVerdict:
    """``keep`` = goodput under overload / saturation (``slo_keep`` the same for SLO goodput);
    ``verdict`` one of held / sagged / collapsed / unknown, from ``keep``; ``fast_failures``
    whether failures were answered within the bound at p99 (None: there were none, or no
    overload run)."""

    keep: float | None
    verdict: str
    fast_failures: bool | None
    slo_keep: float | None = None


def judge_overload(overload: Overload | None, saturation_rps: float | None, held: float = 0.9,
                   collapsed: float = 0.5, fast_ms: float = 100.0) -> OverloadVerdict:
    """Held when goodput ≥ ``held`` × saturation, collapsed below ``collapsed`` ×, else sagged.

    Example:
        >>> o = Overload(200, 10, 95, 0.48, 0.52, 0, 0, 0, 1, 5, 1.0, 3.0, 0.0, True)
        >>> judge_overload(o, 100)
        OverloadVerdict(keep=0.95, verdict='held', fast_failures=True, slo_keep=None)
        >>> judge_overload(o, 400).verdict, judge_overload(None, 100).verdict
        ('collapsed', 'unknown')
    """
    if overload is None or not saturation_rps:
        return OverloadVerdict(None, "unknown", None)
    keep = round(overload.goodput_rps / saturation_rps, 3)
    verdict = "held" if keep >= held else "collapsed" if keep < collapsed else "sagged"
    fast = None if overload.failed_p99_ms is None else overload.failed_p99_ms <= fast_ms
    slo_keep = (None if overload.slo_goodput_rps is None
                else round(overload.slo_goodput_rps / saturation_rps, 3))
    return OverloadVerdict(keep, verdict, fast, slo_keep)


def added_ms(with_hop_ms: float | None, without_ms: float | None) -> float | None:
    """Latency a hop adds: ``with_hop_ms - without_ms`` (None if either is missing).

    Example:
        >>> added_ms(1.25, 0.75), added_ms(None, 1.0)
        (0.5, None)
    """
    if with_hop_ms is None or without_ms is None:
        return None
    return round(with_hop_ms - without_ms, 3)
