"""Apply plans between two ``VersionStore``s: copy versions, refetch blobs, back up, restore.

Blobs travel as stored (sealed envelopes stay sealed) and are verified on arrival.

Example:
    >>> copy_versions(primary, node_store, ["v1"])  # doctest: +SKIP
    SyncPlan(node='node-ab', versions=('v1',), fetch=(...), drop=())
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from replication.errors import IntegrityError, VersionError
from replication.plan import GcPlan, SyncPlan, plan_catch_up, plan_sync
from replication.repo import VersionRecord, VersionStore, check_version_name

__all__ = [
    "apply_gc",
    "apply_sync",
    "catch_up",
    "copy_refs",
    "copy_versions",
    "reseal_store",
    "upload_artifact",
]


def apply_sync(plan: SyncPlan, source: VersionStore, target: VersionStore) -> int:
    """Execute a SyncPlan; returns the number of stored bytes copied."""
    for digest in plan.drop:
        target.delete_blob(digest)
    counted: list[int] = []

    def _count(chunks: Iterable[bytes]) -> Iterable[bytes]:
        for chunk in chunks:
            counted.append(len(chunk))
            yield chunk

    for digest in plan.fetch:
        target.put_stored(digest, _count(source.iter_stored(digest)))
    copied = sum(counted)
    committed = source.committed()
    for version in plan.versions:
        target.put_record(source.get_record(version))
        if version in committed:
            target.mark_committed(committed[version])
    return copied


def copy_versions(source: VersionStore, target: VersionStore, versions: Iterable[str]) -> SyncPlan:
    """Copy ``versions`` (records, blobs, commit markers) that ``target`` lacks."""
    plan = plan_sync(source.inventory(), target.inventory(), versions)
    apply_sync(plan, source, target)
    return plan


def catch_up(source: VersionStore, target: VersionStore) -> SyncPlan:
    """Copy every committed version of ``source`` that ``target`` lacks, then mirror its refs."""
    plan = plan_catch_up(source.inventory(), target.inventory())
    apply_sync(plan, source, target)
    copy_refs(source, target)
    return plan


def copy_refs(source: VersionStore, target: VersionStore) -> None:
    """Mirror refs/current and refs/previous (only to versions the target holds)."""
    held = set(target.list_versions())
    for name in ("previous", "current"):
        ref = source.get_ref(name)
        if ref is not None and ref.version in held:
            target.set_ref(name, ref)


def apply_gc(plan: GcPlan, store: VersionStore) -> None:
    """Delete the plan's uncommitted records, then its unreferenced blobs."""
    for version in plan.records:
        store.delete_record(version)
    for digest in plan.blobs:
        store.delete_blob(digest)


def upload_artifact(
    directory: Path, target: VersionStore, public_key_path: str | os.PathLike[str], *, now: float
) -> VersionRecord:
    """Verify a signed artifact directory, then store its files and an uncommitted record.

    The version name comes from the signed manifest. Raises IntegrityError when the directory
    does not verify (nothing is uploaded then), VersionError when the version is already
    committed in ``target``.
    """
    from export.errors import ArtifactVerificationError
    from export.verify import verify_artifact

    try:
        manifest = verify_artifact(directory, public_key_path)
    except ArtifactVerificationError as exc:
        raise IntegrityError(
            f"refusing to publish: {exc}", version=None, path=exc.path, node="local"
        ) from exc
    version = check_version_name(manifest.version)
    if version in target.committed():
        raise VersionError(
            f"version {version} is already committed in {target.store.url}; versions are "
            "immutable: export under a new version name"
        )
    names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    files = tuple(target.put_file(directory / name, name) for name in names)
    record = VersionRecord(version, files, target.keyring.active_id, now, manifest.parent)
    target.put_record(record)
    return record


def reseal_store(store: VersionStore) -> int:
    """Key rotation for one store: re-encrypt blobs not sealed with the active key, one at a
    time (each an atomic replace, so readers holding both keys never fail), then record the
    new key id in every version record. Returns the number of blobs rewritten."""
    rewritten = sum(1 for digest in sorted(store.list_blobs()) if store.reseal_blob(digest))
    for version in store.list_versions():
        record = store.get_record(version)
        if record.key_id != store.keyring.active_id:
            store.put_record(dataclasses.replace(record, key_id=store.keyring.active_id))
    return rewritten
