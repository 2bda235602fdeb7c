"""Fault injectors, by name (``FAULTS``), each with recorded proof that it happened.

Every injector picks its targets (seeded), breaks them from outside, then observes the break
and the recovery from outside: a pid gone or stopped (psutil), a node marked dead by Ray, a
file's digest changed, a version refused over HTTP. What it saw goes into the fault's
``proof`` (with times in seconds from the load's start) and the numbers the SLOs judge into
its ``facts`` (``capacity_back_s``, ``refused_everywhere``, ``rpo_versions``...). What must be
undone is left on the context's :class:`Damage`, which the runner's rollbacks always undo.

Region faults (a whole region lost, a publish in a region, failback) are in
``drills.region_faults``, bad releases (bad-model, bad-search) in ``drills.release_faults``;
overload is planned into the load schedule instead.

Example:
    >>> sorted(set(FAULT_KINDS) - set(FAULTS))
    ['bad-model', 'bad-search', 'kill-region', 'overload', 'publish-region', 'restart-region']
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from drills.errors import FaultError
from drills.scenario import FAULT_KINDS, FaultSpec, TargetSpec
from drills.system import Replica, System
from serving.testing import poll_until

__all__ = ["FAULTS", "Damage", "FaultContext", "FaultRecord", "pick", "wait_until"]

T = TypeVar("T")
_OBSERVE_S = 90.0  # how long an injector watches for recovery before it records "not back"


@dataclass
class FaultRecord:
    """One injected fault as the journal keeps it."""

    name: str
    fault: str
    at_s: float
    end_s: float
    injected_at_s: float | None = None
    targets: list[str] = field(default_factory=list)
    proof: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Damage:
    """What the faults broke and the rollbacks must undo (thread-safe by a lock)."""

    stopped_pids: set[int] = field(default_factory=set)
    killed_nodes: list[str] = field(default_factory=list)
    touched_stores: list[str] = field(default_factory=list)
    lost_primary: Path | None = None
    stable_version: str | None = None
    pushed_version: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class FaultContext:
    """What an injector needs: the system, the load's clock, a seeded RNG, the damage log and
    an event sink ``log(kind, message, data)``."""

    sud: System
    start_mono: float
    rng: random.Random
    damage: Damage
    log: Callable[[str, str, dict[str, Any]], None]
    # a new signed copy of the served artifact: (tag, mutate) -> its directory
    derive_version: Callable[..., Path] | None = None

    def now_s(self) -> float:
        """Seconds since the load's start."""
        return round(time.monotonic() - self.start_mono, 3)


#: Poll until truthy; None on timeout (a drill records the None as its proof).
wait_until = poll_until


def pick(candidates: Sequence[T], target: TargetSpec, rng: random.Random) -> list[T]:
    """The targets a fault hits: ``blast_radius`` of ``candidates`` in ``select`` order.

    Example:
        >>> pick([1, 2, 3], TargetSpec(select="last"), random.Random(0))
        [3]
    """
    n = target.blast_radius.size(len(candidates))
    items = list(candidates)
    if target.select == "random":
        return rng.sample(items, n)
    return items[-n:] if target.select == "last" else items[:n]


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _all_dead(pids: Sequence[int]) -> bool:
    return all(_dead(p) for p in pids)


def _capacity_back(ctx: FaultContext, t0: float, timeout_s: float = _OBSERVE_S
                   ) -> float | None:
    """Seconds from ``t0`` (monotonic) until every replica is ready again (None: not back)."""
    want = ctx.sud.shape.replicas
    ok = wait_until(lambda: len(ctx.sud.ready_replicas()) >= want, timeout_s, 0.25)
    return round(time.monotonic() - t0, 2) if ok else None


# -- replicas ---------------------------------------------------------------------------------

