"""Retry, backoff and hedging decisions of the client: pure functions, no I/O, no clock.

Example:
    >>> p = RetryPolicy(retries=1, backoff_base_s=0.01, backoff_cap_s=0.1)
    >>> backoff_s(p, attempt=2, rand=0.5)
    0.01
    >>> endpoint_order(3, start=1)
    [1, 2, 0]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GRPC_RETRYABLE",
    "RetryPolicy",
    "attempt_timeout_s",
    "backoff_s",
    "endpoint_order",
    "retryable_http",
]

# gRPC codes after which another endpoint may succeed (INVALID_ARGUMENT never will).
GRPC_RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED",
                            "CANCELLED", "UNKNOWN", "INTERNAL", "ABORTED"})


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts, each on the next endpoint; full-jitter exponential backoff;
    optional hedge: a second attempt starts if the first is silent for ``hedge_after_s``."""

    deadline_s: float = 2.0
    attempt_timeout_s: float = 0.5
    retries: int = 2
    backoff_base_s: float = 0.005
    backoff_cap_s: float = 0.2
    hedge_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.deadline_s <= 0 or self.attempt_timeout_s <= 0 or self.retries < 0:
            raise ValueError(f"RetryPolicy: expected positive deadline/attempt timeout and "
                             f"retries >= 0; found {self}")


def backoff_s(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """Sleep before attempt ``attempt`` (1 = the first retry): rand * min(cap, base * 2^(a-1))."""
    if attempt <= 0:
        return 0.0
    return rand * min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** (attempt - 1))


def endpoint_order(n: int, start: int) -> list[int]:
    """Every endpoint once, round-robin from ``start``: attempts go to different replicas."""
    return [(start + i) % n for i in range(n)]


def attempt_timeout_s(policy: RetryPolicy, remaining_s: float) -> float:
    """One attempt may use its own limit, never more than what is left of the deadline."""
    return max(0.0, min(policy.attempt_timeout_s, remaining_s))


def retryable_http(status: int) -> bool:
    """5xx (and 429) may succeed elsewhere; other 4xx are the caller's error."""
    return status >= 500 or status == 429
