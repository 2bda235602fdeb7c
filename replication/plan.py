"""Pure planning over store inventories: what to sync, repair and collect. No I/O here.

Decide, then do: ``plan_sync()`` / ``plan_repair()`` / ``plan_gc()`` return frozen plans that
``replication.sync`` applies to real stores.

Example:
    >>> src = Inventory("primary", {"v1": VersionInfo("v1", frozenset({"a", "b"}), seq=1)},
    ...                 blobs=frozenset({"a", "b"}))
    >>> dst = Inventory("node-1", {}, blobs=frozenset({"a"}))
    >>> plan_sync(src, dst, ["v1"])
    SyncPlan(node='node-1', versions=('v1',), fetch=('b',), drop=())
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from replication.errors import VersionError

__all__ = [
    "GcPlan",
    "Inventory",
    "RepairStep",
    "SyncPlan",
    "VersionInfo",
    "plan_catch_up",
    "plan_gc",
    "plan_repair",
    "plan_sync",
]


@dataclass(frozen=True)
class VersionInfo:
    """A version record held by a store: its blob digests and commit sequence (None = uncommitted)."""

    version: str
    digests: frozenset[str]
    seq: int | None = None
    prepared_at: float = 0.0


@dataclass(frozen=True)
class Inventory:
    """What one store holds. ``corrupt`` lists blobs present but failing verification."""

    node: str
    versions: Mapping[str, VersionInfo]
    blobs: frozenset[str] = frozenset()
    corrupt: frozenset[str] = frozenset()
    current: str | None = None

    @property
    def healthy_blobs(self) -> frozenset[str]:
        return self.blobs - self.corrupt

    def committed(self) -> dict[str, int]:
        """Committed versions and their sequence numbers."""
        return {v: i.seq for v, i in self.versions.items() if i.seq is not None}

    def complete(self, version: str) -> bool:
        """True when the record and every blob of ``version`` are present and healthy."""
        info = self.versions.get(version)
        return info is not None and info.digests <= self.healthy_blobs

    def newest_committed(self) -> int:
        """Highest commit sequence held completely (0 when none)."""
        return max((s for v, s in self.committed().items() if self.complete(v)), default=0)


@dataclass(frozen=True)
class SyncPlan:
    """Bring ``node`` up to date: copy these version records and fetch these blobs."""

    node: str
    versions: tuple[str, ...] = ()
    fetch: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.versions or self.fetch or self.drop)


def plan_sync(source: Inventory, target: Inventory, versions: Iterable[str]) -> SyncPlan:
    """Plan copying ``versions`` from ``source`` to ``target``: only what target lacks.

    Raises VersionError when a wanted version is not complete on the source.
    """
    wanted = list(dict.fromkeys(versions))
    fetch: dict[str, None] = {}
    for version in wanted:
        if not source.complete(version):
            raise VersionError(
                f"cannot sync {version} from {source.node}: the source does not hold a complete, "
                "healthy copy; run `repair` or choose another source"
            )
        for digest in sorted(source.versions[version].digests):
            if digest not in target.healthy_blobs:
                fetch[digest] = None
    need_record = tuple(
        v
        for v in wanted
        if v not in target.versions or target.versions[v].seq != source.versions[v].seq
    )
    drop = tuple(sorted(d for d in fetch if d in target.corrupt))
    return SyncPlan(target.node, need_record, tuple(fetch), drop)


def plan_catch_up(primary: Inventory, target: Inventory) -> SyncPlan:
    """Plan syncing every committed version of ``primary`` that ``target`` lacks or holds stale."""
    committed = sorted(primary.committed().items(), key=lambda kv: kv[1])
    wanted = [
        v
        for v, seq in committed
        if primary.complete(v) and not (target.complete(v) and target.versions[v].seq == seq)
    ]
    return plan_sync(primary, target, wanted)


@dataclass(frozen=True)
class RepairStep:
    """Refetch ``digest`` on ``node`` from ``source``; ``drop`` first when the copy is corrupt."""

    node: str
    digest: str
    source: str
    drop: bool


def plan_repair(
    inventories: Sequence[Inventory], prefer: Sequence[str] = ()
) -> tuple[tuple[RepairStep, ...], tuple[tuple[str, str], ...]]:
    """Anti-entropy: every blob a node's records need but lacks (or holds corrupt) is refetched
    from a healthy peer; peers in ``prefer`` are tried first, then by name.

    Returns (steps, unrepairable (node, digest) pairs).
    """
    order = {name: i for i, name in enumerate(prefer)}
    peers = sorted(inventories, key=lambda inv: (order.get(inv.node, len(order)), inv.node))
    steps: list[RepairStep] = []
    stuck: list[tuple[str, str]] = []
    for inv in sorted(inventories, key=lambda i: i.node):
        needed = set().union(*(i.digests for i in inv.versions.values())) if inv.versions else set()
        for digest in sorted(needed - inv.healthy_blobs):
            source = next(
                (p.node for p in peers if p.node != inv.node and digest in p.healthy_blobs), None
            )
            if source is None:
                stuck.append((inv.node, digest))
            else:
                steps.append(RepairStep(inv.node, digest, source, drop=digest in inv.corrupt))
    return tuple(steps), tuple(stuck)


@dataclass(frozen=True)
class GcPlan:
    """Delete these uncommitted version records, then these unreferenced blobs."""

    records: tuple[str, ...] = ()
    blobs: tuple[str, ...] = ()
    kept_versions: frozenset[str] = field(default_factory=frozenset)


def plan_gc(inv: Inventory, *, now: float, grace_s: float) -> GcPlan:
    """Collect uncommitted records older than ``grace_s`` and blobs no kept record references.

    A committed version's record and blobs are never collected.
    """
    drop = tuple(
        sorted(
            v
            for v, info in inv.versions.items()
            if info.seq is None and now - info.prepared_at >= grace_s
        )
    )
    kept = {v: i for v, i in inv.versions.items() if v not in drop}
    referenced = set().union(*(i.digests for i in kept.values())) if kept else set()
    return GcPlan(drop, tuple(sorted(inv.blobs - referenced)), frozenset(kept))
