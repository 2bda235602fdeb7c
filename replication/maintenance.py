"""Maintenance operations over a cluster driver: repair, backup, restore, gc, key rotation.

Each one decides with a pure planner (``plan_repair``, ``plan_gc``), then acts, then audits.
They take a ``ClusterDriver``, the part of the driver they use: its typed node calls
(``fleet``), live nodes, keyring, primary resolution and ``write_override``.
``ReplicationCluster`` is one (and calls these from its methods); this module never imports it.

Example:
    >>> report = repair(rc)  # doctest: +SKIP
    >>> report["healed"]  # doctest: +SKIP
    [{'node': 'node-1a2b3c4d5e6f', 'digest': '9f...', 'source': 'primary'}]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol

from replication.checkout import materialise
from replication.config import ClusterConfig, Primary
from replication.errors import ConfigError, NoPrimaryCandidate
from replication.keys import Keyring, KeySpec
from replication.nodeops import NodeCalls
from replication.plan import plan_gc, plan_repair
from replication.replicator import actor_name
from replication.repo import VersionStore
from replication.store import open_store
from replication.sync import apply_gc, copy_refs, copy_versions, reseal_store
from security.audit import AuditLog, Clock

__all__ = ["ClusterDriver", "backup", "gc", "repair", "restore", "rotate_key"]


class ClusterDriver(Protocol):
    """What maintenance needs from a cluster driver (``ReplicationCluster`` implements it)."""

    keyring: Keyring  # replaced by rotate_key

    @property
    def config(self) -> ClusterConfig: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def fleet(self) -> NodeCalls: ...

    @property
    def nodes(self) -> list[str]: ...

    def discover(self) -> list[str]: ...

    def resolve_primary(self) -> Primary: ...

    def vs_of(self, primary: Primary) -> VersionStore: ...

    def node_vs(self, name: str) -> VersionStore: ...

    def catch_up(self) -> dict[str, Any]: ...

    def write_override(self, node: str | None, reason: str) -> None: ...


def repair(rc: ClusterDriver) -> dict[str, Any]:
    """Anti-entropy: verify every blob everywhere, refetch missing/corrupt ones from a healthy
    peer, let lagging nodes catch up, then re-verify every committed version on every node."""
    rc.discover()
    primary = rc.resolve_primary()
    pvs = rc.vs_of(primary)
    invs = {
        n: i for n, i in rc.fleet.inventory(rc.nodes, True).items() if not isinstance(i, Exception)
    }
    if primary.kind == "store":
        invs["primary"] = pvs.inventory(deep=True)
    steps, stuck = plan_repair(list(invs.values()), prefer=[primary.name])
    healed: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    for step in steps:
        source = (
            ("store", rc.config.primary_url)
            if step.source == "primary" and primary.kind == "store"
            else ("peer", actor_name(step.source))
        )
        if step.node == "primary":
            src = rc.node_vs(step.source)
            if step.drop:
                pvs.delete_blob(step.digest)
            pvs.put_stored(step.digest, src.iter_stored(step.digest))
            ok, detail = True, ""
        else:
            ack = rc.fleet.refetch([step.node], step.digest, source, step.drop)[step.node]
            ok, detail = (False, str(ack)) if isinstance(ack, Exception) else (ack.ok, ack.detail)
        entry = {"node": step.node, "digest": step.digest, "source": step.source}
        (healed if ok else failed).append({**entry, **({"error": detail} if not ok else {})})
    caught_up = rc.catch_up()
    verified = {
        n: r if isinstance(r, dict) else str(r)
        for n, r in rc.fleet.verify_versions(rc.nodes).items()
    }
    report = {
        "healed": healed,
        "failed": failed,
        "unrepairable": [{"node": n, "digest": d} for n, d in stuck],
        "caught_up": caught_up,
        "verified": verified,
    }
    rc.audit.append(
        rc.config.actor,
        "repair",
        role=rc.config.role,
        details={"healed": healed, "failed": failed, "unrepairable": report["unrepairable"]},
    )
    return report


def _verify_all(vs: VersionStore, public_key_path: str) -> None:
    with tempfile.TemporaryDirectory(prefix="recdrill-verify-") as scratch:
        for version in vs.committed():
            materialise(vs, version, Path(scratch), public_key_path)


def backup(rc: ClusterDriver, url: str) -> dict[str, Any]:
    """Copy every committed version (records, sealed blobs, markers, refs) to ``url``, verified."""
    pvs = rc.vs_of(rc.resolve_primary())
    bvs = VersionStore(open_store(url), rc.keyring, node=f"backup {url}")
    bvs.init()
    versions = sorted(pvs.committed(), key=lambda v: pvs.committed()[v].seq)
    plan = copy_versions(pvs, bvs, versions)
    copy_refs(pvs, bvs)
    _verify_all(bvs, rc.config.public_key_path)
    rc.audit.append(
        rc.config.actor,
        "backup",
        role=rc.config.role,
        target=url,
        details={"url": url, "versions": versions, "blobs_copied": len(plan.fetch)},
    )
    return {"url": url, "versions": versions, "blobs_copied": len(plan.fetch)}


def restore(rc: ClusterDriver, url: str) -> dict[str, Any]:
    """Rebuild the configured primary store from a backup, make it primary again, catch up nodes."""
    bvs = VersionStore(open_store(url), rc.keyring, node=f"backup {url}")
    bvs.check()
    _verify_all(bvs, rc.config.public_key_path)
    rc.discover()
    try:  # a promoted standby may hold versions committed after the backup: keep them too
        live = rc.resolve_primary()
    except NoPrimaryCandidate:
        live = None
    pvs = VersionStore(open_store(rc.config.primary_url), rc.keyring, node="primary")
    pvs.init()
    versions = sorted(bvs.committed(), key=lambda v: bvs.committed()[v].seq)
    plan = copy_versions(bvs, pvs, versions)
    copy_refs(bvs, pvs)
    if live is not None and live.kind == "node":
        lvs = rc.vs_of(live)
        newer = sorted(set(lvs.committed()) - set(versions), key=lambda v: lvs.committed()[v].seq)
        copy_versions(lvs, pvs, newer)
        copy_refs(lvs, pvs)
        versions += newer
    rc.write_override(None, f"restored from {url}")
    caught_up = rc.catch_up()
    rc.audit.append(
        rc.config.actor,
        "restore",
        role=rc.config.role,
        target=url,
        details={"url": url, "versions": versions, "blobs_copied": len(plan.fetch)},
    )
    return {
        "url": url,
        "versions": versions,
        "blobs_copied": len(plan.fetch),
        "caught_up": caught_up,
    }


def gc(rc: ClusterDriver, *, grace_s: float = 3600.0) -> dict[str, Any]:
    """Remove uncommitted records older than ``grace_s`` and unreferenced blobs, everywhere.
    Committed versions are never collected."""
    rc.discover()
    primary = rc.resolve_primary()
    now = rc.clock.now()
    out: dict[str, Any] = {}
    if primary.kind == "store":
        pvs = rc.vs_of(primary)
        plan = plan_gc(pvs.inventory(), now=now, grace_s=grace_s)
        apply_gc(plan, pvs)
        out["primary"] = {"records": list(plan.records), "blobs": len(plan.blobs)}
    for name, done in rc.fleet.gc(rc.nodes, now, grace_s).items():
        out[name] = (
            {"records": list(done.records), "blobs": len(done.blobs)}
            if not isinstance(done, Exception)
            else f"{type(done).__name__}: {done}"
        )
    rc.audit.append(rc.config.actor, "gc", role=rc.config.role,
                    details={"grace_s": grace_s, "stores": out})
    return out


def rotate_key(rc: ClusterDriver, key_spec: KeySpec) -> dict[str, Any]:
    """Re-encrypt every blob with ``key_spec``'s active key, store by store, blob by blob, while
    readers keep working: every process first loads the new keyring (new key active, old keys
    still decrypting), then blobs are resealed in place with atomic replaces."""
    rc.discover()
    primary = rc.resolve_primary()
    new_ring = key_spec.load()
    if not new_ring.encrypting:
        raise ConfigError(
            "rotate-key needs an active key: pass --new-store-key NEW (and the old keys with --store-key)"
        )
    rc.fleet.set_keys(rc.nodes, key_spec)
    rc.keyring = new_ring
    out: dict[str, Any] = {}
    if primary.kind == "store":
        out["primary"] = reseal_store(rc.vs_of(primary))
    for name, n in rc.fleet.reseal(rc.nodes).items():
        out[name] = n if isinstance(n, int) else f"{type(n).__name__}: {n}"
    rc.audit.append(
        rc.config.actor, "rotate-key", role=rc.config.role, target=new_ring.active_id,
        details={"key_id": new_ring.active_id, "resealed": out},
    )
    return {"key_id": new_ring.active_id, "resealed": out}
