"""``recdrill serve`` / ``python -m serving``: run the recommender on Ray Serve.

Starts an embedded local Ray (or joins ``RAY_ADDRESS``), deploys the current committed
version (or ``--version``), prints one JSON line with the HTTP, gRPC and metrics addresses on
stdout, and serves until interrupted.

Example:
    $ python -m serving serve --artifact /tmp/sample-artifact --public-key /tmp/sample-artifact.pub
    {"http": ["http://127.0.0.1:8100", ...], "grpc": [...], "metrics": [...], "version": "..."}
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import typer

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_START_FAILED", "app", "run"]

EXIT_OK, EXIT_CONFIG, EXIT_START_FAILED = 0, 2, 4

app = typer.Typer(add_completion=False, help="Serve recommendations on Ray Serve.")


@app.callback()
def _main() -> None:
    """Serving stage commands."""


def run(settings: Any, ray_address: str | None, stop: threading.Event) -> dict[str, Any]:
    """Start Ray (embedded unless ``ray_address``), deploy, print addresses, wait for ``stop``."""
    import ray
    from ray import serve

    from serving.deployment import deploy

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if ray_address:
        ray.init(address=ray_address, logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"PYTHONPATH": repo}})
    else:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (repo, os.environ.get("PYTHONPATH")) if p)
        ray.init(include_dashboard=False, object_store_memory=100 * 1024 * 1024,
                 logging_level=logging.WARNING)
    try:
        endpoints = deploy(settings)
        info = {"http": [e.http_url for e in endpoints],
                "grpc": [e.grpc_target for e in endpoints],
                "metrics": [f"{e.http_url}/metrics" for e in endpoints],
                "proxy": (f"http://127.0.0.1:{settings.proxy_port}" if settings.proxy_port
                          else None)}
        typer.echo(json.dumps(info))
        sys.stdout.flush()
        stop.wait()
        return info
    finally:
        serve.shutdown()
        ray.shutdown()


@app.command()
def serve(
    artifact: str = typer.Option(None, envvar="RECDRILL_ARTIFACT",
                                 help="Artifact directory to serve (verified before use)."),
    store: str = typer.Option(None, envvar="RECDRILL_STORE",
                              help="Replication store URL/path, or 'node' (each node's store)."),
    public_key: str = typer.Option(..., envvar="RECDRILL_PUBLIC_KEY",
                                   help="Artifact signing public key."),
    key_file: list[str] = typer.Option([], envvar="RECDRILL_STORE_KEY_FILES",
                                       help="Store encryption key file (repeatable)."),
    version: str = typer.Option(None, envvar="RECDRILL_VERSION", help="Version (default: current)."),
    host: str = typer.Option("127.0.0.1", envvar="RECDRILL_HOST", help="Interface to bind."),
    http_port: int = typer.Option(8100, envvar="RECDRILL_HTTP_PORT",
                                  help="HTTP port of replica 0 (replica r: +r)."),
    grpc_port: int = typer.Option(9100, envvar="RECDRILL_GRPC_PORT",
                                  help="gRPC port of replica 0 (replica r: +r)."),
    proxy_port: int = typer.Option(None, envvar="RECDRILL_PROXY_PORT",
                                   help="Also open Serve's standard proxy here (slower)."),
    replicas: int = typer.Option(2, envvar="RECDRILL_REPLICAS", help="Model replicas."),
    num_cpus: float = typer.Option(1.0, envvar="RECDRILL_REPLICA_CPUS", help="CPUs per replica."),
    batching: bool = typer.Option(True, envvar="RECDRILL_BATCHING", help="Dynamic batching."),
    max_batch_size: int = typer.Option(16, envvar="RECDRILL_MAX_BATCH", help="Largest batch."),
    max_in_flight: int = typer.Option(48, envvar="RECDRILL_MAX_IN_FLIGHT",
                                      help="Admitted requests per replica."),
    deadline_s: float = typer.Option(1.0, envvar="RECDRILL_DEADLINE_S",
                                     help="Server-side deadline per request."),
    api_token: str = typer.Option(None, envvar="RECDRILL_API_TOKEN",
                                  help="Token for recommend routes (default: open)."),
    admin_token: str = typer.Option(None, envvar="RECDRILL_ADMIN_TOKEN",
                                    help="Token for admin routes (default: admin off)."),
    ray_address: str = typer.Option(None, envvar="RAY_ADDRESS",
                                    help="Existing Ray cluster (default: embedded local Ray)."),
) -> None:
    """Serve the current committed version; prints HTTP, gRPC and metrics addresses as JSON."""
    from pydantic import ValidationError

    from serving.config import ServeSettings

    try:
        settings = ServeSettings(
            artifact=artifact, store=store, public_key=public_key, key_files=tuple(key_file),
            version=version, host=host, http_port=http_port, grpc_port=grpc_port,
            proxy_port=proxy_port, replicas=replicas, num_cpus=num_cpus, batching=batching,
            max_batch_size=max_batch_size, max_in_flight=max_in_flight, deadline_s=deadline_s,
            api_token=api_token, admin_token=admin_token)
    except ValidationError as exc:
        typer.echo(f"serve: bad configuration: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run(settings, ray_address, stop)
    except Exception as exc:  # noqa: BLE001 - reported to the user, exit non-zero
        typer.echo(f"serve: failed to start: {exc}", err=True)
        raise typer.Exit(EXIT_START_FAILED) from None
