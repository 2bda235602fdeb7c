"""Cross-region replication: the committed versions of one region's primary store kept in
another region's, asynchronously (a background shipper with lag gauges) or synchronously (a
promotion waits for the standby region: RPO 0), and back again on failback. What one round
copies and verifies is ``replication.ship``.

Example:
    >>> with RegionReplicator(primary_vs, standby_vs, "keys/signing.pub").start() as rr:  # doctest: +SKIP
    ...     rr.notify()                    # after a local commit (or wait for the next poll)
    ...     rr.promote_everywhere("v8")    # sync: current in the source only once the standby holds it
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from replication.errors import (
    QuorumNotReached,
    ReplicationError,
    StoreError,
)
from replication.repo import Ref, VersionStore
from replication.ship import REF_NAMES, ShipReport, replication_lag, ship
from security.audit import AuditLog, Clock, SystemClock

__all__ = [
    "LAG_METRICS",
    "RegionLag",
    "RegionReplicator",
]

log = logging.getLogger(__name__)


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
            self._audit.append(self._actor, action, role="operator",
                               target=version or self.label, version=version, details=details)

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

