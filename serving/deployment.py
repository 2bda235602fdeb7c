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
registers that address with the application's registry actor (``serving.registry``,
``list_endpoints``).

Serve's own proxy still reaches the same replicas (``__call__``) when ``proxy_port`` is set —
the slower path, kept for comparison.

Example:
    >>> deploy(ServeSettings(artifact="art/", public_key="k.pub"))  # doctest: +SKIP
    >>> list_endpoints()  # doctest: +SKIP
    [Endpoint(host='127.0.0.1', http_port=8100, grpc_port=9100)]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from typing import Any

import ray
from ray import serve

from security.tls import tls_files
from serving import registry
from serving.config import ServeSettings, resolve_paths
from serving.errors import ModelLoadError
from serving.registry import Heartbeat
from serving.schemas import parse_request
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService
from serving.source import make_source
from serving.status import status_of
from serving.users import UserGate

__all__ = [
    "RecommenderReplica",
    "app_builder",
    "build_app",
    "check_artifact",
    "delete",
    "deploy",
    "list_endpoints",
    "list_replicas",
    "normal_priority",
    "per_node_limit",
    "set_version",
]

log = logging.getLogger(__name__)
_BIND_RETRY_S = 10.0
DRAIN_S = 1.2  # > the front door's check interval x fall (500 ms x 2)


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
            config=s.service_config(threads=max(1, round(cpus))))
        self.refusals: list[str] = []
        self.server = self._start_server(rank)
        ep = self.server.endpoint
        assert ep is not None
        record = {"host": ep.host, "http_port": ep.http_port, "grpc_port": ep.grpc_port,
                  "tls": ep.tls,
                  "node": node, "node_id": ray.get_runtime_context().get_node_id(),
                  "pid": os.getpid(), "rank": rank, "niceness": self.niceness,
                  "actor": ctx.replica_id.to_full_id_str()}
        self.heartbeat = Heartbeat(s.app_name, rank, lambda: {
            **record, "version": self.service.version, "ready": self.service.ready})
        self.heartbeat.start()

    def _start_server(self, rank: int) -> EntryServer:
        # A replacement replica may start before the dead one's sockets are released.
        s, deadline = self.settings, time.monotonic() + _BIND_RETRY_S
        while True:
            offset = rank if s.rank_ports else 0
            server = EntryServer(self.service, s.app_config(), s.host, s.http_port + offset,
                                 s.grpc_port + offset,
                                 tls=tls_files(s.tls_cert, s.tls_key, s.tls_ca))
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
        except Exception as exc:  # noqa: BLE001 - the one error table (serving.status)
            st = status_of(exc)
            return JSONResponse({"error": st.message(exc)}, st.http, st.headers())

    def __del__(self) -> None:
        """Serve's graceful stop: drain first (readiness 503 for ``DRAIN_S``, long enough for
        the front door's checks to take this replica out), then stop the servers."""
        heartbeat = getattr(self, "heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()
        service, server = getattr(self, "service", None), getattr(self, "server", None)
        if service is not None and server is not None and service.ready:
            service.drain()
            time.sleep(DRAIN_S)
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
              canary_share: float = 0.0, pin_code_version: bool = True) -> Any:
    """The Serve application for ``settings`` (spread: one replica per node where possible).

    The model version (and the canary) travel only in ``user_config``, so a version change is
    an in-place ``reconfigure`` on every replica (no restart, no dropped connection) provided
    the deployment's code version stays the same. Serve's declarative path (``serve deploy``
    / ``serve run`` of a config, :func:`app_builder`) derives the code version from the config
    itself. Its Python ``serve.run`` draws a random one per call (= a rolling restart per
    version change) and no longer accepts a ``version`` option, so ``pin_code_version`` sets it
    to a digest of everything but the version: the one private attribute recdrill touches,
    guarded, so a Ray without it falls back to a rolling restart, never to an error.
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
    if pin_code_version and hasattr(app, "_version"):
        app._version = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    return app.bind(args)


def check_artifact(settings: ServeSettings) -> None:
    """Verify a directory artifact here, on the driver, so a wrong key or a damaged file is
    one clear error instead of every replica failing the same way (a store is checked out
    and verified by each node's replicas). The replicas' pseudonym key is checked against the
    artifact's too (``settings.pseudonym_key`` travels to them in ``service_config``)."""
    if settings.artifact is not None:
        artifact = make_source(artifact=settings.artifact, store=None,
                               public_key_path=settings.public_key).fetch_verified(settings.version)
        UserGate.for_version(artifact.manifest, settings.service_config().users)


def app_builder(args: dict[str, Any]) -> Any:
    """Ray Serve's application builder (``import_path: serving.deployment:app_builder``):
    ``args`` are :class:`ServeSettings` fields, from a ``serve_config.yaml`` or
    ``serve run serving.deployment:app_builder store=node public_key=/k.pub``.

    Paths are resolved and checked here, so a wrong one fails the deploy at once with its
    name instead of sending every replica into a restart loop.
    """
    try:
        settings = resolve_paths(ServeSettings.model_validate(args))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"recdrill: bad serving configuration: {exc}") from None
    check_artifact(settings)
    return build_app(settings, pin_code_version=False)


