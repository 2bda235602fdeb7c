"""The driver protocol (publish, failover, rollback, repair, gc, backup, rotation) over
in-process replicators (``LocalFleet``): no Ray."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import flip_byte

from replication.checkout import checkout
from replication.cluster import ClusterConfig, ReplicationCluster
from replication.errors import IntegrityError, QuorumNotReached, VersionError
from replication.fleet import LocalFleet
from replication.keys import KeySpec, generate_key_file
from replication.sync import upload_artifact
from replication.testing import make_keys
from security.audit import FixedClock
from security.errors import AuditChainBroken


@pytest.fixture
def rc(tmp_path: Path, key_spec: KeySpec, signing_keys) -> ReplicationCluster:  # type: ignore[no-untyped-def]
    fleet = LocalFleet.create(tmp_path / "nodes", ["n1", "n2", "n3"], key_spec, signing_keys.public)
    config = ClusterConfig(
        primary_url=str(tmp_path / "primary"),
        node_root=str(tmp_path / "nodes"),
        public_key_path=str(signing_keys.public),
        audit_path=str(tmp_path / "audit.jsonl"),
        key_spec=key_spec,
        w=2,
        actor="test@host",
    )
    return ReplicationCluster(config, fleet=fleet, clock=FixedClock(1_800_000_000.0))


def _fleet(rc: ReplicationCluster) -> LocalFleet:
    assert isinstance(rc.fleet, LocalFleet)
    return rc.fleet


def _load(rc: ReplicationCluster, node: str, tmp_path: Path, version: str | None = None) -> str:
    got, path = checkout(
        _fleet(rc).replicators[node].store_url,
        version,
        public_key_path=rc.config.public_key_path,
        key_provider=rc.config.key_spec,
        cache_dir=tmp_path / "reader" / node,
        node=node,
    )
    assert (path / "model.onnx").is_file()
    return got


def test_publish_commits_after_w_verified_copies(rc, artifact, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = rc.publish(artifact("v1"))
    assert result["seq"] == 1 and result["committed_on"] == ["n1", "n2", "n3"]
    assert result["lag"] == {"n1": 0, "n2": 0, "n3": 0}
    assert [_load(rc, n, tmp_path) for n in ("n1", "n2", "n3")] == ["v1"] * 3
    assert [e.action for e in rc.audit.entries()] == ["init", "publish"]


def test_fewer_than_w_verified_copies_commits_nothing(rc, artifact, tmp_path, key_spec) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    stranger = make_keys(tmp_path / "stranger")
    for name in ("n2", "n3"):  # these nodes trust another signing key: their copies never verify
        _fleet(rc).add(name, tmp_path / "nodes" / name / "store", key_spec, stranger.public)
    with pytest.raises(QuorumNotReached, match="expected 2 verified copies, got 1"):
        rc.publish(artifact("v2"))
    for name, rep in _fleet(rc).replicators.items():
        assert rep.vs.list_versions() == ["v1"], name  # cleanly absent: no record anywhere
    assert rc.list_versions()["versions"][-1]["version"] == "v1"
    assert rc._store_vs().list_versions() == ["v1"]
    assert rc.audit.entries()[-1].action == "publish-aborted"


def test_dead_node_during_publish_then_catches_up(rc, artifact, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    _fleet(rc).kill("n3")
    result = rc.publish(artifact("v2"))
    assert result["committed_on"] == ["n1", "n2"]
    _fleet(rc).down.discard("n3")
    assert rc.lag()["n3"] == 1
    assert rc.catch_up()["n3"]["versions"] == ["v2"]
    assert rc.lag()["n3"] == 0 and _load(rc, "n3", tmp_path) == "v2"


def test_primary_loss_promotes_the_newest_standby_and_publish_continues(
    rc, artifact, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    _fleet(rc).kill("n1")
    rc.publish(artifact("v2"))  # n1 misses v2
    _fleet(rc).down.discard("n1")
    shutil.rmtree(tmp_path / "primary")
    result = rc.publish(artifact("v3"))
    assert result["primary"] == "n2"  # newest committed (v2); n1 lacks it; tie n2/n3 -> n2
    listing = rc.list_versions()
    assert [v["version"] for v in listing["versions"]] == ["v1", "v2", "v3"]
    assert listing["primary"] == "n2" and listing["current"] == "v3"
    assert [e.action for e in rc.audit.entries()][-2:] == ["promote", "publish"]
    rc.catch_up()
    assert {_load(rc, n, tmp_path) for n in ("n1", "n2", "n3")} == {"v3"}


def test_rollback_to_previous_and_to_any_committed(rc, artifact, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for v in ("v1", "v2", "v3"):
        rc.publish(artifact(v))
    assert rc.rollback()["current"] == "v2"
    assert _load(rc, "n2", tmp_path) == "v2"
    assert rc.rollback("v1")["current"] == "v1"
    with pytest.raises(VersionError, match="not committed"):
        rc.rollback("v9")


def test_corrupt_blob_is_rejected_then_repaired_from_a_peer(rc, artifact, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    rep = _fleet(rc).replicators["n2"]
    digest = next(f.sha256 for f in rep.vs.get_record("v1").files if f.path == "model.onnx")
    flip_byte(Path(rep.store_url) / "blobs" / "sha256" / digest, 40)
    with pytest.raises(IntegrityError) as info:
        _load(rc, "n2", tmp_path)
    assert (info.value.version, info.value.path, info.value.node) == ("v1", "model.onnx", "n2")
    report = rc.repair()
    assert report["healed"] == [{"node": "n2", "digest": digest, "source": "primary"}]
    assert report["verified"]["n2"] == {"v1": "ok"}
    assert _load(rc, "n2", tmp_path) == "v1"


def test_gc_collects_leftovers_but_never_committed_versions(rc, artifact, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    pvs = rc._store_vs()
    upload_artifact(artifact("v2"), pvs, rc.config.public_key_path, now=0.0)  # a crashed publish
    report = rc.gc(grace_s=0)
    assert (
        report["primary"]["records"] == ["v2"] and report["primary"]["blobs"] == 4
    )  # all but the shared fallback
    assert pvs.list_versions() == ["v1"] and _load(rc, "n1", tmp_path) == "v1"
    assert rc.repair()["unrepairable"] == []


def test_backup_and_restore(rc, artifact, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    rc.publish(artifact("v2"))
    assert rc.backup(str(tmp_path / "backup"))["versions"] == ["v1", "v2"]
    shutil.rmtree(tmp_path / "primary")
    rc.nodes = []
    restored = rc.restore(str(tmp_path / "backup"))
    assert restored["versions"] == ["v1", "v2"]
    assert rc.resolve_primary().kind == "store"
    assert rc.list_versions()["current"] == "v2"


def test_key_rotation_reencrypts_everything_online(rc, artifact, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    old = rc.config.key_spec.files[0]
    new = str(tmp_path / "keys" / "new.key")
    new_id = generate_key_file(new)
    result = rc.rotate_key(KeySpec(files=(new, old), env_var=None))
    assert result["key_id"] == new_id and result["resealed"]["primary"] == 5
    only_new = KeySpec(files=(new,), env_var=None)
    for rep in _fleet(rc).replicators.values():
        assert {rep.vs.blob_key_id(d) for d in rep.vs.list_blobs()} == {new_id}
        assert rep.vs.get_record("v1").key_id == new_id
        got, _ = checkout(
            rep.store_url,
            public_key_path=rc.config.public_key_path,
            key_provider=only_new,
            cache_dir=tmp_path / "after" / rep.node,
        )
        assert got == "v1"


def test_audit_chain_after_operations_and_after_an_edit(rc, artifact) -> None:  # type: ignore[no-untyped-def]
    rc.publish(artifact("v1"))
    rc.publish(artifact("v2"))
    rc.rollback()
    rc.repair()
    rc.audit.verify()
    last = {e.action: e for e in rc.audit.entries()}
    assert (last["publish"].role, last["publish"].target) == ("operator", "v2")
    assert (last["rollback"].role, last["rollback"].target) == ("operator", "v1")
    text = rc.audit.path.read_text().replace('"rollback"', '"publish"', 1)
    rc.audit.path.write_text(text)
    with pytest.raises(AuditChainBroken):
        rc.audit.verify()