def kill_replica(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """SIGKILL-equivalent ``ray.kill`` of replica actors; proof: pid gone, replacement ready."""
    import ray

    victims = pick(sorted(ctx.sud.replicas(), key=lambda r: r.rank), spec.target, ctx.rng)
    rec.targets = [f"replica rank {r.rank} pid {r.pid} on {r.node}" for r in victims]
    t0 = time.monotonic()
    rec.injected_at_s = ctx.now_s()
    for r in victims:
        ray.kill(ray.get_actor(r.actor, namespace="serve"), no_restart=True)
    gone = wait_until(lambda: _all_dead([r.pid for r in victims]), 15.0)
    rec.proof["pids_gone_after_s"] = round(time.monotonic() - t0, 3) if gone else None
    if not gone:
        raise FaultError(f"replica pids {[r.pid for r in victims]} still alive 15 s after "
                         "ray.kill")
    ranks = {r.rank: r.pid for r in victims}

    def replaced() -> bool:
        now = {r.rank: r.pid for r in ctx.sud.ready_replicas()}
        return all(rank in now and now[rank] != pid for rank, pid in ranks.items())

    back = wait_until(replaced, _OBSERVE_S, 0.25)
    rec.facts["capacity_back_s"] = round(time.monotonic() - t0, 2) if back else None
    rec.proof["replacements"] = {r.rank: r.pid for r in ctx.sud.replicas() if r.rank in ranks}


def _live_victims(ctx: FaultContext, spec: FaultSpec, tries: int = 3
                  ) -> tuple[list[Replica], list[psutil.Process]]:
    """Replicas to hit and their processes, picked among the ones alive now.

    The registry can still name a replica that died a moment ago (an earlier fault's victim,
    or one Serve replaced after a controller restart): picking it would stall nothing.
    """
    err: psutil.NoSuchProcess | None = None
    for _ in range(tries):
        live = [r for r in ctx.sud.replicas() if not _dead(r.pid)]
        victims = pick(sorted(live, key=lambda r: r.rank), spec.target, ctx.rng)
        if not victims:
            raise FaultError("no live replica to stall")
        try:
            return victims, [psutil.Process(r.pid) for r in victims]
        except psutil.NoSuchProcess as exc:  # died between the listing and now
            err = exc
            time.sleep(0.5)
    raise FaultError(f"no live replica to stall after {tries} tries: {err}")


def stall_replica(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """SIGSTOP replica processes for ``duration_s``, then SIGCONT; proof: state seen stopped."""
    victims, procs = _live_victims(ctx, spec)
    rec.targets = [f"replica rank {r.rank} pid {r.pid} on {r.node}" for r in victims]
    rec.injected_at_s = ctx.now_s()
    try:
        for proc in procs:
            with ctx.damage.lock:
                ctx.damage.stopped_pids.add(proc.pid)
            proc.suspend()
        stopped = wait_until(lambda: all(p.status() == psutil.STATUS_STOPPED for p in procs),
                             2.0, 0.01)
        rec.proof["stopped_seen"] = {p.pid: p.status() for p in procs}
        if not stopped:
            raise FaultError(f"replicas not observed stopped: {rec.proof['stopped_seen']}")
        time.sleep(spec.duration_s)
    finally:
        for proc in procs:
            try:
                proc.resume()
            except psutil.NoSuchProcess:
                rec.proof.setdefault("gone_while_stopped", []).append(proc.pid)
            with ctx.damage.lock:
                ctx.damage.stopped_pids.discard(proc.pid)
    rec.proof["resumed_at_s"] = ctx.now_s()
    rec.facts["stalled_s"] = spec.duration_s
    t0 = time.monotonic()
    rec.facts["capacity_back_s"] = _capacity_back(ctx, t0)


# -- nodes --------------------------------------------------------------------------------------

def _victim_nodes(ctx: FaultContext, spec: FaultSpec) -> list[str]:
    head = ctx.sud.head_node_id()
    with_replicas = sorted({r.node_id for r in ctx.sud.replicas()} - {head})
    workers = sorted(n["NodeID"] for n in ctx.sud.nodes() if n["NodeID"] != head)
    pool = with_replicas or workers
    if not pool:
        raise FaultError("no worker node to kill (the head is never a node-kill target)")
    return pick(pool, spec.target, ctx.rng)


def _kill_node(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord, raylet_only: bool) -> None:
    victims = _victim_nodes(ctx, spec)
    plan: dict[str, list[psutil.Process]] = {}
    for node_id in victims:
        procs = ctx.sud.node_processes(node_id)
        if not procs:
            raise FaultError(f"node {node_id[:12]}: its raylet is not a process on this host; "
                             "node kills need the drill to run on the node's machine")
        plan[node_id] = procs[:1] if raylet_only else procs
    hit = [r for r in ctx.sud.replicas() if r.node_id in plan]
    rec.targets = [f"node {n[:12]} ({len(p)} processes: "
                   f"{sorted({q.name() for q in p})})" for n, p in plan.items()]
    t0 = time.monotonic()
    rec.injected_at_s = ctx.now_s()
    for procs in plan.values():  # SIGKILL every process of the node back to back
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
    with ctx.damage.lock:
        ctx.damage.killed_nodes.extend(plan)
    killed = [p.pid for ps in plan.values() for p in ps]
    gone = wait_until(lambda: _all_dead(killed), 10.0)
    rec.proof["killed_pids"] = killed
    rec.proof["pids_gone_after_s"] = round(time.monotonic() - t0, 3) if gone else None
    if not gone:
        raise FaultError(f"pids {killed} still alive 10 s after SIGKILL")
    rec.proof["replicas_on_node"] = [f"rank {r.rank} pid {r.pid}" for r in hit]
    replica_gone = wait_until(lambda: _all_dead([r.pid for r in hit]), 30.0)
    rec.proof["replica_pids_gone_after_s"] = (round(time.monotonic() - t0, 2) if replica_gone
                                              else None)
    dead = wait_until(lambda: not any(ctx.sud.node_alive(n) for n in plan), 60.0, 0.25)
    rec.proof["ray_marked_dead_after_s"] = round(time.monotonic() - t0, 2) if dead else None
    rec.facts["capacity_back_s"] = _capacity_back(ctx, t0)
    rec.proof["replicas_after"] = [f"rank {r.rank} pid {r.pid} on {r.node}"
                                   for r in ctx.sud.replicas()]


def kill_node(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Machine loss: SIGKILL a worker node's raylet and every process it started, at once."""
    _kill_node(ctx, spec, rec, raylet_only=False)


def kill_raylet(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """SIGKILL only a worker node's raylet; its workers notice and die on their own."""
    _kill_node(ctx, spec, rec, raylet_only=True)


def _controller_pid() -> int | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and cmd[0].startswith("ray::ServeController"):
            return proc.pid
    return None


def kill_controller(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """``ray.kill`` the Serve controller (restartable); proof: pid gone, a new one answers."""
    import ray
    from ray import serve

    before = _controller_pid()
    replicas_before = {r.rank: r.pid for r in ctx.sud.replicas()}
    rec.targets = [f"SERVE_CONTROLLER_ACTOR pid {before}"]
    t0 = time.monotonic()
    rec.injected_at_s = ctx.now_s()
    ray.kill(ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve"), no_restart=False)
    if before is not None:
        gone = wait_until(lambda: _dead(before), 15.0)
        rec.proof["pid_gone_after_s"] = round(time.monotonic() - t0, 3) if gone else None

    def answers() -> bool:
        pid = _controller_pid()
        if pid is None or pid == before:
            return False
        try:
            return bool(serve.status().applications)
        except Exception:  # noqa: BLE001 - not back yet
            return False

    back = wait_until(answers, _OBSERVE_S, 0.5)
    rec.proof["new_pid"] = _controller_pid()
    rec.facts["controller_back_s"] = round(time.monotonic() - t0, 2) if back else None
    time.sleep(min(5.0, spec.duration_s))  # the recovered controller reconciles meanwhile
    after = {r.rank: r.pid for r in ctx.sud.replicas()}
    rec.proof["replica_pids"] = {"before": replicas_before, "after": after}
    rec.facts["replicas_replaced"] = sum(after.get(k) != v for k, v in replicas_before.items())


def kill_head(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Head-node loss with GCS fault tolerance: SIGKILL the GCS server, the head's raylet and
    everything they started at once; leave it down for ``duration_s``; start a new head on the
    same GCS port (state from Redis). Proof: pids gone, serving observed over HTTP while down,
    Serve's controller recovered, a publish committed after the restart."""
    import ray
    from ray import serve

    local = ctx.sud.local
    if local is None:
        raise FaultError("kill-head restarts the head it kills: it runs on the embedded cluster")
    if not ctx.sud.shape.gcs_ft:
        raise FaultError("kill-head needs GCS fault tolerance: set cluster.gcs_ft: true")
    replicas = ctx.sud.replicas()
    before = {r.rank: r.pid for r in replicas}
    rec.targets = [f"head node {local.cluster.head_node.node_id[:12]}"]
    ray.shutdown()  # the driver must not hang on a dead GCS; it re-joins after the restart
    t0 = time.monotonic()
    rec.injected_at_s = ctx.now_s()
    pids = local.kill_head()
    gone = wait_until(lambda: _all_dead(pids), 10.0)
    rec.proof["killed_pids"] = pids
    rec.proof["pids_gone_after_s"] = round(time.monotonic() - t0, 3) if gone else None
    if not gone:
        raise FaultError(f"head pids {pids} still alive 10 s after SIGKILL")
    from drills.system import http_json

    ready_while_down = [sum(http_json(r.http_url + "/readyz", timeout_s=1.0)[0] == 200
                            for r in replicas)]
    time.sleep(max(0.0, t0 + spec.duration_s - time.monotonic()))
    ready_while_down.append(sum(http_json(r.http_url + "/readyz", timeout_s=1.0)[0] == 200
                                for r in replicas))
    rec.proof["replicas_ready_while_down"] = ready_while_down
    t1 = time.monotonic()
    head = local.restart_head()
    rec.proof["restarted_at_s"] = ctx.now_s()
    rec.proof["new_head"] = head.node_id[:12]
    ray.init(address=local.address, logging_level=logging.WARNING, log_to_driver=False)

    def controller_back() -> bool:
        try:
            apps = serve.status().applications
            return apps.get(ctx.sud.app_name) is not None and str(
                apps[ctx.sud.app_name].status).endswith("RUNNING")
        except Exception:  # noqa: BLE001 - not back yet
            return False

    back = wait_until(controller_back, _OBSERVE_S, 0.5)
    rec.facts["control_plane_back_s"] = round(time.monotonic() - t1, 2) if back else None
    ctx.sud.reconnect()
    if ctx.derive_version is not None:
        try:
            published = ctx.sud.rc.publish(str(ctx.derive_version("after-head-restart")))
            rec.facts["publish_after_restart_s"] = round(time.monotonic() - t1, 2)
            rec.proof["published"] = {k: published[k] for k in ("version", "committed_on")}
        except Exception as exc:  # noqa: BLE001 - the missing fact fails its SLO
            rec.proof["publish_error"] = f"{type(exc).__name__}: {exc}"
    time.sleep(3.0)  # a recovering controller that replaces replicas does so within seconds
    after = {r.rank: r.pid for r in ctx.sud.replicas()}
    rec.proof["replica_pids"] = {"before": before, "after": after}
    rec.facts["replicas_replaced"] = sum(after.get(k) != v for k, v in before.items())


def kill_frontdoor(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """SIGKILL the front door's HAProxy (master and workers); proof: pids gone, its supervisor
    started a new one, the front door answers again."""
    from drills.system import http_json

    door = ctx.sud.frontdoor
    if door is None or door.pid is None:
        raise FaultError("kill-frontdoor needs the front door: load.via: frontdoor")
    master = psutil.Process(door.pid)
    procs = [master, *master.children(recursive=True)]
    rec.targets = [f"front door HAProxy pids {[p.pid for p in procs]} ({door.http_url})"]
    t0 = time.monotonic()
    rec.injected_at_s = ctx.now_s()
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    gone = wait_until(lambda: _all_dead([p.pid for p in procs]), 5.0, 0.01)
    rec.proof["pids_gone_after_s"] = round(time.monotonic() - t0, 3) if gone else None
    if not gone:
        raise FaultError("HAProxy still alive 5 s after SIGKILL")
    back = wait_until(lambda: door.pid not in (None, master.pid)
                      and http_json(door.http_url + "/readyz", timeout_s=0.5)[0] == 200,
                      _OBSERVE_S, 0.05)
    rec.proof["new_pid"] = door.pid
    rec.facts["frontdoor_back_s"] = round(time.monotonic() - t0, 2) if back else None


# -- stores -------------------------------------------------------------------------------------

def _blob_path(sud: System, node_id: str, version: str, path: str) -> tuple[Path, str]:
    from replication.repo import VersionStore
    from replication.store import open_store

    store = sud.node_store(node_id)
    record = VersionStore(open_store(str(store)), sud.rc.keyring, node=node_id).get_record(version)
    digest = next(f.sha256 for f in record.files if f.path == path)
    return store / "blobs" / "sha256" / digest, digest


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _reload_all(ctx: FaultContext, version: str) -> dict[int, dict[str, Any]]:
    out = {}
    for r in sorted(ctx.sud.replicas(), key=lambda r: r.rank):
        status, body = ctx.sud.admin(r, "reload", version)
        out[r.rank] = {"node": r.node_id[:12], "status": status,
                       "message": str(body.get("error") or body.get("model_version"))[:300]}
    return out


def corrupt_checkpoint(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Corrupt (flip a byte), tamper (swap in another valid blob) or delete the model blob of
    the served version in node stores; then every replica reloads through its store.

    Proof: the blob's digest changed on disk; replicas on the damaged nodes refused it (HTTP
    409, still serving the old copy), the rest reloaded; repair restored it; reload succeeds.
    """
    mode = spec.mode or "corrupt"
    version = ctx.sud.version
    if version is None:
        raise FaultError("nothing published yet")
    nodes = pick(sorted({r.node_id for r in ctx.sud.replicas()}), spec.target, ctx.rng)
    rec.targets = [f"{mode} model.onnx of {version} in the store of node {n[:12]}" for n in nodes]
    rec.injected_at_s = ctx.now_s()
    for node_id in nodes:
        blob, digest = _blob_path(ctx.sud, node_id, version, "model.onnx")
        before = _sha(blob)
        with ctx.damage.lock:
            ctx.damage.touched_stores.append(node_id)
        if mode == "corrupt":
            data = bytearray(blob.read_bytes())
            data[len(data) // 2] ^= 0xFF
            blob.write_bytes(bytes(data))
        elif mode == "tamper":  # a valid sealed blob of the same store, under the wrong name
            donor = max((p for p in blob.parent.iterdir() if p != blob), key=lambda p: p.stat().st_size)
            shutil.copyfile(donor, blob)
        else:
            blob.unlink()
        # The node's verified checkout of this version is dropped, as on a fresh node, so
        # the next load must read the store.
        shutil.rmtree(ctx.sud.node_checkouts(node_id) / version, ignore_errors=True)
        rec.proof[f"blob_{node_id[:12]}"] = {"blob": digest[:16], "sha256_before": before,
                                             "sha256_after": _sha(blob)}
        if _sha(blob) == before:
            raise FaultError(f"blob {digest[:16]} on node {node_id[:12]} unchanged after {mode}")
    versions_before = ctx.sud.served_versions()
    reloads = _reload_all(ctx, version)
    rec.proof["reload_after_fault"] = reloads
    versions_after = ctx.sud.served_versions()
    rec.proof["served_versions"] = {"before": versions_before, "after": versions_after}
    damaged = {n[:12] for n in nodes}
    refused = all(v["status"] == 409 for v in reloads.values() if v["node"] in damaged)
    others_ok = all(v["status"] == 200 for v in reloads.values() if v["node"] not in damaged)
    rec.facts["refused_everywhere"] = bool(
        refused and others_ok and any(v["node"] in damaged for v in reloads.values())
        and all(v == version for v in versions_after.values()))
    t0 = time.monotonic()
    repair = ctx.sud.rc.repair()
    rec.proof["repair"] = {k: (v if isinstance(v, int | str | bool) else str(v)[:300])
                           for k, v in repair.items()}
    fixed: dict[str, bool | str] = {}
    for node_id in nodes:
        from replication.repo import VersionStore
        from replication.store import open_store

        vs = VersionStore(open_store(str(ctx.sud.node_store(node_id))), ctx.sud.rc.keyring,
                          node=node_id)
        try:
            vs.verify_blob(_blob_path(ctx.sud, node_id, version, "model.onnx")[1])
            fixed[node_id[:12]] = True
        except Exception as exc:  # noqa: BLE001 - the proof says what is still wrong
            fixed[node_id[:12]] = f"{type(exc).__name__}: {exc}"
    rec.proof["verified_after_repair"] = fixed
    reloads = _reload_all(ctx, version)
    rec.proof["reload_after_repair"] = reloads
    rec.facts["repair_s"] = round(time.monotonic() - t0, 2)
    rec.facts["repaired"] = all(v is True for v in fixed.values()) and all(
        v["status"] == 200 for v in reloads.values())
    if rec.facts["repaired"]:
        with ctx.damage.lock:
            ctx.damage.touched_stores = [n for n in ctx.damage.touched_stores if n not in nodes]


def delete_primary_store(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """The primary store vanishes; publishing must go on from a promoted standby (RPO 0)."""
    if ctx.derive_version is None:
        raise FaultError("delete-primary-store publishes a new version afterwards: give the "
                         "drill the signing key (--signing-key)")
    rc, primary = ctx.sud.rc, ctx.sud.primary_dir
    before = {v["version"] for v in rc.list_versions()["versions"]}
    artifact = ctx.derive_version("after-primary-loss")
    lost = primary.with_name(f"primary.lost-{int(time.time())}")
    rec.targets = [str(primary)]
    t0 = time.monotonic()
    rec.injected_at_s = ctx.now_s()
    os.rename(primary, lost)  # from the cluster's point of view, the store is gone
    with ctx.damage.lock:
        ctx.damage.lost_primary = lost
    rec.proof["primary_exists_after"] = primary.exists()
    published = rc.publish(str(artifact))
    rec.facts["publish_resume_s"] = round(time.monotonic() - t0, 2)
    rec.proof["published"] = {k: published[k] for k in ("version", "primary", "committed_on")}
    after = {v["version"] for v in rc.list_versions()["versions"]}
    rec.proof["committed_before"], rec.proof["committed_after"] = sorted(before), sorted(after)
    rec.facts["rpo_versions"] = len(before - after)


# -- models -------------------------------------------------------------------------------------

FAULTS: dict[str, Callable[[FaultContext, FaultSpec, FaultRecord], None]] = {
    "kill-replica": kill_replica,
    "stall-replica": stall_replica,
    "kill-node": kill_node,
    "kill-raylet": kill_raylet,
    "kill-controller": kill_controller,
    "kill-head": kill_head,
    "kill-frontdoor": kill_frontdoor,
    "corrupt-checkpoint": corrupt_checkpoint,
    "delete-primary-store": delete_primary_store,
}
assert set(FAULTS) <= set(FAULT_KINDS)  # the rest: drills.release_faults, drills.region_faults
