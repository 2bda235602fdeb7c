"""Ship committed versions from one version store to another (another region's), verified in
the target exactly as on a node before they count.

Decide, then do: ``plan_ship()`` (pure, over inventories and refs) → ``apply_ship()``. Per
version, in commit order: the sealed blobs the target lacks (content addressed, so blobs shared
with versions already there are not sent again; each checked on arrival, AES-GCM and sha256),
the version record (uncommitted), a full ``materialise`` in a scratch directory (every digest
and the artifact signature), and only then the commit marker. Refs move last, and only to
versions committed in the target. A crash anywhere leaves at most blobs and an uncommitted
record (``gc`` collects them, a retry finishes the job): never a commit marker without verified
blobs, never refs/current on an uncommitted version.

Keys: blobs travel sealed, so the target's keyring must hold the key ids the source sealed
with. Both regions load the same key files here; a real deployment gives each region its own
copy of the store keys (its own KMS or secret store), so losing a region loses no key, and
rotates them in both (``rotate-key``) before dropping an old one. Regions likewise each hold the
signing public key.

Seqs order commits within a store; across regions the identity of a version is its (immutable,
signed) name. A shipped commit keeps the source's seq unless the target already uses that seq
for another version (a failback after both regions committed), then it takes the next free one.

Example:
    >>> ship(primary_vs, standby_vs, public_key_path="keys/signing.pub")  # doctest: +SKIP
    ShipReport(source='s3://eu/recdrill', target='s3://us/recdrill', versions=('v7',), ...)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from replication.checkout import materialise
from replication.errors import (
    IntegrityError,
    VersionError,
)
from replication.plan import Inventory
from replication.repo import Ref, VersionStore

__all__ = [
    "REF_NAMES",
    "ShipPlan",
    "ShipReport",
    "ShipStep",
    "StoreView",
    "apply_ship",
    "plan_ship",
    "replication_lag",
    "ship",
    "view",
]

log = logging.getLogger(__name__)
REF_NAMES = ("previous", "current")  # set in this order: current moves last


# -- pure core --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreView:
    """What planning needs from one store: inventory, commit markers and refs."""

    inventory: Inventory
    committed: Mapping[str, Ref]
    refs: Mapping[str, Ref]


@dataclass(frozen=True)
class ShipStep:
    """Fetch ``fetch`` (blobs the target lacks), verify ``ref.version`` there, commit ``ref``."""

    ref: Ref
    fetch: tuple[str, ...]


@dataclass(frozen=True)
class ShipPlan:
    """Steps in commit order, then refs to set; ``held``: wanted versions already committed in
    the target; ``diverged``: committed in the target but not in the source."""

    steps: tuple[ShipStep, ...] = ()
    refs: tuple[tuple[str, Ref], ...] = ()
    held: tuple[str, ...] = ()
    diverged: tuple[str, ...] = ()


def plan_ship(
    source: StoreView,
    target: StoreView,
    versions: Iterable[str] | None = None,
    *,
    refs: bool = True,
    allow_diverged: bool = False,
) -> ShipPlan:
    """Plan shipping ``versions`` (default: every committed one) from ``source`` to ``target``.

    Raises VersionError when a version is not committed and complete in the source, when the
    target holds a version of that name with other contents, or (unless ``allow_diverged``)
    when the target committed versions the source lacks: it was published to on its own, and
    mirroring refs would move them backwards.

    Example:
        >>> empty = StoreView(Inventory("standby", {}), {}, {})
        >>> plan_ship(empty, empty)
        ShipPlan(steps=(), refs=(), held=(), diverged=())
    """
    src, dst = source.inventory, target.inventory
    diverged = tuple(sorted(set(target.committed) - set(source.committed)))
    if diverged and not allow_diverged:
        raise VersionError(
            f"target {dst.node} holds committed versions the source {src.node} lacks "
            f"({list(diverged)}): it was published to on its own (promoted?), and shipping would "
            "move its refs backwards; fail back with RegionReplicator.catch_up first"
        )
    if versions is None:
        wanted = list(source.committed)
    else:
        wanted = list(dict.fromkeys(versions))
        missing = [v for v in wanted if v not in source.committed]
        if missing:
            raise VersionError(
                f"cannot ship {missing} from {src.node}: not committed there (committed: "
                f"{sorted(source.committed)})"
            )
    wanted.sort(key=lambda v: (source.committed[v].seq, v))
    seqs = {ref.seq: v for v, ref in target.committed.items()}
    have = set(dst.healthy_blobs)
    final = dict(target.committed)
    steps, held = [], []
    for version in wanted:
        if not src.complete(version):
            raise VersionError(
                f"cannot ship {version} from {src.node}: the source does not hold a complete copy; "
                "run `python -m replication repair` there first"
            )
        digests = src.versions[version].digests
        info = dst.versions.get(version)
        if info is not None and info.digests != digests and version in target.committed:
            raise VersionError(
                f"{version} is committed in {dst.node} with other contents than in {src.node}: "
                "versions are immutable, resolve by hand (one of the two was not this artifact)"
            )
        if version in target.committed and dst.complete(version):
            held.append(version)
            continue
        ref = target.committed.get(version) or source.committed[version]
        if seqs.get(ref.seq, version) != version:
            ref = Ref(version, max(seqs) + 1, ref.at)
        seqs[ref.seq], final[version] = version, ref
        fetch = tuple(sorted(digests - have))
        have |= digests
        steps.append(ShipStep(ref, fetch))
    moves = []
    for name in REF_NAMES if refs else ():
        wanted_ref = source.refs.get(name)
        to = final.get(wanted_ref.version) if wanted_ref else None
        if to is not None and target.refs.get(name) != to:
            moves.append((name, to))
    return ShipPlan(tuple(steps), tuple(moves), tuple(held), diverged)


def replication_lag(
    source: Mapping[str, Ref], target: Iterable[str], now: float
) -> tuple[int, float]:
    """(versions committed in ``source`` but not in ``target``, age in seconds of the oldest).

    Example:
        >>> replication_lag({"v1": Ref("v1", 1, "1970-01-01T00:00:10Z")}, [], now=15.0)
        (1, 5.0)
    """
    held = set(target)
    behind = [ref for version, ref in source.items() if version not in held]
    stamps = [t for t in (_epoch(ref.at) for ref in behind) if t is not None]
    return len(behind), max(0.0, now - min(stamps)) if stamps else 0.0


def _epoch(at: str) -> float | None:
    try:
        return datetime.fromisoformat(at).timestamp()
    except ValueError:
        return None


# -- I/O --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShipReport:
    """What one ``ship`` did: versions committed in the target, blobs and stored bytes sent."""

    source: str
    target: str
    versions: tuple[str, ...]
    blobs: int
    bytes: int
    seconds: float
    refs: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    diverged: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def view(vs: VersionStore) -> StoreView:
    """Read what ``plan_ship`` needs from a store (records and markers; no blob bytes)."""
    refs = {name: ref for name in REF_NAMES if (ref := vs.get_ref(name)) is not None}
    return StoreView(vs.inventory(), vs.committed(), refs)


def apply_ship(
    plan: ShipPlan,
    source: VersionStore,
    target: VersionStore,
    public_key_path: str | Path,
    *,
    scratch_dir: str | Path | None = None,
) -> tuple[tuple[str, ...], int, int]:
    """Execute a ShipPlan; returns (versions committed, blobs sent, stored bytes sent)."""
    committed: list[str] = []
    blobs = sent = 0
    with tempfile.TemporaryDirectory(prefix="recdrill-ship-", dir=scratch_dir) as scratch:
        for step in plan.steps:
            for digest in step.fetch:
                sent += _copy_blob(source, target, digest)  # verified on arrival, else removed
            blobs += len(step.fetch)
            target.put_record(source.get_record(step.ref.version))
            healed = _verify(source, target, step.ref.version, Path(scratch), public_key_path)
            blobs, sent = blobs + len(healed), sent + sum(healed)
            target.mark_committed(step.ref)  # the commit point, after every check passed
            committed.append(step.ref.version)
        for name, ref in plan.refs:
            target.set_ref(name, ref)
    return tuple(committed), blobs, sent


def _copy_blob(source: VersionStore, target: VersionStore, digest: str) -> int:
    sizes: list[int] = []

    def counted() -> Iterable[bytes]:
        for chunk in source.iter_stored(digest):
            sizes.append(len(chunk))
            yield chunk

    target.put_stored(digest, counted())
    return sum(sizes)


def _verify(
    source: VersionStore, target: VersionStore, version: str, scratch: Path, public_key: str | Path
) -> list[int]:
    """Materialise ``version`` from the target (every digest, then the signature); a blob the
    target already held but that fails is replaced from the source, once. Returns the sizes
    of the blobs replaced."""
    healed: dict[str, int] = {}
    while True:
        try:
            artifact = materialise(target, version, scratch, public_key)
        except IntegrityError as exc:
            if exc.digest is None or exc.digest in healed:
                raise
            log.warning(
                "replacing %s in %s from %s: %s", exc.digest[:12], target.node, source.node, exc
            )
            target.delete_blob(exc.digest)
            healed[exc.digest] = _copy_blob(source, target, exc.digest)
            continue
        shutil.rmtree(artifact.path, ignore_errors=True)
        if artifact.version != version:
            raise IntegrityError(
                f"the signed manifest names version {artifact.version}, expected {version}: "
                "the record was renamed; re-publish the artifact under its own name",
                version=version,
                path="manifest.json",
                node=target.node,
            )
        return list(healed.values())


def ship(
    source: VersionStore,
    target: VersionStore,
    versions: Iterable[str] | None = None,
    *,
    public_key_path: str | Path,
    refs: bool = True,
    allow_diverged: bool = False,
    scratch_dir: str | Path | None = None,
) -> ShipReport:
    """Copy the committed ``versions`` (default: all) the target lacks, verify each there, commit
    it, then mirror refs/previous and refs/current (``refs``). Idempotent; safe to retry after
    any failure. Raises IntegrityError (nothing of that version committed) when a copy or the
    signature does not verify, VersionError as ``plan_ship`` does, StoreError on I/O failure.

    Example:
        >>> ship(primary_vs, standby_vs, public_key_path="keys/signing.pub").versions  # doctest: +SKIP
        ('v1', 'v2')
    """
    started = time.perf_counter()
    source.check()
    target.init()
    plan = plan_ship(view(source), view(target), versions, refs=refs, allow_diverged=allow_diverged)
    done, blobs, sent = apply_ship(plan, source, target, public_key_path, scratch_dir=scratch_dir)
    return ShipReport(
        source.store.url,
        target.store.url,
        done,
        blobs,
        sent,
        round(time.perf_counter() - started, 6),
        tuple(name for name, _ in plan.refs),
        plan.held,
        plan.diverged,
    )
