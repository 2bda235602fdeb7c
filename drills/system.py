"""The system under drill: a Ray cluster (embedded, or attached through RAY_ADDRESS), the
replicated stores (primary + one per node, W verified copies), and the serving app, with the
views faults need (replicas with pids and nodes, a node's processes, readiness from outside).

Embedded (default): head + N workers started here with their own temp dir and ports, torn
down afterwards. Attached: an existing cluster (``ray start``, ``ray job submit``); the drill
deploys its own app and replicators under its own names and removes only those.

Example:
    >>> with open_system(ClusterShape(), inputs, Path("runs/drill/work")) as sud:  # doctest: +SKIP
    ...     sud.start()
    ...     sud.replicas()[0].http_url
    'http://127.0.0.1:18100'
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from drills.errors import EnvironmentError_
from drills.scenario import ClusterShape
from replication.checkout import node_name
from serving.server import GRPC_PORT_OFFSET, Endpoint, free_port_base
from serving.testing import free_port, node_processes, port_open, wait_until

__all__ = ["DrillInputs", "Replica", "System", "open_system", "redis_server", "remove_tree"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrillInputs:
    """What a drill serves and scores: a signed artifact, its public key, optionally the
    training checkpoint (held-out items for quality), the signing key (to publish derived
    versions) and the store encryption key file (generated when absent)."""

    artifact: Path
    public_key: Path
    checkpoint: Path | None = None
    private_key: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class Replica:
    """One serving replica as it registered itself."""

    rank: int
    node_id: str
    node: str
    pid: int
    actor: str
    host: str
    http_port: int
    grpc_port: int

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.http_port, self.grpc_port)

    @property
    def http_url(self) -> str:
        return self.endpoint.http_url

    @property
    def grpc_target(self) -> str:
        return self.endpoint.grpc_target

    @property
    def store_name(self) -> str:
        """Directory name of this replica's node store."""
        return node_name(self.node_id)


