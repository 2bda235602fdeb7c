"""Cross-region replication between two real file stores: signed artifacts, AES-GCM sealed
blobs, verification in the target, async lag and its gauges, sync promotion, failback, and
crash consistency at every write. No Ray."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import committed_store
from prometheus_client import REGISTRY, CollectorRegistry

from replication.checkout import checkout
from replication.cluster import ClusterConfig, ReplicationCluster
from replication.errors import (
    IntegrityError,
    KeyMissingError,
    QuorumNotReached,
    StoreError,
    VersionError,
)
from replication.fleet import LocalFleet
from replication.keys import Keyring, KeySpec
from replication.plan import Inventory, VersionInfo
from replication.quorum import next_seq
from replication.region import RegionLag, RegionReplicator
from replication.repo import Ref, VersionStore
from replication.ship import StoreView, plan_ship, replication_lag, ship
from replication.store import MemoryStore, Store, open_store
from replication.sync import upload_artifact
from replication.testing import flip_byte, make_keys, wait_until
from security.audit import AuditLog, FixedClock

Artifact = Callable[..., Path]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _store(url: str | Path | Store, ring: Keyring, node: str) -> VersionStore:
    store = url if isinstance(url, Store) else open_store(url)
    vs = VersionStore(store, ring, node=node)
    vs.init()
    return vs


def _publish(vs: VersionStore, art: Path, pub: Path, *, current: bool = True) -> Ref:
    """Upload and commit the way a publish does (after its W acks), optionally flip current."""
    record = upload_artifact(art, vs, pub, now=time.time())
    ref = Ref(record.version, next_seq(r.seq for r in vs.committed().values()), _iso(time.time()))
    vs.mark_committed(ref)
    if current:
        vs.flip_current(ref)
    return ref


def _blob(vs: VersionStore, version: str, path: str = "model.onnx") -> Path:
    root = vs.store.local_path()
    assert root is not None
    digest = next(f.sha256 for f in vs.get_record(version).files if f.path == path)
    return root / "blobs" / "sha256" / digest


def _current(vs: VersionStore) -> str | None:
    ref = vs.get_ref("current")
    return ref.version if ref else None


def _assert_consistent(vs: VersionStore, pub: Path, scratch: Path) -> None:
    """Every committed version materialises verified; refs only name committed versions."""
    committed = vs.committed()
    for version in committed:
        checkout(vs.store.url, version, public_key_path=pub, key_provider=vs.keyring,
                 cache_dir=scratch)
    for name in ("current", "previous"):
        ref = vs.get_ref(name)
        assert ref is None or ref.version in committed, (name, ref)


@pytest.fixture
def ring(key_spec: KeySpec) -> Keyring:
    return key_spec.load()


@pytest.fixture
def eu(tmp_path: Path, ring: Keyring, artifact: Artifact, signing_keys) -> VersionStore:  # type: ignore[no-untyped-def]
    """The primary region's store, holding v1 committed and current."""
    return committed_store(tmp_path / "eu", ring, artifact("v1"), signing_keys.public, node="eu")


@pytest.fixture
def us(tmp_path: Path, ring: Keyring) -> VersionStore:
    """The standby region's (empty) primary store."""
    return _store(tmp_path / "us", ring, "us")


# -- ship -----------------------------------------------------------------------------------

