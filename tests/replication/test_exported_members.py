from __future__ import annotations

import replication


def test_all_is_pinned() -> None:
    assert set(replication.__all__) == {
        "AuditChainBroken",
        "Candidate",
        "ClusterConfig",
        "ConfigError",
        "Fleet",
        "FsspecStore",
        "IntegrityError",
        "Inventory",
        "KeyMissingError",
        "KeySpec",
        "Keyring",
        "LocalFleet",
        "MemoryStore",
        "NoPrimaryCandidate",
        "NotFound",
        "Primary",
        "QuorumNotReached",
        "RayFleet",
        "ReplicationCluster",
        "ReplicationError",
        "Store",
        "StoreError",
        "StoreUnavailable",
        "SyncPlan",
        "VersionError",
        "VersionStore",
        "checkout",
        "choose_primary",
        "generate_key_file",
        "node_store_path",
        "open_store",
        "plan_gc",
        "plan_repair",
        "plan_sync",
    }
    for name in replication.__all__:
        assert getattr(replication, name).__module__.startswith("replication")


def test_every_error_derives_from_the_root() -> None:
    from replication import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ReplicationError)