def http_json(url: str, body: dict[str, Any] | None = None, token: str | None = None,
              timeout_s: float = 5.0) -> tuple[int, dict[str, Any]]:
    """One HTTP call (GET, or POST with a JSON body): status and parsed body; never raises
    for HTTP errors (status 0 when the connection failed)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError) as exc:
        return 0, {"error": repr(exc)}


class System:
    """A running cluster plus what the drill deployed on it."""

    def __init__(self, root: Path, inputs: DrillInputs, shape: ClusterShape, local: Any,
                 app_name: str) -> None:
        from replication.keys import generate_key_file

        self.root, self.inputs, self.shape, self.local = root, inputs, shape, local
        self.app_name = app_name
        self.admin_token = secrets.token_urlsafe(24)
        key = inputs.key_file
        if key is None:
            key = root / "store.key"
            if not key.exists():
                generate_key_file(key)
        self.key_file = key
        self.primary_dir = root / "stores" / "primary"
        self.node_root = root / "stores" / "nodes"
        self.rc = self._replication()
        self.settings: Any = None
        self.frontdoor: Any = None
        self.version: str | None = None
        self.killed_nodes: list[str] = []

    def _replication(self) -> Any:
        from replication.cluster import ClusterConfig, ReplicationCluster
        from replication.keys import KeySpec

        return ReplicationCluster(ClusterConfig(
            primary_url=str(self.primary_dir), node_root=str(self.node_root),
            public_key_path=str(self.inputs.public_key),
            audit_path=str(self.root / "stores/audit.jsonl"),
            key_spec=KeySpec(files=(str(self.key_file),)),
            w=min(self.shape.w, self.alive_nodes()), actor="recdrill-drill", detached=False))

    def reconnect(self) -> None:
        """After the driver re-joined the cluster (head restart): fresh replicator handles."""
        self.rc = self._replication()
        self.rc.discover()

    @property
    def mode(self) -> str:
        return "embedded" if self.local is not None else "attached"

    # -- cluster views ----------------------------------------------------------------------
    @staticmethod
    def nodes() -> list[dict[str, Any]]:
        import ray

        return [n for n in ray.nodes() if n.get("Alive")]

    def alive_nodes(self) -> int:
        return len(self.nodes())

    @staticmethod
    def head_node_id() -> str | None:
        import ray

        for n in ray.nodes():
            if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {}):
                return str(n["NodeID"])
        return None

    def node_alive(self, node_id: str) -> bool:
        return any(n["NodeID"] == node_id for n in self.nodes())

    @staticmethod
    def node_processes(node_id: str) -> list[psutil.Process]:
        """The raylet of ``node_id`` on this host and every process it started (workers,
        agents), found by pid from outside; empty when the node is not on this host."""
        return node_processes(node_id)

    # -- deployment -------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0, *, publish: bool = True) -> dict[str, Any]:
        """Publish the artifact with W verified copies (or, with ``publish=False``, serve the
        current version the primary store already holds: a standby region's), deploy the
        app, wait until ready."""
        from serving.config import ServeSettings
        from serving.deployment import deploy

        t0 = time.monotonic()
        if publish:
            published = self.rc.publish(str(self.inputs.artifact))
            self.version, committed_on = published["version"], published["committed_on"]
        else:
            self.rc.catch_up()
            self.version = self.current_version()
            if self.version is None:
                raise EnvironmentError_(f"nothing to serve: {self.primary_dir} holds no "
                                        "current version")
            committed_on = sorted(self.rc.nodes)
        publish_s = time.monotonic() - t0
        try:
            base = free_port_base(self.shape.replicas)
        except OSError as exc:
            raise EnvironmentError_(str(exc)) from exc
        self.settings = ServeSettings(
            store="node", node_root=str(self.node_root), public_key=str(self.inputs.public_key),
            key_files=(str(self.key_file),), replicas=self.shape.replicas, http_port=base,
            grpc_port=base + GRPC_PORT_OFFSET, app_name=self.app_name,
            admin_token=self.admin_token, version=None if publish else self.version)
        t1 = time.monotonic()
        deploy(self.settings, timeout_s=timeout_s)
        self.wait_ready(self.shape.replicas, timeout_s)
        return {"version": self.version, "publish_s": round(publish_s, 2),
                "committed_on": committed_on,
                "deploy_s": round(time.monotonic() - t1, 2)}

    def current_version(self) -> str | None:
        """refs/current of the primary store (None when it holds none)."""
        from replication.repo import VersionStore
        from replication.store import open_store

        vs = VersionStore(open_store(str(self.primary_dir)), self.rc.keyring, node="primary")
        ref = vs.get_ref("current")
        return None if ref is None else ref.version

    def start_frontdoor(self, http_port: int | None = None, grpc_port: int | None = None,
                        stats_port: int | None = None) -> dict[str, Any]:
        """recdrill's front door (HAProxy) following the replicas, on the given loopback ports
        (free ones by default)."""
        import ray

        from serving.deployment import list_endpoints
        from serving.frontdoor import FrontDoor, FrontDoorConfig

        http, grpc = http_port or free_port(), grpc_port or free_port()
        # The replicas answer from the fallback tier after their 1 s deadline: a replica that
        # has not answered in 1.2 s is gone or stopped, and the request is retried elsewhere.
        door = FrontDoor(FrontDoorConfig(http_port=http, grpc_port=grpc, stats_port=stats_port,
                                         server_timeout_ms=1200), self.root / "frontdoor")
        door.start([r.endpoint for r in self.replicas()])

        def endpoints() -> list[Any]:
            return list_endpoints(self.app_name) if ray.is_initialized() else []

        door.watch(endpoints)
        self.frontdoor = door
        return {"http": door.http_url, "grpc": door.grpc_target, "pid": door.pid}

    def replicas(self) -> list[Replica]:
        """Replicas as registered (newest registration per rank)."""
        from serving.deployment import list_replicas

        return [Replica(int(d["rank"]), d["node_id"], d["node"], int(d["pid"]), d["actor"],
                        d["host"], int(d["http_port"]), int(d["grpc_port"]))
                for d in list_replicas(self.app_name)]

    def ready_replicas(self) -> list[Replica]:
        """Replicas whose /readyz answers 200 right now, checked from outside over HTTP."""
        return [r for r in self.replicas() if http_json(r.http_url + "/readyz", timeout_s=1.0)[0]
                == 200 and psutil.pid_exists(r.pid)]

    def wait_ready(self, count: int, timeout_s: float) -> float:
        """Seconds until ``count`` replicas answer /readyz; raises on timeout."""
        t0 = time.monotonic()
        while len(self.ready_replicas()) < count:
            if time.monotonic() - t0 > timeout_s:
                raise EnvironmentError_(f"only {len(self.ready_replicas())} of {count} replicas "
                                        f"ready after {timeout_s:.0f} s")
            time.sleep(0.25)
        return time.monotonic() - t0

    def addresses(self, protocol: str, which: str = "all", via: str = "replicas") -> list[str]:
        """Where the load goes: the front door's one address, or the replicas' own."""
        if via == "frontdoor":
            if self.frontdoor is None:
                raise EnvironmentError_("the front door is not running")
            return [self.frontdoor.http_url if protocol == "http" else self.frontdoor.grpc_target]
        reps = sorted(self.replicas(), key=lambda r: r.rank)
        if which == "first":
            reps = reps[:1]
        return [r.http_url if protocol == "http" else r.grpc_target for r in reps]

    def served_versions(self) -> dict[int, str | None]:
        """rank -> the model version its /healthz reports (None when it does not answer)."""
        out: dict[int, str | None] = {}
        for r in self.replicas():
            status, body = http_json(r.http_url + "/healthz", timeout_s=1.0)
            out[r.rank] = body.get("model_version") if status == 200 else None
        return out

    def admin(self, replica: Replica, action: str, version: str | None = None
              ) -> tuple[int, dict[str, Any]]:
        """POST /admin/<action> on one replica with the drill's admin token."""
        body = {} if action == "rollback" else {"version": version}
        return http_json(f"{replica.http_url}/admin/{action}", body, self.admin_token, 30.0)

    def node_store(self, node_id: str) -> Path:
        return self.node_root / node_name(node_id) / "store"

    def node_checkouts(self, node_id: str) -> Path:
        return self.node_root / node_name(node_id) / "checkouts"

    def restart_node(self) -> str:
        """Embedded only: add a fresh worker node in place of a killed one."""
        if self.local is None:
            raise EnvironmentError_("cannot restart a node of a cluster the drill did not start")
        node = self.local.add_worker()
        return str(node.node_id)

    def stop(self) -> None:
        """Stop the front door; remove the drill's app (only it) and its replicators."""
        import ray

        from serving.deployment import delete

        if self.frontdoor is not None:
            self.frontdoor.stop()
        if not ray.is_initialized():  # e.g. a head restart that failed: nothing to talk to
            return
        with contextlib.suppress(Exception):
            delete(self.app_name)


@contextlib.contextmanager
def open_system(shape: ClusterShape, inputs: DrillInputs, root: Path,
                ray_address: str | None = None) -> Iterator[System]:
    """Start (or attach to) a cluster and yield the System; always cleans up what it made."""
    import ray

    root.mkdir(parents=True, exist_ok=True)
    app_name = f"drill-{secrets.token_hex(3)}"
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        if not ray.is_initialized():
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        sud = System(root, inputs, shape, None, app_name)
        try:
            yield sud
        finally:
            sud.stop()
        return
    from replication.localcluster import local_ray_cluster

    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(root)) if shape.gcs_ft else None
        lc = stack.enter_context(local_ray_cluster(
            workers=shape.workers, object_store_mb=80, head_cpus=0 if shape.gcs_ft else 1,
            redis_address=redis))
        sud = System(root, inputs, shape, lc, app_name)
        try:
            yield sud
        finally:
            sud.stop()
            import ray
            from ray import serve

            if ray.is_initialized():
                with contextlib.suppress(Exception):
                    serve.shutdown()


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port (GCS fault tolerance), stopped after."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise EnvironmentError_("GCS fault tolerance needs redis-server: apt-get install "
                                "redis-server (the test suite's .ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise EnvironmentError_(f"redis-server exited ({proc.returncode}) on port {port}")
            return port_open(port)

        try:
            wait_until(up, 10.0, what=f"redis-server on port {port}")
        except TimeoutError as exc:
            raise EnvironmentError_(str(exc)) from None
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def remove_tree(path: Path) -> None:
    """Remove a drill's work directory (stores, checkouts) after the run."""
    shutil.rmtree(path, ignore_errors=True)
