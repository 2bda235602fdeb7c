"""Driver API for replicated stores on a Ray cluster: one replicator per node, quorum publish,
failover, rollback, repair, backup/restore, gc and key rotation, each audited.

Example:
    >>> cfg = ClusterConfig(primary_url="s3://bucket/recdrill", node_root="/var/lib/recdrill",
    ...                     public_key_path="keys/signing.pub", audit_path="audit.jsonl")
    >>> rc = ReplicationCluster(cfg)  # doctest: +SKIP
    >>> rc.publish("artifacts/20261129T071500Z-3f2a9c")["committed_on"]  # doctest: +SKIP
    ['node-1a2b3c4d5e6f', 'node-7a8b9c0d1e2f', ...]
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replication import maintenance
from replication.config import ClusterConfig, Primary
from replication.errors import QuorumNotReached, StoreUnavailable, VersionError
from replication.fleet import Fleet, RayFleet
from replication.keys import KeySpec
from replication.nodeops import Results
from replication.quorum import (
    Ack,
    Candidate,
    choose_primary,
    lag,
    next_seq,
    quorum_reached,
    validate_w,
)
from replication.repo import Ref, VersionStore
from replication.store import open_store
from replication.sync import upload_artifact
from security.audit import AuditLog, Clock, SystemClock

__all__ = ["ClusterConfig", "Primary", "ReplicationCluster"]

log = logging.getLogger(__name__)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ReplicationCluster:
    """Operations over a fleet of replicators (default: the live Ray cluster; ``ray.init`` first)."""

    def __init__(
        self, config: ClusterConfig, *, fleet: Fleet | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.audit = AuditLog(Path(config.audit_path), self.clock)
        self.keyring = config.key_spec.load()
        self.fleet: Fleet = fleet or RayFleet(
            config.node_root,
            config.key_spec,
            str(config.public_key_path),
            detached=config.detached,
            timeout_s=config.call_timeout_s,
        )
        self.nodes: list[str] = []
        self.dead: set[str] = set()

    # -- nodes ---------------------------------------------------------------------------
    def discover(self) -> list[str]:
        """Start a replicator on every live node that lacks one; notice dead nodes."""
        before = set(self.nodes)
        self.nodes, self.dead = self.fleet.refresh()
        for name in sorted(before - set(self.nodes)):
            log.warning("node %s is gone; its replicator is dropped", name)
        return self.nodes

    def _acks(self, results: Results[Ack]) -> list[Ack]:
        return [
            r if isinstance(r, Ack) else Ack(n, False, f"{type(r).__name__}: {r}")
            for n, r in sorted(results.items())
        ]

    # -- primary -------------------------------------------------------------------------
    def _store_vs(self) -> VersionStore:
        return VersionStore(open_store(self.config.primary_url), self.keyring, node="primary")

    def vs_of(self, primary: Primary) -> VersionStore:
        """A driver-side view of the primary's (or any node's) store."""
        if primary.kind == "store":
            return self._store_vs()
        return VersionStore(self.fleet.store(primary.name), self.keyring, node=primary.name)

    def node_vs(self, name: str) -> VersionStore:
        return self.vs_of(Primary("node", name, name))

    def _override(self) -> dict[str, Any] | None:
        """The newest refs/primary written by a promotion, as held by live nodes."""
        found = []
        for raw in self.fleet.s_read_bytes(self.nodes, "refs/primary").values():
            if isinstance(raw, bytes):
                found.append(json.loads(raw))
        return max(found, key=lambda o: (o["epoch"], o["node"] or ""), default=None)

    def write_override(self, node: str | None, reason: str) -> None:
        """Record on every live node that ``node`` is the primary (``None``: the configured
        store again), one epoch above the newest record."""
        epoch = (self._override() or {"epoch": 0})["epoch"] + 1
        body = json.dumps(
            {"node": node, "epoch": epoch, "at": _iso(self.clock.now()), "reason": reason}
        )
        self.fleet.s_write_bytes(self.nodes, "refs/primary", body.encode())

    def resolve_primary(self) -> Primary:
        """The configured store if reachable and not overridden; else the promoted standby;
        else promote one now (``choose_primary``)."""
        if not self.nodes:
            self.discover()
        override = self._override()
        if override and override["node"]:
            if override["node"] in self.nodes:
                return Primary("node", override["node"], override["node"])
        else:
            try:
                self._store_vs().check()
                return Primary("store", "primary", self.config.primary_url)
            except StoreUnavailable as exc:
                if override is None and not any(c.committed for c in self.candidates()):
                    return self._init_store()  # a fresh deployment: nothing to fail over to
                log.warning("primary store unavailable: %s", exc)
        return self.promote(reason="primary unreachable")

    def _init_store(self) -> Primary:
        self._store_vs().init()
        url = self.config.primary_url
        self.audit.append(
            self.config.actor, "init", role=self.config.role, target=url, details={"store": url}
        )
        return Primary("store", "primary", self.config.primary_url)

    def candidates(self) -> list[Candidate]:
        """Every live node with the committed versions it holds completely."""
        out = []
        for name, inv in sorted(self.fleet.inventory(self.nodes, False).items()):
            if isinstance(inv, Exception):
                out.append(Candidate(name, {}, alive=False))
            else:
                out.append(
                    Candidate(name, {v: s for v, s in inv.committed().items() if inv.complete(v)})
                )
        return out

    def promote(self, node: str | None = None, *, reason: str = "operator") -> Primary:
        """Make a standby the primary (default: the one ``choose_primary`` picks); audited."""
        self.discover()
        chosen = node or choose_primary(self.candidates())
        if chosen not in self.nodes:
            raise VersionError(f"cannot promote {chosen}: not a live node ({self.nodes})")
        self.write_override(chosen, reason)
        primary = Primary("node", chosen, chosen)
        current = self.vs_of(primary).get_ref("current")
        self.audit.append(
            self.config.actor,
            "promote",
            role=self.config.role,
            target=current.version if current else None,
            version=current.version if current else None,
            details={"node": chosen, "reason": reason},
        )
        log.warning("promoted %s to primary (%s)", chosen, reason)
        return primary

    # -- publish ---------------------------------------------------------------------------
    def publish(self, directory: str | Path, *, w: int | None = None) -> dict[str, Any]:
        """Upload, prepare on every live node, commit after ``w`` verified copies (two phases)."""
        w = w or self.config.w
        self.discover()
        validate_w(w, len(self.nodes))
        primary = self.resolve_primary()
        pvs = self.vs_of(primary)
        record = upload_artifact(
            Path(directory), pvs, self.config.public_key_path, now=self.clock.now()
        )
        version = record.version
        digests = {f.path: f.sha256 for f in record.files}
        prepared = self._acks(self.fleet.prepare(self.nodes, primary.spec, version))
        if not quorum_reached(prepared, w):
            self.fleet.abort(self.nodes, version)
            if primary.kind == "store":
                pvs.delete_record(version)
            self.audit.append(
                self.config.actor,
                "publish-aborted",
                role=self.config.role,
                target=version,
                version=version,
                digests=digests,
                details={"w": w, "acks": {a.node: a.detail for a in prepared}},
            )
            got = sum(a.ok for a in prepared)
            raise QuorumNotReached(
                f"publish {version}: expected {w} verified copies, got {got} "
                f"({ {a.node: a.detail for a in prepared if not a.ok} }); nothing was committed"
            )
        ref = Ref(
            version, next_seq(r.seq for r in pvs.committed().values()), _iso(self.clock.now())
        )
        pvs.mark_committed(ref)  # the commit point
        pvs.flip_current(ref)
        ok_nodes = [a.node for a in prepared if a.ok]
        committed = self._acks(self.fleet.commit(ok_nodes, ref))
        result = {
            "version": version,
            "seq": ref.seq,
            "w": w,
            "primary": primary.name,
            "prepared": {a.node: a.detail for a in prepared if a.ok},
            "committed_on": [a.node for a in committed if a.ok],
            "failed": {a.node: a.detail for a in prepared + committed if not a.ok},
            "lag": self.lag(),
        }
        self.audit.append(
            self.config.actor,
            "publish",
            role=self.config.role,
            target=version,
            version=version,
            digests=digests,
            details={k: result[k] for k in ("seq", "w", "primary", "committed_on", "failed")},
        )
        return result

    # -- read-only views -------------------------------------------------------------------
    def lag(self) -> dict[str, int]:
        """Per node: how many of the primary's committed versions it lacks."""
        self.discover()
        primary = self.resolve_primary()
        want = {v: r.seq for v, r in self.vs_of(primary).committed().items()}
        out = {}
        for name, st in self.fleet.status(self.nodes).items():
            out[name] = -1 if isinstance(st, Exception) else lag(want, st["committed"])
        return out

    def list_versions(self) -> dict[str, Any]:
        """Committed versions on the primary, with refs and the nodes holding each."""
        primary = self.resolve_primary()
        pvs = self.vs_of(primary)
        current, previous = pvs.get_ref("current"), pvs.get_ref("previous")
        statuses = {n: s for n, s in self.fleet.status(self.nodes).items() if isinstance(s, dict)}
        versions = [
            {
                "version": v,
                "seq": r.seq,
                "committed_at": r.at,
                "nodes": sorted(n for n, s in statuses.items() if v in s["committed"]),
            }
            for v, r in sorted(pvs.committed().items(), key=lambda kv: kv[1].seq)
        ]
        return {
            "primary": primary.name,
            "current": current.version if current else None,
            "previous": previous.version if previous else None,
            "versions": versions,
        }

    def status(self) -> dict[str, Any]:
        """Per node: versions held, current, lag, last verification; plus dead nodes."""
        self.discover()
        primary = self.resolve_primary()
        want = {v: r.seq for v, r in self.vs_of(primary).committed().items()}
        nodes: dict[str, Any] = {}
        for name, st in self.fleet.status(self.nodes).items():
            if isinstance(st, Exception):
                nodes[name] = {"alive": False, "error": f"{type(st).__name__}: {st}"}
            else:
                nodes[name] = {"alive": True, "lag": lag(want, st["committed"]), **st}
        for name in sorted(self.dead):
            nodes.setdefault(name, {"alive": False, "error": "node dead (Ray)"})
        return {"primary": primary.name, "w": self.config.w, "nodes": nodes}

    # -- state changes ---------------------------------------------------------------------
    def rollback(self, version: str | None = None) -> dict[str, Any]:
        """Make refs/current point at ``version`` (default: refs/previous) everywhere."""
        primary = self.resolve_primary()
        pvs = self.vs_of(primary)
        committed = pvs.committed()
        if version is None:
            prev = pvs.get_ref("previous")
            if prev is None:
                raise VersionError(
                    "nothing to roll back to: refs/previous is empty; pass a version"
                )
            version = prev.version
        if version not in committed:
            raise VersionError(
                f"cannot roll back to {version}: not committed (committed: {sorted(committed)})"
            )
        ref = committed[version]
        pvs.flip_current(ref)
        acks = self._acks(self.fleet.set_current(self.nodes, ref))
        self.audit.append(
            self.config.actor,
            "rollback",
            role=self.config.role,
            target=version,
            version=version,
            details={"nodes": {a.node: a.ok for a in acks}},
        )
        return {"current": version, "nodes": {a.node: a.ok or a.detail for a in acks}}

    def catch_up(self) -> dict[str, Any]:
        """Bring every live standby up to the primary's committed versions and refs."""
        self.discover()
        primary = self.resolve_primary()
        others = [n for n in self.nodes if n != primary.name]
        results = self.fleet.catch_up(others, primary.spec)
        synced = {n: r for n, r in results.items() if isinstance(r, dict) and r["versions"]}
        if synced:
            self.audit.append(self.config.actor, "catch-up", role=self.config.role,
                              details={"nodes": synced})
        return {
            n: (r if isinstance(r, dict) else f"{type(r).__name__}: {r}")
            for n, r in results.items()
        }

    # -- maintenance (see replication.maintenance) -------------------------------------------
    def repair(self) -> dict[str, Any]:
        return maintenance.repair(self)

    def backup(self, url: str) -> dict[str, Any]:
        return maintenance.backup(self, url)

    def restore(self, url: str) -> dict[str, Any]:
        return maintenance.restore(self, url)

    def gc(self, *, grace_s: float = 3600.0) -> dict[str, Any]:
        return maintenance.gc(self, grace_s=grace_s)

    def rotate_key(self, key_spec: KeySpec) -> dict[str, Any]:
        return maintenance.rotate_key(self, key_spec)

    def watch(self, *, interval_s: float = 10.0, rounds: int | None = None) -> None:
        """Supervisor loop: discover new nodes, let them (and laggards) catch up; repeat."""
        done = 0
        while rounds is None or done < rounds:
            self.catch_up()
            done += 1
            if rounds is None or done < rounds:
                time.sleep(interval_s)
