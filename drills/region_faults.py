"""Region faults, on a ``drills.regions.TwoRegions``: lose a whole region, publish in a region,
bring a lost region back (failback). Each records its proof and the facts its SLOs judge.

- ``kill-region``: SIGKILL every process of the region at once. Facts: ``processes_killed``,
  ``rpo_versions`` / ``rpo_s`` (versions committed there that the other region did not hold
  at the moment of loss, and the age of the oldest), ``switch_s`` (until the global entry
  sends traffic to the other region), ``standby_serves_published`` (the other region serves
  the newest version the lost one had committed).
- ``publish-region``: make the region the writer (``/activate``) and publish a new signed
  version there. Facts: ``publish_s``, ``served_s`` (until the region serves it), ``shipped``
  (the peer holds it; false while the peer is down).
- ``restart-region``: start the region again; it first pulls what the other region committed
  meanwhile. Facts: ``restart_s``, ``caught_up_versions``, ``failback_s`` (until the global
  entry sends traffic back), ``versions_match`` (both serve the same version), then the
  writer role moves back to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import psutil

from drills.errors import FaultError
from drills.faults import FaultContext, FaultRecord, wait_until
from drills.regions import PRIMARY, STANDBY, TwoRegions
from drills.scenario import FAULT_KINDS, FaultSpec

__all__ = ["REGION_FAULTS"]

_OBSERVE_S = 120.0


def _regions(ctx: FaultContext) -> TwoRegions:
    if not isinstance(ctx.sud, TwoRegions):
        raise FaultError("a region fault needs a two-region drill (cluster.regions: 2)")
    return ctx.sud


def _other(name: str) -> str:
    return STANDBY if name == PRIMARY else PRIMARY


def _age_s(committed_at: str, at: float) -> float:
    """Seconds from an ISO commit time to ``at`` (epoch seconds)."""
    return max(0.0, at - datetime.fromisoformat(committed_at).timestamp())


def kill_region(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Region loss: every process of the region SIGKILLed at once; the other takes traffic."""
    sud = _regions(ctx)
    name = spec.mode or PRIMARY
    peer = _other(name)
    committed_here = sud.committed(name)
    refs = _committed_refs(sud, name)
    t0, wall = time.monotonic(), time.time()
    pids = sud.kill_region(name)
    rec.injected_at_s = ctx.now_s()
    rec.targets = [f"region {name}: {len(pids)} processes"]
    gone = wait_until(lambda: not any(psutil.pid_exists(p) and _alive(p) for p in pids), 10.0)
    rec.proof = {"pids": pids, "all_dead": bool(gone)}
    held_by_peer = set(sud.committed(peer))
    lost = [v for v in committed_here if v not in held_by_peer]
    rec.facts["processes_killed"] = len(pids)
    rec.facts["rpo_versions"] = len(lost)
    rec.facts["rpo_s"] = round(max((_age_s(refs[v], wall) for v in lost if v in refs),
                                   default=0.0), 3)
    rec.proof["lost_versions"] = lost
    switched = wait_until(lambda: sud.live_region() == peer, _OBSERVE_S, 0.1)
    rec.facts["switch_s"] = round(time.monotonic() - t0, 2) if switched else None
    newest = committed_here[-1] if committed_here else None
    serving = wait_until(lambda: sud.control(peer, "/status", timeout_s=5)[1].get("version")
                         == newest, 30.0, 0.2)
    rec.facts["standby_serves_published"] = bool(serving) and newest is not None
    rec.proof["newest_committed"] = newest
    ctx.log("info", f"region {name} lost ({len(pids)} processes); global entry on "
            f"{sud.live_region()}", {"lost_versions": lost})


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _committed_refs(sud: TwoRegions, name: str) -> dict[str, str]:
    """version -> committed_at of region ``name``'s store (from disk)."""
    from replication.keys import KeySpec
    from replication.repo import VersionStore
    from replication.store import open_store

    spec = sud.cfg.region(name)
    if not spec.store_dir.exists():
        return {}
    keyring = KeySpec(files=(str(sud.cfg.store_key),)).load()
    vs = VersionStore(open_store(str(spec.store_dir)), keyring, node=f"{name} (read)")
    return {v: r.at for v, r in vs.committed().items()}


