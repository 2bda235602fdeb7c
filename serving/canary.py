"""Canary decisions, pure: who is in the canary, how each arm is doing, and what to do next.

A canary version answers a stable ``share`` of the keys (``in_canary``: the same key gets the
same arm on every replica and in every process). Online feedback is tallied per version as
HR@10 (``Tally``: answers shown, and how often the item the user took was in the top 10).
``judge`` compares the canary's tally with the stable version's under a ``CanaryGate``; the
I/O that acts on the judgement lives in ``serving.rollout``.

Example:
    >>> gate = CanaryGate(min_feedback=100, min_ratio=0.8)
    >>> judge(gate, Tally(200, 100), Tally(150, 30))[0]
    <Judgement.ROLLBACK: 'rollback'>
    >>> in_canary("u42", 0.0), in_canary("u42", 1.0)
    (False, True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "CanaryGate",
    "Judgement",
    "Tally",
    "canary_fraction",
    "in_canary",
    "judge",
    "routing_key",
]

_BITS = 53  # a double holds 53 bits exactly, so the fraction never rounds up to 1.0


def canary_fraction(key: str) -> float:
    """Where ``key`` falls in [0, 1): the top 53 bits of its 8-byte BLAKE2b digest.

    Example:
        >>> 0.0 <= canary_fraction("u1") < 1.0
        True
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> (64 - _BITS)) / (1 << _BITS)


def in_canary(key: str, share: float) -> bool:
    """Whether ``key`` is answered by the canary when it takes ``share`` of the traffic.

    Stable across replicas and processes (never Python's salted ``hash()``); raising the
    share only adds keys to the canary, it never moves one back.

    Example:
        >>> in_canary("u1", 0.5) == in_canary("u1", 0.5)
        True
    """
    return canary_fraction(key) < share


def routing_key(user_id: str | None, history: Sequence[str] | None) -> str:
    """The key a request is routed by: its user_id, else its history joined by ``\\x1f``.

    Example:
        >>> routing_key(None, ["i1", "i2"])
        'i1\\x1fi2'
    """
    return user_id if user_id is not None else "\x1f".join(history or ())


@dataclass(frozen=True)
class Tally:
    """Online feedback on one version: answers ``shown`` and ``hits`` (taken item in top 10).

    Example:
        >>> (Tally(3, 1) + Tally(1, 1)).hr
        0.5
    """

    shown: int = 0
    hits: int = 0

    @property
    def hr(self) -> float | None:
        """HR@10 online: hits / shown, or None before any feedback."""
        return self.hits / self.shown if self.shown else None

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.shown + other.shown, self.hits + other.hits)

    def __str__(self) -> str:
        hr = "n/a" if self.hr is None else f"{self.hr:.3f}"
        return f"HR@10 {hr} ({self.hits}/{self.shown})"


@dataclass(frozen=True)
class CanaryGate:
    """When a canary is judged: enough feedback per arm, and how good it must be.

    ``min_ratio``: the canary's HR@10 must be at least ``min_ratio`` x the stable one's.
    ``promote_after``: feedback on the canary after which a healthy canary is promoted
    (None: never automatically; the rollout ends undecided at its timeout).

    Example:
        >>> CanaryGate(min_feedback=50, min_ratio=0.9, promote_after=500).min_ratio
        0.9
    """

    min_feedback: int = 200
    min_ratio: float = 0.8
    promote_after: int | None = None

    def __post_init__(self) -> None:
        if self.min_feedback < 1:
            raise ValueError(f"min_feedback: expected >= 1, found {self.min_feedback}")
        if not self.min_ratio > 0.0:
            raise ValueError(f"min_ratio: expected > 0, found {self.min_ratio}")
        if self.promote_after is not None and self.promote_after < self.min_feedback:
            raise ValueError(f"promote_after: expected >= min_feedback ({self.min_feedback}) "
                             f"or None, found {self.promote_after}")


class Judgement(Enum):
    """What to do with the canary now."""

    WAIT = "wait"
    ROLLBACK = "rollback"
    PROMOTE = "promote"


def judge(gate: CanaryGate, stable: Tally, canary: Tally) -> tuple[Judgement, str]:
    """The judgement on a canary and why, with the numbers.

    Example:
        >>> judge(CanaryGate(min_feedback=10), Tally(5, 2), Tally(40, 1))[0]
        <Judgement.WAIT: 'wait'>
    """
    if stable.shown < gate.min_feedback or canary.shown < gate.min_feedback:
        return Judgement.WAIT, (f"waiting for {gate.min_feedback} feedback per arm: "
                                f"stable {stable.shown}, canary {canary.shown}")
    assert stable.hr is not None and canary.hr is not None
    floor = gate.min_ratio * stable.hr
    versus = f"canary {canary} vs {gate.min_ratio:g} x stable {stable} = {floor:.3f}"
    if canary.hr < floor:
        return Judgement.ROLLBACK, f"canary below the gate: {versus}"
    if gate.promote_after is not None and canary.shown >= gate.promote_after:
        return Judgement.PROMOTE, (f"canary healthy after {canary.shown} >= "
                                   f"{gate.promote_after} feedback: {versus}")
    return Judgement.WAIT, f"canary healthy so far: {versus}"