def test_ship_copies_verifies_and_mirrors_refs(eu, us, artifact, signing_keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _publish(eu, artifact("v2"), signing_keys.public)
    report = ship(eu, us, public_key_path=signing_keys.public)
    assert report.versions == ("v1", "v2") and report.refs == ("previous", "current")
    assert report.bytes > 4096 and report.seconds > 0
    assert {v: r.seq for v, r in us.committed().items()} == {"v1": 1, "v2": 2}
    assert (_current(us), us.get_ref("previous").version) == ("v2", "v1")  # type: ignore[union-attr]
    assert _blob(us, "v2").read_bytes() == _blob(eu, "v2").read_bytes()  # travelled sealed
    clear = (tmp_path / "artifacts/v2/model.onnx").read_bytes()
    assert clear not in [p.read_bytes() for p in _blob(us, "v2").parent.iterdir()]  # sealed at rest
    _assert_consistent(us, signing_keys.public, tmp_path / "reader")


def test_shared_blobs_are_not_sent_again_and_a_second_ship_is_a_no_op(
    eu, us, artifact, signing_keys
) -> None:  # type: ignore[no-untyped-def]
    ship(eu, us, public_key_path=signing_keys.public)
    _publish(eu, artifact("v2"), signing_keys.public)
    new = eu.get_record("v2").digests - eu.get_record("v1").digests  # fallback.npz is shared
    report = ship(eu, us, public_key_path=signing_keys.public)
    assert report.versions == ("v2",) and report.blobs == len(new) < len(eu.get_record("v2").files)
    again = ship(eu, us, public_key_path=signing_keys.public)
    assert (again.versions, again.blobs, again.bytes, again.refs) == ((), 0, 0, ())
    assert again.held == ("v1", "v2")


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "aes-gcm"])
def test_a_blob_tampered_in_transit_is_refused_and_nothing_is_committed(
    tmp_path, artifact, signing_keys, ring, encrypted
) -> None:  # type: ignore[no-untyped-def]
    keys = ring if encrypted else Keyring()
    eu = committed_store(tmp_path / "eu", keys, artifact("v1"), signing_keys.public, node="eu")
    us = _store(tmp_path / "us", keys, "us")
    ship(eu, us, public_key_path=signing_keys.public)
    _publish(eu, artifact("v2"), signing_keys.public)
    flip_byte(_blob(eu, "v2"), offset=40)
    with pytest.raises(IntegrityError) as info:
        ship(eu, us, public_key_path=signing_keys.public)
    assert info.value.node == "us"
    assert set(us.committed()) == {"v1"} and _current(us) == "v1"
    assert _blob(eu, "v2").name not in us.list_blobs()  # the bad copy was removed
    _assert_consistent(us, signing_keys.public, tmp_path / "reader")