def publish_region(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Make the region the writer and publish a new signed version there."""
    sud = _regions(ctx)
    name = spec.mode or PRIMARY
    if ctx.derive_version is None:
        raise FaultError("publish-region needs the signing key (--signing-key) to sign a "
                         "new version")
    artifact = ctx.derive_version(f"{name}-publish")
    rec.injected_at_s = ctx.now_s()
    status, body = sud.control(name, "/activate", {})
    if status != 200:
        raise FaultError(f"activate {name}: {status} {body}")
    t0 = time.monotonic()
    status, body = sud.control(name, "/publish", {"artifact": str(artifact)}, timeout_s=120)
    rec.facts["publish_s"] = round(time.monotonic() - t0, 2)
    if status != 200:
        rec.facts["published"] = False
        raise FaultError(f"publish in {name}: {status} {body.get('error', body)}")
    version = body["version"]
    rec.targets = [f"{version} in region {name}"]
    rec.facts["published"] = True
    served = wait_until(lambda: sud.control(name, "/status", timeout_s=5)[1].get("version")
                        == version, 60.0, 0.2)
    rec.facts["served_s"] = round(time.monotonic() - t0, 2) if served else None
    peer = _other(name)
    peer_up = sud.handles.get(peer) is not None and sud.handles[peer].alive
    shipped = peer_up and wait_until(lambda: version in sud.committed(peer), 30.0, 0.1)
    rec.facts["shipped"] = bool(shipped)
    rec.facts["peer_up"] = peer_up
    rec.proof = {"version": version, "mode": body.get("mode"), "committed_on":
                 body.get("committed_on")}
    where = f"shipped to {peer}" if shipped else f"not shipped ({peer} up: {peer_up})"
    ctx.log("info", f"published {version} in {name}, {where}", {})


def restart_region(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Failback: start the lost region again (it catches up first); traffic returns to it."""
    sud = _regions(ctx)
    name = spec.mode or PRIMARY
    peer = _other(name)
    rec.injected_at_s = ctx.now_s()
    t0 = time.monotonic()
    handle = sud.spawn(name, catch_up=True)
    rec.facts["restart_s"] = round(time.monotonic() - t0, 2)
    caught = handle.ready.get("caught_up") or {}
    rec.facts["caught_up_versions"] = len(caught.get("versions") or [])
    rec.targets = [f"region {name} (pid {handle.proc.pid})"]
    back = wait_until(lambda: sud.live_region() == name, _OBSERVE_S, 0.1)
    rec.facts["failback_s"] = round(time.monotonic() - t0, 2) if back else None
    here = handle.ready.get("version")
    there = sud.control(peer, "/status", timeout_s=5)[1].get("version")
    rec.facts["versions_match"] = here is not None and here == there
    for who, path in ((peer, "/deactivate"), (name, "/activate")):
        status, body = sud.control(who, path, {})
        if status != 200:
            raise FaultError(f"{path} {who}: {status} {body}")
    rec.proof = {"caught_up": caught, "serving": here, "peer_serving": there,
                 "writer": name}
    ctx.log("info", f"region {name} back on {here} (caught up {caught.get('versions')}); "
            f"global entry on {sud.live_region()}", {})


REGION_FAULTS: dict[str, Callable[[FaultContext, FaultSpec, FaultRecord], None]] = {
    "kill-region": kill_region,
    "publish-region": publish_region,
    "restart-region": restart_region,
}
assert set(REGION_FAULTS) == {k for k, v in FAULT_KINDS.items() if v == "region"}

