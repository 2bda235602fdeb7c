"""Shared helpers: put an artifact into a store as a committed version.

``flip_byte`` ships in ``replication.testing``; it is re-exported here until every test
imports it from there.
"""

from __future__ import annotations

from pathlib import Path

from replication.keys import Keyring
from replication.repo import Ref, VersionStore
from replication.store import open_store
from replication.sync import upload_artifact
from replication.testing import flip_byte

__all__ = ["committed_store", "flip_byte"]


def committed_store(
    url: str | Path,
    keyring: Keyring,
    artifact: Path,
    public_key: Path,
    *,
    seq: int = 1,
    node: str = "node-test",
) -> VersionStore:
    vs = VersionStore(open_store(url), keyring, node=node)
    vs.init()
    record = upload_artifact(artifact, vs, public_key, now=0.0)
    ref = Ref(record.version, seq, "2026-11-29T00:00:00Z")
    vs.mark_committed(ref)
    vs.flip_current(ref)
    return vs
