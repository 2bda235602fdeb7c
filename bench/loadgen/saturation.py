"""Finding a contender's saturation by stepping the offered rate: pure decisions over steps.

The suite runs a step, appends what it measured, and asks :func:`next_rate` for the next
offered rate (None: done). Rates grow geometrically until a step fails the SLO, then a few
geometric bisections narrow the gap. Saturation is the goodput of the highest passing step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SLO", "Step", "next_rate", "saturation", "step_from_summary", "step_passes"]


@dataclass(frozen=True)
class SLO:
    """A step passes when p99 ≤ ``p99_ms``, ok/offered ≥ ``min_success`` and goodput keeps up."""

    p99_ms: float = 100.0
    min_success: float = 0.99
    min_goodput_share: float = 0.95


@dataclass(frozen=True)
class Step:
    """One measured offered rate (latencies of successes, from the intended send time)."""

    offered_rps: float
    goodput_rps: float
    success_ratio: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    lag_p99_ms: float | None
    generator_cpu_share: float
    valid: bool
    hr10: float | None = None
    ndcg10: float | None = None
    degraded_share: float | None = None
    kind: str = "search"


def step_from_summary(summary: dict[str, Any], kind: str = "search") -> Step:
    """A :class:`Step` from :meth:`LoadResult.summary` output."""
    lat, q = summary["latency_ms"], summary["quality"]
    return Step(summary["offered_rps"], summary["goodput_rps"], summary["success_ratio"] or 0.0,
                lat["p50_ms"], lat["p99_ms"], lat["max_ms"], summary["lag_ms"]["p99_ms"],
                max(summary["generator"]["cpu_share"]), summary["valid"], q["hr"], q["ndcg"],
                summary["degraded_share"], kind)


def step_passes(step: Step, slo: SLO) -> bool:
    """Whether ``step`` meets ``slo``.

    Example:
        >>> s = Step(100, 99, 0.995, 2.0, 20.0, 30.0, 0.5, 0.1, True)
        >>> step_passes(s, SLO()), step_passes(s, SLO(p99_ms=10))
        (True, False)
    """
    return (step.success_ratio >= slo.min_success and step.p99_ms is not None
            and step.p99_ms <= slo.p99_ms
            and step.goodput_rps >= slo.min_goodput_share * step.offered_rps)


def next_rate(steps: Sequence[Step], slo: SLO, start_rps: float, factor: float, max_rps: float,
              refine: int = 2) -> float | None:
    """The next offered rate to try, or None when saturation is bracketed closely enough.

    Example:
        >>> ok = Step(100, 100, 1, 1, 2, 3, 0.1, 0.1, True)
        >>> bad = Step(200, 120, 0.6, 1, 500, 900, 0.1, 0.1, True)
        >>> next_rate([], SLO(), 100, 2, 1000), next_rate([ok], SLO(), 100, 2, 1000)
        (100.0, 200.0)
        >>> round(next_rate([ok, bad], SLO(), 100, 2, 1000), 1)
        141.4
    """
    search = [s for s in steps if s.kind in ("search", "refine")]
    if not search:
        return float(start_rps)
    passed = [s.offered_rps for s in search if step_passes(s, slo)]
    failed = [s.offered_rps for s in search if not step_passes(s, slo)]
    if not failed:
        top = float(max(passed))
        return top * factor if top * factor <= max_rps * (1 + 1e-9) else None
    if not passed:
        low = float(min(failed)) / factor
        return low if low >= max(1.0, start_rps / factor ** 5) else None
    lo, hi = max(passed), min((f for f in failed if f > max(passed)), default=None)
    refined = sum(1 for s in search if s.kind == "refine")
    if hi is None or refined >= refine or hi / lo <= 1.1:
        return None
    return math.sqrt(lo * hi)


def saturation(steps: Sequence[Step], slo: SLO) -> Step | None:
    """The passing step with the highest offered rate (its goodput is the saturation)."""
    passed = [s for s in steps if s.kind in ("search", "refine") and step_passes(s, slo)]
    return max(passed, key=lambda s: s.offered_rps, default=None)
