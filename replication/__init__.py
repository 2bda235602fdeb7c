"""Replication stage: signed artifacts synced to hot standbys on every Ray node.

A store is content-addressed (``blobs/sha256/<hex>``, ``manifests/<version>.json``,
``refs/current``, ``refs/previous``, ``refs/committed/<version>``) over fsspec: a plain path or
``file://`` here, ``s3://``/``gs://`` with the matching fsspec package. Blobs are AES-256-GCM
sealed when a key is configured (key files or ``$RECDRILL_STORE_KEYS``, never the repo); every
read checks sha256, and a checkout checks the artifact signature before returning a path.

Serving's entry point, ``checkout``: a verified directory of the current (or a given) version
from this node's local store::

    from replication import KeySpec, checkout, node_store_path

    version, path = checkout(
        node_store_path(),                       # this Ray node's store
        public_key_path="keys/signing.pub",      # artifact signing public key
        key_provider=KeySpec(files=("keys/store.key",)),
    )
    session = onnxruntime.InferenceSession(str(path / "model.onnx"))

It raises ``IntegrityError`` (naming version, file and node) rather than return anything that
fails verification, so a caller can keep serving its old version.

Cluster operations (``python -m replication --help`` for the CLI)::

    rc = ReplicationCluster(ClusterConfig(primary_url=..., node_root=..., public_key_path=...,
                                          audit_path=..., key_spec=KeySpec(files=(...,)), w=2))
    rc.publish("artifacts/v7"); rc.rollback(); rc.repair(); rc.backup("s3://backup/x")
"""

from __future__ import annotations

from replication.checkout import checkout, node_store_path
from replication.cluster import ClusterConfig, Primary, ReplicationCluster
from replication.errors import (
    AuditChainBroken,
    ConfigError,
    IntegrityError,
    KeyMissingError,
    NoPrimaryCandidate,
    NotFound,
    QuorumNotReached,
    ReplicationError,
    StoreError,
    StoreUnavailable,
    VersionError,
)
from replication.fleet import Fleet, LocalFleet, RayFleet
from replication.keys import Keyring, KeySpec, generate_key_file
from replication.plan import Inventory, SyncPlan, plan_gc, plan_repair, plan_sync
from replication.quorum import Candidate, choose_primary
from replication.repo import VersionStore
from replication.store import FsspecStore, MemoryStore, Store, open_store

__all__ = [
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
]
