"""Shared helpers: put an artifact into a store as a committed version."""

from __future__ import annotations

from pathlib import Path

from replication.keys import Keyring
from replication.repo import Ref, VersionStore
from replication.store import open_store
from replication.sync import upload_artifact


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


def flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