def deploy(settings: ServeSettings, *, timeout_s: float = 120.0,
           verified: bool = False) -> list[Endpoint]:
    """Check the paths, start Serve (proxy only if ``proxy_port``), run the app, wait for every
    endpoint. Raises ValueError for a bad path and ModelLoadError for an artifact that fails
    verification, before anything starts (``verified``: the caller already checked it, so the
    artifact is not hashed twice)."""
    settings = resolve_paths(settings)
    if not verified:
        check_artifact(settings)
    http_options: dict[str, Any] = (
        {"host": "127.0.0.1", "port": settings.proxy_port, "location": "HeadOnly"}
        if settings.proxy_port else {"location": "NoServer"})
    serve.start(http_options=http_options, logging_config={"enable_access_log": False})
    ray.get(registry.registry(settings.app_name).clear.remote(), timeout=30)
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
    settings = resolve_paths(settings)  # the same absolute paths on every call: same code version
    try:
        serve.run(build_app(settings, canary=canary, canary_share=canary_share),
                  name=settings.app_name,
                  route_prefix="/" if settings.proxy_port else None,
                  logging_config={"enable_access_log": False})
    except RuntimeError as exc:
        cause = _failure_cause(settings.app_name)
        raise RuntimeError(f"{exc}{': ' + cause if cause else ''}") from exc


def _failure_cause(app_name: str) -> str | None:
    """The last line of the error Serve recorded for ``app_name``'s deployments, if any."""
    with contextlib.suppress(Exception):
        app = serve.status().applications.get(app_name)
        for dep in (app.deployments.values() if app else ()):
            lines = [ln.strip() for ln in (dep.message or "").splitlines() if ln.strip()]
            errors = [ln for ln in lines if "Error" in ln or "refused" in ln]
            if errors or lines:
                return (errors or lines)[-1][:500]
    return None


def delete(app_name: str = "recdrill") -> None:
    """Delete ``app_name`` and its registry only; Serve and other applications stay (a shared
    cluster is never ``serve.shutdown()``)."""
    serve.delete(app_name)
    registry.drop(app_name)


def list_replicas(app_name: str = "recdrill") -> list[dict[str, Any]]:
    """What each replica of ``app_name`` registered, by rank: host, ports, node (short and
    full id), pid, Serve actor name, version in service and ``age_s`` since its last refresh
    (the newest registration of each rank; a dead replica's record stays until replaced)."""
    return registry.entries(app_name)


def list_endpoints(app_name: str = "recdrill") -> list[Endpoint]:
    """Addresses the replicas of ``app_name`` registered, by rank."""
    return [Endpoint(d["host"], d["http_port"], d["grpc_port"], bool(d.get("tls")))
            for d in list_replicas(app_name)]
