"""Pure quorum and failover decisions: commit after W acks, choose the next primary, lag.

Example:
    >>> acks = [Ack("n1", True), Ack("n2", False, "dead"), Ack("n3", True)]
    >>> quorum_reached(acks, w=2)
    True
    >>> choose_primary([Candidate("n1", {"v1": 1}), Candidate("n2", {"v1": 1, "v2": 2})])
    'n2'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from replication.errors import ConfigError, NoPrimaryCandidate

__all__ = ["Ack", "Candidate", "choose_primary", "lag", "next_seq", "quorum_reached", "validate_w"]


@dataclass(frozen=True)
class Ack:
    """One node's answer to prepare or commit."""

    node: str
    ok: bool
    detail: str = ""


def validate_w(w: int, live_nodes: int) -> None:
    """Reject W values that can never be met."""
    if w < 1:
        raise ConfigError(f"W must be at least 1, found {w}")
    if w > live_nodes:
        raise ConfigError(
            f"W={w} verified copies requested but only {live_nodes} live node(s) with a "
            "replicator; lower --w or add nodes"
        )


def quorum_reached(acks: Iterable[Ack], w: int) -> bool:
    """True when at least ``w`` distinct nodes acknowledged."""
    return len({a.node for a in acks if a.ok}) >= w


def next_seq(committed: Iterable[int]) -> int:
    """The commit sequence number for the next commit."""
    return max(committed, default=0) + 1


@dataclass(frozen=True)
class Candidate:
    """A standby that could become primary: its complete, verified committed versions."""

    node: str
    committed: Mapping[str, int] = field(default_factory=dict)
    alive: bool = True


def choose_primary(candidates: Sequence[Candidate]) -> str:
    """Pick the live standby holding the newest committed version.

    Deterministic: ties go to the one holding more committed versions, then to the smallest
    node name, so every driver that sees the same state picks the same node.
    """
    live = [c for c in candidates if c.alive and c.committed]
    if not live:
        raise NoPrimaryCandidate(
            f"no live standby holds a complete committed version (candidates: "
            f"{sorted(c.node for c in candidates) or 'none'}); restore from a backup with "
            "`python -m replication restore URL`"
        )
    best = min(live, key=lambda c: (-max(c.committed.values()), -len(c.committed), c.node))
    return best.node


def lag(primary: Mapping[str, int], node: Mapping[str, int]) -> int:
    """How many of the primary's committed versions the node does not hold."""
    return sum(1 for v, seq in primary.items() if node.get(v) != seq)
