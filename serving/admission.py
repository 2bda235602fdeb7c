"""Admission control and deadlines: pure decisions over plain numbers, tested without I/O.

Each replica admits up to ``max_in_flight`` requests to the model; the next
``max_degraded`` are answered at once from the fallback tier (``degraded: true``, no model
time), and anything beyond is shed with 503 + Retry-After (gRPC RESOURCE_EXHAUSTED). Nothing
is queued into a timeout: a shed answer costs a fraction of a millisecond.

Example:
    >>> decide(AdmissionPolicy(max_in_flight=2, max_degraded=1), in_flight=2)
    <Decision.DEGRADE: 'degrade'>
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["AdmissionPolicy", "Decision", "budget_s", "decide", "parse_timeout_s"]


class Decision(enum.Enum):
    """What to do with one arriving request."""

    ADMIT = "admit"
    DEGRADE = "degrade"
    SHED = "shed"


@dataclass(frozen=True)
class AdmissionPolicy:
    """Per-replica limits; ``max_in_flight`` about 2-4x the batch size keeps the model busy."""

    max_in_flight: int = 48
    max_degraded: int = 64
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.max_degraded < 0 or self.retry_after_s <= 0:
            raise ValueError(f"AdmissionPolicy: expected max_in_flight >= 1, max_degraded >= 0, "
                             f"retry_after_s > 0; found {self}")


def decide(policy: AdmissionPolicy, in_flight: int, degraded_in_flight: int = 0) -> Decision:
    """Admit while the model has room, then degrade, then shed."""
    if in_flight < policy.max_in_flight:
        return Decision.ADMIT
    if degraded_in_flight < policy.max_degraded:
        return Decision.DEGRADE
    return Decision.SHED


def parse_timeout_s(header: str | None) -> float | None:
    """The client's remaining budget from ``X-Request-Timeout-Ms`` (None if absent or bad)."""
    if not header:
        return None
    try:
        value = float(header) / 1000.0
    except ValueError:
        return None
    return value if value > 0 else None


def budget_s(client_timeout_s: float | None, default_s: float, reserve_s: float = 0.002) -> float:
    """Time the model may take: the client's budget (or the server default) minus a reserve
    for the fallback answer and the response, never below 1 ms."""
    total = default_s if client_timeout_s is None else min(client_timeout_s, default_s)
    return max(0.001, total - reserve_s)
