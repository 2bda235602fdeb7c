"""Cross-region replication: ship committed versions from one region's primary store to another
region's, verified there exactly as on nodes, asynchronously (a background shipper with lag
gauges) or synchronously (a promotion waits for the standby region: RPO 0).

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
    >>> with RegionReplicator(primary_vs, standby_vs, "keys/signing.pub").start() as rr:  # doctest: +SKIP
    ...     rr.notify()                    # after a local commit (or wait for the next poll)
    ...     rr.promote_everywhere("v8")    # sync: current in the source only once the standby holds it
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from replication.audit import AuditLog, Clock, SystemClock
from replication.checkout import materialise
from replication.errors import (
    IntegrityError,
    QuorumNotReached,
    ReplicationError,
    StoreError,
    VersionError,
)
from replication.plan import Inventory
from replication.repo import Ref, VersionStore

__all__ = [
    "LAG_METRICS",
    "RegionLag",
    "RegionReplicator",
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


# -- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Gauges:
    versions: Gauge
    seconds: Gauge
    last_success: Gauge

    def remove(self, target: str) -> None:
        for gauge in (self.versions, self.seconds, self.last_success):
            try:
                gauge.remove(target)
            except KeyError:
                pass


_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, _Gauges] = weakref.WeakKeyDictionary()
_GAUGES_LOCK = threading.Lock()


_FAMILIES = (
    ("lag_versions", "Committed versions the target region's store does not hold yet."),
    ("lag_seconds", "Age of the oldest commit not yet shipped to the target region (0: none)."),
    ("last_success_timestamp_seconds", "When the target was last found in sync or shipped to."),
)

#: The Prometheus gauges every replicator exports (label ``target``), for dashboards.
LAG_METRICS = tuple(f"recdrill_region_replication_{name}" for name, _ in _FAMILIES)


def _gauges(registry: CollectorRegistry) -> _Gauges:
    """One set of families per registry, shared by every replicator (one ``target`` label each):
    creating several replicators never registers a family twice."""
    with _GAUGES_LOCK:
        if registry not in _GAUGES:
            _GAUGES[registry] = _Gauges(
                *(
                    Gauge(
                        f"recdrill_region_replication_{name}", text, ["target"], registry=registry
                    )
                    for name, text in _FAMILIES
                )
            )
        return _GAUGES[registry]


# -- the replicator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionLag:
    """How far the target region is behind. ``last_shipped``: newest (by source seq) committed
    version both stores hold; ``last_error``: the latest failure, None once a round succeeds."""

    versions_behind: int
    seconds_behind: float
    last_shipped: str | None
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RegionReplicator:
    """Keeps a standby region's primary store up with this region's.

    Asynchronous: ``start()`` runs a thread that ships every ``interval_s`` or at once after
    ``notify()``; ``lag()`` and the ``recdrill_region_replication_*`` gauges (label ``target``)
    say how far behind the standby is. Synchronous: ``ship_sync`` and ``promote_everywhere``.
    Failback: ``catch_up`` ships the other way. One ship runs at a time. ``label`` (default:
    the target store's URL) is the gauges' ``target``: one replicator per label per registry.

    Example:
        >>> rr = RegionReplicator(eu, us, "keys/signing.pub", interval_s=0.2)  # doctest: +SKIP
        >>> rr.start(); rr.notify(); rr.lag().versions_behind  # doctest: +SKIP
        0
    """

    def __init__(
        self,
        source: VersionStore,
        target: VersionStore,
        public_key_path: str | Path,
        *,
        interval_s: float = 1.0,
        retry_s: float = 0.2,
        label: str | None = None,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
        actor: str = "region-replicator",
        scratch_dir: str | Path | None = None,
    ) -> None:
        self.source, self.target = source, target
        self.public_key_path = public_key_path
        self.interval_s, self.retry_s = interval_s, retry_s
        self.label = label or target.store.url
        self._gauges = _gauges(registry if registry is not None else REGISTRY)
        self._clock = clock or SystemClock()
        self._audit, self._actor = audit, actor
        self._scratch = scratch_dir
        self._lock = threading.RLock()  # one ship (or promotion) at a time
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._last_lag = RegionLag(0, 0.0, None, None)

    # -- asynchronous ------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the background shipper (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"region-replicator {self.label}", daemon=True
            )
            self._thread.start()
        return self

    def notify(self) -> None:
        """A local commit happened: ship now rather than at the next poll."""
        self._wake.set()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the shipper (a ship in flight finishes first, up to ``timeout_s``) and drop this
        target's gauge series."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "region replicator %s still shipping after %.1fs", self.label, timeout_s
                )
            self._thread = None
        self._gauges.remove(self.label)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def poll_once(self) -> ShipReport | None:
        """One asynchronous round: ship when the source has commits or refs the target lacks.
        Failures are recorded (``lag().last_error``), never raised."""
        report = None
        try:
            with self._lock:
                if not self._in_sync():
                    report = self._ship(None)
            self._last_error = None
        except (ReplicationError, OSError) as exc:
            self._failed(exc)
        self._update_gauges()
        return report

    def _in_sync(self) -> bool:
        src, dst = self.source.committed(), self.target.committed()
        return set(src) <= set(dst) and all(
            _version(self.source.get_ref(n)) == _version(self.target.get_ref(n)) for n in REF_NAMES
        )

    def lag(self) -> RegionLag:
        """Versions and seconds the target is behind, the last version both hold, the last
        error. When a store cannot be read, the last known figures with that error."""
        try:
            src, dst = self.source.committed(), self.target.committed()
        except (ReplicationError, OSError) as exc:
            return RegionLag(
                self._last_lag.versions_behind,
                self._last_lag.seconds_behind,
                self._last_lag.last_shipped,
                f"{type(exc).__name__}: {exc}",
            )
        behind, seconds = replication_lag(src, dst, self._clock.now())
        both = [ref for version, ref in src.items() if version in dst]
        newest = max(both, key=lambda r: r.seq).version if both else None
        self._last_lag = RegionLag(behind, round(seconds, 3), newest, self._last_error)
        return self._last_lag

    def _update_gauges(self) -> None:
        lag = self.lag()
        self._gauges.versions.labels(self.label).set(lag.versions_behind)
        self._gauges.seconds.labels(self.label).set(lag.seconds_behind)
        if lag.last_error is None:
            self._gauges.last_success.labels(self.label).set(self._clock.now())

    def _failed(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message != self._last_error:  # once per distinct error, not once per poll
            log.warning("shipping to %s failed: %s", self.label, message)
        self._last_error = message

    # -- shipping ----------------------------------------------------------------------------
    def _ship(
        self, versions: Iterable[str] | None, *, refs: bool = True, reverse: bool = False
    ) -> ShipReport:
        source, target = (self.target, self.source) if reverse else (self.source, self.target)
        report = ship(
            source,
            target,
            versions,
            public_key_path=self.public_key_path,
            refs=refs,
            allow_diverged=reverse,
            scratch_dir=self._scratch,
        )
        if report.versions or report.refs:
            log.info(
                "shipped %s (%d bytes, refs %s) to %s in %.2fs",
                list(report.versions),
                report.bytes,
                list(report.refs),
                report.target,
                report.seconds,
            )
            self._record("region-catch-up" if reverse else "region-ship", None, report.to_dict())
        return report

    def _record(self, action: str, version: str | None, details: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit.append(self._actor, action, version=version, details=details)

    def ship_sync(self, version: str, timeout_s: float = 60.0) -> ShipReport:
        """Return once the target holds ``version`` committed and verified. Store failures are
        retried every ``retry_s`` until ``timeout_s`` (checked between attempts; one attempt is
        not interrupted), then QuorumNotReached; integrity and version errors raise at once."""
        deadline = time.monotonic() + timeout_s
        self._acquire(version, timeout_s)
        try:
            while True:
                try:
                    report = self._ship([version], refs=False)
                    self._last_error = None
                    return report
                except StoreError as exc:  # unreachable or failing store: worth another try
                    self._failed(exc)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise QuorumNotReached(
                            f"{version}: the standby region {self.label} did not hold a verified "
                            f"copy within {timeout_s:g}s (last error: {exc}); nothing was made "
                            "current; check the standby store and retry"
                        ) from exc
                    time.sleep(min(self.retry_s, remaining))
                except ReplicationError as exc:
                    self._failed(exc)
                    raise
        finally:
            self._lock.release()
            self._update_gauges()

    def _acquire(self, version: str, timeout_s: float) -> None:
        if not self._lock.acquire(timeout=max(timeout_s, 0.0)):
            raise QuorumNotReached(
                f"{version}: another ship to {self.label} held the line for {timeout_s:g}s; "
                "nothing was made current; retry"
            )

    def promote_everywhere(
        self,
        version: str,
        *,
        timeout_s: float = 60.0,
        make_current: Callable[[Ref], object] | None = None,
    ) -> dict[str, Any]:
        """Make a committed ``version`` current in both regions, standby first: ship and verify
        it there (``ship_sync``), flip the standby's refs/current, then the source's (with
        ``make_current``, e.g. ``lambda ref: rc.rollback(ref.version)`` to move the nodes too;
        default ``source.flip_current``). The source never serves a version the standby lacks.
        """
        self._acquire(version, timeout_s)  # no async round may mirror the old refs in between
        try:
            report = self.ship_sync(version, timeout_s)
            self.target.flip_current(self.target.committed()[version])
            (make_current or self.source.flip_current)(self.source.committed()[version])
        finally:
            self._lock.release()
        result = {"version": version, "target": self.label, "shipped": report.to_dict()}
        self._record("region-promote", version, result)
        self._update_gauges()
        return result

    def catch_up(self) -> ShipReport:
        """Failback: ship the versions the target region committed while this one was away back
        here (target → source, verified here), then mirror its refs. Versions only this
        region committed (never shipped before it was lost) are kept, listed in ``diverged``;
        the next asynchronous round ships them to the target."""
        with self._lock:
            report = self._ship(None, reverse=True)
        self._update_gauges()
        return report


def _version(ref: Ref | None) -> str | None:
    return ref.version if ref is not None else None