def test_a_foreign_signature_is_refused_in_the_target(eu, us, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = make_keys(tmp_path / "other-signer")
    with pytest.raises(IntegrityError, match="key-mismatch"):
        ship(eu, us, public_key_path=other.public)
    assert us.committed() == {} and _current(us) is None


def test_a_target_without_the_store_key_refuses(eu, tmp_path, signing_keys) -> None:  # type: ignore[no-untyped-def]
    us = _store(tmp_path / "us", Keyring.from_keys([b"\x02" * 32]), "us")
    with pytest.raises(KeyMissingError):
        ship(eu, us, public_key_path=signing_keys.public)
    assert us.committed() == {}


def test_a_corrupt_blob_already_in_the_target_is_replaced(eu, us, artifact, signing_keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ship(eu, us, public_key_path=signing_keys.public)
    flip_byte(_blob(us, "v1", "fallback.npz"))  # shared with v2: planned as already there
    _publish(eu, artifact("v2"), signing_keys.public)
    report = ship(eu, us, public_key_path=signing_keys.public)
    assert report.versions == ("v2",)
    _assert_consistent(us, signing_keys.public, tmp_path / "reader")


class DyingStore:
    """A store that dies (every call raises) at its ``die_at``-th write: a crash mid-ship."""

    def __init__(self, inner: Store, die_at: int | None) -> None:
        self.inner, self.url, self.die_at, self.writes = inner, inner.url, die_at, 0

    def _write(self) -> None:
        self._alive()
        self.writes += 1
        if self.writes == self.die_at:
            raise StoreError(f"crash at write {self.writes}")

    def _alive(self) -> None:
        if self.die_at is not None and self.writes >= self.die_at:
            raise StoreError("store gone")

    def read_bytes(self, key: str) -> bytes:
        self._alive()
        return self.inner.read_bytes(key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        self._alive()
        return self.inner.read_range(key, start, length)

    def iter_chunks(self, key: str, chunk_bytes: int = 1 << 22) -> Iterator[bytes]:
        self._alive()
        return self.inner.iter_chunks(key, chunk_bytes)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._write()
        self.inner.write_bytes(key, data)

    def write_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        self._write()
        self.inner.write_chunks(key, chunks)

    def exists(self, key: str) -> bool:
        self._alive()
        return self.inner.exists(key)

    def size(self, key: str) -> int:
        self._alive()
        return self.inner.size(key)

    def list(self, prefix: str) -> list[str]:
        self._alive()
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._write()
        self.inner.delete(key)

    def local_path(self) -> Path | None:
        return self.inner.local_path()


def test_a_crash_at_any_write_leaves_the_target_consistent_and_a_retry_completes(
    eu, artifact, signing_keys, ring, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _publish(eu, artifact("v2"), signing_keys.public)
    counting = DyingStore(open_store(tmp_path / "count"), None)
    ship(eu, _store(counting, ring, "count"), public_key_path=signing_keys.public)
    assert counting.writes > 10  # store.json, blobs, records, markers, refs: 16 today
    for die_at in range(1, counting.writes + 1):
        url = tmp_path / f"us-{die_at}"
        dying = VersionStore(DyingStore(open_store(url), die_at), ring, node="us")
        with pytest.raises(StoreError):
            ship(eu, dying, public_key_path=signing_keys.public)
        us = VersionStore(open_store(url), ring, node="us")
        _assert_consistent(us, signing_keys.public, tmp_path / f"reader-{die_at}")
        ship(eu, us, public_key_path=signing_keys.public)
        assert set(us.committed()) == {"v1", "v2"} and _current(us) == "v2", die_at
        _assert_consistent(us, signing_keys.public, tmp_path / f"reader-{die_at}")


def test_a_diverged_target_is_not_overwritten(eu, us, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    ship(eu, us, public_key_path=signing_keys.public)
    _publish(us, artifact("v9"), signing_keys.public)  # the standby was promoted and published
    _publish(eu, artifact("v2"), signing_keys.public)
    with pytest.raises(VersionError, match="v9"):
        ship(eu, us, public_key_path=signing_keys.public)
    assert _current(us) == "v9" and "v2" not in us.committed()


# -- the pure plan ----------------------------------------------------------------------------

def _view(node: str, versions: dict[str, tuple[int, frozenset[str]]], current: str | None = None,
          blobs: frozenset[str] | None = None) -> StoreView:
    infos = {v: VersionInfo(v, d, s) for v, (s, d) in versions.items()}
    held = blobs if blobs is not None else frozenset().union(*(d for _, d in versions.values()))
    committed = {v: Ref(v, s, "2026-11-29T00:00:00Z") for v, (s, _) in versions.items()}
    refs = {"current": committed[current]} if current else {}
    return StoreView(Inventory(node, infos, held, current=current), committed, refs)


def test_plan_renumbers_a_seq_the_target_already_uses() -> None:
    src = _view("us", {"v1": (1, frozenset("a")), "v4": (2, frozenset("ab"))}, current="v4")
    dst = _view("eu", {"v1": (1, frozenset("a")), "v3": (2, frozenset("c"))}, current="v3")
    plan = plan_ship(src, dst, allow_diverged=True)
    assert [(s.ref.version, s.ref.seq, s.fetch) for s in plan.steps] == [("v4", 3, ("b",))]
    assert plan.refs == (("current", Ref("v4", 3, "2026-11-29T00:00:00Z")),)
    assert (plan.held, plan.diverged) == (("v1",), ("v3",))


def test_plan_refuses_a_version_with_other_contents() -> None:
    src = _view("eu", {"v1": (1, frozenset("a"))})
    with pytest.raises(VersionError, match="immutable"):
        plan_ship(src, _view("us", {"v1": (1, frozenset("b"))}))


def test_plan_refuses_an_uncommitted_or_incomplete_version() -> None:
    src = _view("eu", {"v1": (1, frozenset("ab"))}, blobs=frozenset("a"))
    with pytest.raises(VersionError, match="not committed"):
        plan_ship(src, _view("us", {}), ["v2"])
    with pytest.raises(VersionError, match="complete"):
        plan_ship(src, _view("us", {}))


def test_lag_is_zero_when_nothing_is_behind_and_ignores_unparsable_stamps() -> None:
    assert replication_lag({"v1": Ref("v1", 1, "x")}, ["v1"], now=5.0) == (0, 0.0)
    assert replication_lag({"v1": Ref("v1", 1, "x")}, [], now=5.0) == (1, 0.0)


# -- the replicator ---------------------------------------------------------------------------

def _gauge(registry: CollectorRegistry, name: str, target: str) -> float | None:
    return registry.get_sample_value(f"recdrill_region_replication_{name}", {"target": target})


def test_async_lag_goes_to_zero_and_the_gauge_says_so(eu, us, artifact, signing_keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    audit = AuditLog(tmp_path / "audit.jsonl")
    rr = RegionReplicator(eu, us, signing_keys.public, interval_s=0.2, label="us",
                          registry=registry, audit=audit)
    assert rr.lag().versions_behind == 1
    with rr.start():
        wait_until(lambda: rr.lag().versions_behind == 0 and _current(us) == "v1", 10.0, 0.05,
                   what="v1 in the standby")
        _publish(eu, artifact("v2"), signing_keys.public)  # no notify(): the poll finds it
        wait_until(lambda: _current(us) == "v2", 10.0, 0.05, what="v2 current in the standby")
        lag = rr.lag()
        assert lag.last_shipped == "v2"
        assert (lag.versions_behind, lag.seconds_behind, lag.last_error) == (0, 0.0, None)
        wait_until(lambda: _gauge(registry, "lag_versions", "us") == 0.0, 5.0, 0.05,
                   what="the gauge")
        assert _gauge(registry, "lag_seconds", "us") == 0.0
        assert _gauge(registry, "last_success_timestamp_seconds", "us") > 0  # type: ignore[operator]
    assert _gauge(registry, "lag_versions", "us") is None  # closed: its series are gone
    assert [e.action for e in audit.entries()] == ["region-ship", "region-ship"]
    audit.verify()


def test_notify_ships_without_waiting_for_the_poll(eu, us, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    with RegionReplicator(eu, us, signing_keys.public, interval_s=600.0,
                          registry=CollectorRegistry()).start() as rr:
        wait_until(lambda: _current(us) == "v1", 10.0, 0.02, what="the first round")
        _publish(eu, artifact("v2"), signing_keys.public)
        rr.notify()
        wait_until(lambda: _current(us) == "v2", 10.0, 0.02, what="v2 after notify()")


def test_lag_counts_seconds_from_the_oldest_unshipped_commit(eu, us, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    committed_at = datetime.fromisoformat(eu.committed()["v1"].at).timestamp()
    clock = FixedClock(committed_at + 30.0)
    rr = RegionReplicator(eu, us, signing_keys.public, registry=CollectorRegistry(), clock=clock)
    assert rr.lag() == RegionLag(1, 30.0, None, None)
    rr.poll_once()
    _publish(eu, artifact("v2"), signing_keys.public)
    clock.t = datetime.fromisoformat(eu.committed()["v2"].at).timestamp() + 2.5
    assert rr.lag() == RegionLag(1, 2.5, "v1", None)


def test_poll_records_a_failure_and_recovers(eu, ring, signing_keys) -> None:  # type: ignore[no-untyped-def]
    memory = MemoryStore("memory://standby-down")
    us = _store(memory, ring, "us")
    registry = CollectorRegistry()
    rr = RegionReplicator(eu, us, signing_keys.public, label="us", registry=registry)
    memory.set_unavailable(True)
    assert rr.poll_once() is None
    lag = rr.lag()
    assert lag.last_error is not None and "StoreUnavailable" in lag.last_error
    assert _gauge(registry, "last_success_timestamp_seconds", "us") is None
    memory.set_unavailable(False)
    assert rr.poll_once().versions == ("v1",)  # type: ignore[union-attr]
    assert rr.lag().last_error is None and _gauge(registry, "lag_versions", "us") == 0.0


def test_gauges_are_registered_once_per_registry(eu, us, signing_keys) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    a = RegionReplicator(eu, us, signing_keys.public, label="a", registry=registry)
    b = RegionReplicator(eu, us, signing_keys.public, label="b", registry=registry)
    g1 = RegionReplicator(eu, us, signing_keys.public, label="global-1")
    g2 = RegionReplicator(eu, us, signing_keys.public, label="global-2")
    for rr in (a, b, g1, g2):
        rr.poll_once()
    assert _gauge(registry, "lag_versions", "a") == _gauge(registry, "lag_versions", "b") == 0.0
    assert _gauge(REGISTRY, "lag_versions", "global-2") == 0.0  # type: ignore[arg-type]
    for rr in (a, b, g1, g2):
        rr.close()
    assert _gauge(REGISTRY, "lag_versions", "global-1") is None  # type: ignore[arg-type]


def test_promote_everywhere_flips_the_standby_first(eu, us, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    rr = RegionReplicator(eu, us, signing_keys.public, registry=CollectorRegistry())
    rr.poll_once()
    _publish(eu, artifact("v2"), signing_keys.public, current=False)  # committed, not serving
    seen: list[str | None] = []

    def make_current(ref: Ref) -> None:
        seen.append(_current(us))  # what the standby serves when the source flips
        eu.flip_current(ref)

    result = rr.promote_everywhere("v2", timeout_s=10.0, make_current=make_current)
    assert seen == ["v2"] and _current(eu) == _current(us) == "v2"
    assert result["shipped"]["versions"] == ("v2",)
    assert us.get_ref("previous").version == "v1"  # type: ignore[union-attr]


def test_ship_sync_times_out_and_nothing_is_made_current(eu, ring, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    memory = MemoryStore("memory://standby-lost")
    us = _store(memory, ring, "us")
    memory.set_unavailable(True)
    _publish(eu, artifact("v2"), signing_keys.public, current=False)
    rr = RegionReplicator(eu, us, signing_keys.public, registry=CollectorRegistry(), retry_s=0.05)
    started = time.monotonic()
    with pytest.raises(QuorumNotReached, match="within 0.3s"):
        rr.promote_everywhere("v2", timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 5.0
    assert _current(eu) == "v1"


def test_catch_up_ships_back_what_the_standby_published(eu, us, artifact, signing_keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rr = RegionReplicator(eu, us, signing_keys.public, registry=CollectorRegistry())
    rr.poll_once()
    _publish(eu, artifact("v3"), signing_keys.public)  # committed, then the region was lost
    _publish(us, artifact("v4"), signing_keys.public)  # the standby took over and published
    assert us.committed()["v4"].seq == eu.committed()["v3"].seq == 2
    assert rr.poll_once() is None  # the fence: the standby moved on, async shipping stops
    assert "holds committed versions the source" in (rr.lag().last_error or "")
    report = rr.catch_up()
    assert (report.versions, report.diverged, report.refs) == (("v4",), ("v3",), ("current",))
    assert _current(eu) == "v4" and eu.committed()["v4"].seq == 3  # renumbered: 2 is v3's
    _assert_consistent(eu, signing_keys.public, tmp_path / "reader-eu")
    assert rr.poll_once().versions == ("v3",)  # type: ignore[union-attr]
    assert set(us.committed()) == set(eu.committed()) == {"v1", "v3", "v4"}
    assert _current(us) == "v4" and rr.lag().versions_behind == 0


def test_a_cluster_publish_reaches_the_standby_region(tmp_path, key_spec, signing_keys, artifact, us) -> None:  # type: ignore[no-untyped-def]
    fleet = LocalFleet.create(tmp_path / "nodes", ["n1", "n2"], key_spec, signing_keys.public)
    config = ClusterConfig(primary_url=str(tmp_path / "eu"), node_root=str(tmp_path / "nodes"),
                           public_key_path=str(signing_keys.public),
                           audit_path=str(tmp_path / "audit.jsonl"), key_spec=key_spec, w=2,
                           actor="test@host")
    rc = ReplicationCluster(config, fleet=fleet)
    rc.publish(artifact("v1"))
    eu = rc.vs_of(rc.resolve_primary())
    rr = RegionReplicator(eu, us, signing_keys.public, registry=CollectorRegistry())
    assert rr.poll_once().versions == ("v1",)  # type: ignore[union-attr]
    rc.publish(artifact("v2"))
    rc.rollback("v1")
    rr.poll_once()
    assert _current(us) == "v1" and set(us.committed()) == {"v1", "v2"}
    rr.promote_everywhere("v2", make_current=lambda ref: rc.rollback(ref.version))
    assert _current(us) == "v2" and rc.list_versions()["current"] == "v2"
    assert {r.status()["current"] for r in fleet.replicators.values()} == {"v2"}
