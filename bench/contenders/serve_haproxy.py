"""Contender: Ray Serve's own HAProxy mode, on a Ray instance of its own.

``RAY_SERVE_ENABLE_HA_PROXY=1`` and ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` are set for the whole
cluster (this process starts it, so every Ray process inherits them); Serve then runs HAProxy
on ``--port`` routing to each replica's direct-ingress HTTP server. The deployment is the
FastAPI + onnxruntime baseline's handler (:class:`~bench.contenders.ort_model.OrtModel`) as a
``@serve.ingress(FastAPI)`` deployment: onnxruntime only, no torch. Access logs are off.

Everything HAProxy-mode writes or binds is private to this instance (``--workdir``): config,
admin and metrics sockets, server state, stats/metrics ports and the replica port ranges, and
HAProxy runs one thread (``RAY_SERVE_HAPROXY_NBTHREAD``), as recdrill's front door does.

Run: ``python -m bench.contenders.serve_haproxy --artifact A --port P --replicas N --workdir W``;
prints one JSON line when ready and serves until SIGTERM/SIGINT.
"""

# No ``from __future__ import annotations`` here: Serve's class-based view re-wraps the
# FastAPI handlers and FastAPI would then resolve string annotations in Serve's module (the
# request body would turn into a query parameter).
import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.schemas import RecommendRequest  # module level: FastAPI resolves the annotation here

__all__ = ["APP_NAME", "build_app", "haproxy_env", "main"]

APP_NAME = "ort-haproxy"


def haproxy_env(workdir: Path, free_port: Callable[[], int], port_span: int = 50) -> dict[str, str]:
    """The environment that turns Serve's HAProxy mode on, with every path and port private.

    Example:
        >>> ports = iter(range(20000, 20010))
        >>> env = haproxy_env(Path("/w"), lambda: next(ports))
        >>> env["RAY_SERVE_ENABLE_HA_PROXY"], env["RAY_SERVE_HAPROXY_NBTHREAD"]
        ('1', '1')
        >>> env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]
        '/w/h/haproxy.cfg'
    """
    base = workdir / "h"  # HAProxy adds the 56-character node id; socket paths max 97 chars
    http_lo, grpc_lo = _free_range(free_port, port_span), _free_range(free_port, port_span)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_NBTHREAD": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http_lo),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http_lo + port_span),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_lo),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_lo + port_span),
    }


def _free_range(free_port: Callable[[], int], span: int) -> int:
    # An ephemeral port the kernel just handed out, rounded down: unlikely to be in use by a
    # server; Serve retries the next port of the range on a collision anyway.
    return max(20000, min(free_port(), 60000 - span) // 100 * 100)


def build_app(artifact: Path, replicas: int, max_ongoing_requests: int | None = None) -> Any:
    """The Serve application: ``replicas`` copies of the onnxruntime handler behind FastAPI."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from ray import serve

    api = FastAPI(title="serve-haproxy contender")
    options: dict[str, Any] = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": 1}}
    if max_ongoing_requests is not None:
        options["max_ongoing_requests"] = max_ongoing_requests

    @serve.deployment(**options)
    @serve.ingress(api)
    class OrtRecommender:
        def __init__(self, artifact: str) -> None:
            from bench.contenders.ort_model import OrtModel

            self.model = OrtModel.load(Path(artifact))

        @api.get("/healthz")
        async def healthz(self) -> dict[str, Any]:
            return {"status": "ok", "model_version": self.model.version, "pid": os.getpid()}

        @api.post("/v1/recommend")
        async def recommend(self, request: RecommendRequest) -> Any:
            from serving.errors import InvalidRequest

            try:
                return self.model.recommend(request, "serve-haproxy")
            except InvalidRequest as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

    return OrtRecommender.bind(str(artifact.resolve()))  # type: ignore[attr-defined]


def main() -> None:
    """Start the Ray instance with HAProxy mode on, deploy, print a JSON line, serve until told."""
    from serving.testing import free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--max-ongoing-requests", type=int, default=None,
                        help="Serve's per-replica limit (default: Serve's own default)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for key, value in haproxy_env(args.workdir, free_port).items():
        os.environ.setdefault(key, value)  # before ray is imported: Serve reads them at import
    repo = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)

    import ray
    from ray import serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ray.init(include_dashboard=False, object_store_memory=100 * 1024 * 1024,
             logging_level=logging.WARNING, _temp_dir=str(args.workdir / "ray"))
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port},
                    logging_config={"enable_access_log": False})
        serve.run(build_app(args.artifact, args.replicas, args.max_ongoing_requests),
                  name=APP_NAME, route_prefix="/", logging_config={"enable_access_log": False})
        print(json.dumps({"http": f"http://127.0.0.1:{args.port}", "replicas": args.replicas,
                          "env": {k: v for k, v in os.environ.items()
                                  if k.startswith("RAY_SERVE_")}}), flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
