"""The Ray Serve adapter: one deployment whose replicas serve HTTP and gRPC themselves.

Measured on this machine (``recdrill bench suite``), Serve's standard proxy path saturates
near 240 req/s while the replica's own entry server reaches ~1,900–2,300 req/s; the model
takes ~0.1–0.4 ms. So each replica runs the entry server in its own process (direct ingress, like Ray's throughput-optimised mode, but without Serve's per-request
machinery): Serve places the replicas (at most one per node), restarts dead ones, health-checks
them (``check_health`` pings the serving loop) and swaps versions in place through
``reconfigure`` (user_config ``{"version": ..., "canary": ..., "canary_share": ...}``: the
stable version, and an optional canary answering a share of the traffic, see
``serving.rollout``). Replica rank r binds ``http_port + r`` and
``grpc_port + r`` on its node, so a restarted replica comes back on the same address, and it
publishes that address in Ray's KV store (``list_endpoints``).

Serve's own proxy still reaches the same replicas (``__call__``) when ``proxy_port`` is set —
the slower path, kept for comparison.

Example:
    >>> deploy(ServeSettings(artifact="art/", public_key="k.pub"))  # doctest: +SKIP
    >>> list_endpoints()  # doctest: +SKIP
    [Endpoint(host='127.0.0.1', http_port=8100, grpc_port=9100)]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any

import ray
from ray import serve

from serving.batching import serve_batcher
from serving.config import ServeSettings
from serving.errors import InvalidRequest, ModelLoadError, NotReady, Overloaded
from serving.schemas import parse_request
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService
from serving.source import make_source

__all__ = [
    "RecommenderReplica",
    "build_app",
    "deploy",
    "list_endpoints",
    "list_replicas",
    "normal_priority",
    "per_node_limit",
    "set_version",
]

log = logging.getLogger(__name__)
_KV_NAMESPACE = "recdrill"
_BIND_RETRY_S = 10.0


def _kv_key(app_name: str, rank: int) -> bytes:
    return f"serving/{app_name}/endpoints/{rank:04d}".encode()


@serve.deployment(max_ongoing_requests=256, health_check_period_s=2.0,
                  health_check_timeout_s=5.0, graceful_shutdown_timeout_s=5.0,
                  graceful_shutdown_wait_loop_s=0.5)
class RecommenderReplica:
    """A replica: a RecommendService plus its own HTTP/gRPC entry server."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.niceness = normal_priority()
        self.settings = ServeSettings.model_validate(settings)
        s, ctx = self.settings, serve.get_replica_context()
        rank = ctx.rank if isinstance(ctx.rank, int) else ctx.rank.rank
        self.rank = rank
        node = ray.get_runtime_context().get_node_id()[:12]
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        source = make_source(artifact=s.artifact, store=s.store, public_key_path=s.public_key,
                             key_files=s.key_files, node_root=s.node_root)
        self.service = RecommendService(
            source, replica=ctx.replica_id.unique_id, node=node,
            config=s.service_config(threads=max(1, round(cpus))),
            batcher_factory=serve_batcher)
        self.refusals: list[str] = []
        self.server = self._start_server(rank)
        ep = self.server.endpoint
        assert ep is not None
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(
            _kv_key(s.app_name, rank),
            json.dumps({"host": ep.host, "http_port": ep.http_port, "grpc_port": ep.grpc_port,
                        "node": node, "node_id": ray.get_runtime_context().get_node_id(),
                        "pid": os.getpid(), "rank": rank, "niceness": self.niceness,
                        "actor": ctx.replica_id.to_full_id_str()}).encode(),
            overwrite=True, namespace=_KV_NAMESPACE)

    def _start_server(self, rank: int) -> EntryServer:
        # A replacement replica may start before the dead one's sockets are released.
        s, deadline = self.settings, time.monotonic() + _BIND_RETRY_S
        while True:
            server = EntryServer(self.service, s.app_config(), s.host, s.http_port + rank,
                                 s.grpc_port + rank)
            try:
                server.start()
                return server
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Swap to ``user_config["version"]``, then set or clear ``user_config["canary"]``.

        A refused version leaves the old one serving; a refused canary is recorded in
        ``refusals`` and not served (no canary), while the stable version keeps serving.
        """
        version = user_config.get("version")
        try:
            self.service.load(version)
        except ModelLoadError as exc:
            if not self.service.ready:
                raise  # nothing to keep serving: this replica must not become ready
            self.refusals.append(str(exc))
            log.error("version %s refused, still serving %s: %s", version,
                      self.service.version, exc)
        canary = user_config.get("canary")
        try:
            self.service.set_canary(canary, float(user_config.get("canary_share") or 0.0))
        except ModelLoadError as exc:
            self.service.set_canary(None)
            self.refusals.append(str(exc))
            log.error("canary %s refused, %s serves everything: %s", canary,
                      self.service.version, exc)

    def check_health(self) -> None:
        """Liveness for Serve: the entry server's loop answers within 2 s."""
        self.server.ping(2.0)
        if not self.service.ready:
            raise RuntimeError("no verified model version in service")

    def status(self) -> dict[str, Any]:
        ep = self.server.endpoint
        return {"version": self.service.version, "canary": self.service.canary_version,
                "rank": self.rank, "refusals": self.refusals, "niceness": self.niceness,
                "replica": self.service.replica, "http_port": ep.http_port if ep else None}

    def stall(self, seconds: float) -> None:
        """Drills: slow every model call down by ``seconds``."""
        self.service.set_stall(seconds)

    async def __call__(self, request: Any) -> Any:
        """The standard proxy path (Serve HTTP proxy → this replica), same semantics."""
        import asyncio

        from starlette.responses import JSONResponse

        try:
            req = parse_request(json.loads(await request.body()))
            future = self.server.call(self.service.recommend(req))
            return JSONResponse(await asyncio.wrap_future(future))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"body: malformed JSON ({exc})"}, 400)
        except InvalidRequest as exc:
            return JSONResponse({"error": str(exc)}, 422)
        except (Overloaded, NotReady) as exc:
            return JSONResponse({"error": str(exc)}, 503, {"Retry-After": "1"})

    def __del__(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop(2.0)


def normal_priority() -> int:
    """Run this process's threads at normal CPU priority; returns the niceness in force.

    Ray starts worker processes at nice 15, so batch tasks yield to the system. A serving
    replica is latency-critical: at nice 15 it starved whenever other processes were busy
    (a head node restarting under GCS fault tolerance stalled both replicas for ~4 s on 2
    cores). Linux keeps niceness per thread, so every thread is reniced, and threads started
    later inherit it. Lowering niceness needs root or CAP_SYS_NICE; without, it stays.
    """
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 0)
        except PermissionError:
            log.warning("cannot lower this replica's niceness (%s): it keeps Ray's worker "
                        "niceness; grant CAP_SYS_NICE for latency under CPU contention",
                        os.getpriority(os.PRIO_PROCESS, 0))
            break
        except OSError:  # a thread that ended meanwhile
            continue
    return os.getpriority(os.PRIO_PROCESS, 0)


def per_node_limit(replicas: int, alive_nodes: int) -> int:
    """One replica per node where the cluster allows, else as few per node as fit."""
    return max(1, -(-replicas // max(1, alive_nodes)))


def build_app(settings: ServeSettings, *, canary: str | None = None,
              canary_share: float = 0.0) -> Any:
    """The Serve application for ``settings`` (spread: one replica per node where possible).

    The model version (and the canary) travel only in ``user_config`` and the deployment's code
    version is a
    digest of everything else, so a version change is an in-place ``reconfigure`` on every
    replica (no restart, no dropped connection) while any other change rolls the replicas.
    """
    alive = sum(1 for n in ray.nodes() if n.get("Alive"))
    args = settings.model_dump(exclude={"version"})
    app = RecommenderReplica.options(
        num_replicas=settings.replicas,
        max_replicas_per_node=per_node_limit(settings.replicas, alive),
        ray_actor_options={"num_cpus": settings.num_cpus},
        user_config={"version": settings.version, "canary": canary,
                     "canary_share": canary_share},
    )
    # Serve's Python API otherwise draws a random code version per serve.run (= a restart);
    # the declarative API hashes the config the same way.
    app._version = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    return app.bind(args)


def deploy(settings: ServeSettings, *, timeout_s: float = 120.0) -> list[Endpoint]:
    """Start Serve (proxy only if ``proxy_port``), run the app, wait for every endpoint."""
    http_options: dict[str, Any] = (
        {"host": "127.0.0.1", "port": settings.proxy_port, "location": "HeadOnly"}
        if settings.proxy_port else {"location": "NoServer"})
    serve.start(http_options=http_options, logging_config={"enable_access_log": False})
    _clear_endpoints(settings.app_name)
    _run(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        endpoints = list_endpoints(settings.app_name)
        if len(endpoints) >= settings.replicas:
            return endpoints
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(endpoints)} of {settings.replicas} replicas "
                               f"registered within {timeout_s} s")
        time.sleep(0.2)


def set_version(settings: ServeSettings, version: str | None, *, canary: str | None = None,
                canary_share: float = 0.0) -> None:
    """Swap every replica to ``version`` in place (reconfigure); refused versions are kept out.

    With ``canary``, that version also answers ``canary_share`` of the routing keys on every
    replica; without, any canary is cleared.

    Example:
        >>> set_version(settings, "v1", canary="v2", canary_share=0.1)  # doctest: +SKIP
    """
    if not 0.0 <= canary_share <= 1.0:
        raise ValueError(f"canary_share: expected 0..1, found {canary_share}")
    _run(settings.model_copy(update={"version": version}), canary=canary,
         canary_share=canary_share if canary is not None else 0.0)


def _run(settings: ServeSettings, *, canary: str | None = None,
         canary_share: float = 0.0) -> None:
    serve.run(build_app(settings, canary=canary, canary_share=canary_share),
              name=settings.app_name,
              route_prefix="/" if settings.proxy_port else None,
              logging_config={"enable_access_log": False})


def _clear_endpoints(app_name: str) -> None:
    from ray.experimental import internal_kv

    prefix = f"serving/{app_name}/endpoints/".encode()
    for key in internal_kv._internal_kv_list(prefix, namespace=_KV_NAMESPACE):
        internal_kv._internal_kv_del(key, namespace=_KV_NAMESPACE)


def list_replicas(app_name: str = "recdrill") -> list[dict[str, Any]]:
    """What each replica of ``app_name`` registered, by rank: host, ports, node (short and
    full id), pid and Serve actor name (the newest registration of each rank)."""
    from ray.experimental import internal_kv

    prefix = f"serving/{app_name}/endpoints/".encode()
    keys = sorted(internal_kv._internal_kv_list(prefix, namespace=_KV_NAMESPACE))
    out = []
    for key in keys:
        raw = internal_kv._internal_kv_get(key, namespace=_KV_NAMESPACE)
        if raw:
            out.append(json.loads(raw))
    return out


def list_endpoints(app_name: str = "recdrill") -> list[Endpoint]:
    """Addresses the replicas of ``app_name`` registered, by rank."""
    return [Endpoint(d["host"], d["http_port"], d["grpc_port"]) for d in list_replicas(app_name)]
