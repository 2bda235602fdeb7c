"""``recdrill serve`` / ``python -m serving``: run the recommender on Ray Serve.

Checks every path first, starts an embedded local Ray (or joins ``--ray-address`` / ``RAY_ADDRESS``, shipping the
replicas' packages as a ``runtime_env``), deploys the current committed version (or
``--version``), starts the front door (HAProxy: one HTTP and one gRPC address over every
replica, ``serving.frontdoor``), prints one JSON line with the addresses on stdout, and serves
until interrupted; then deletes only its own application.

Example:
    $ python -m serving serve --artifact /tmp/sample-artifact --public-key /tmp/sample-artifact.pub
    {"frontdoor": {"http": "http://127.0.0.1:8000", "grpc": "127.0.0.1:9000", ...},
     "http": ["http://127.0.0.1:8100", ...], "grpc": [...], "metrics": [...], "proxy": null}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from durable.options import ARTIFACT, PUBLIC_KEY, RAY_ADDRESS, STORE_KEY, VERSION

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_START_FAILED", "app", "run", "runtime_env"]

EXIT_OK, EXIT_CONFIG, EXIT_START_FAILED = 0, 2, 4

app = typer.Typer(add_completion=False, help="Serve recommendations on Ray Serve.")


@app.callback()
def _main() -> None:
    """Serving stage commands."""


REPLICA_PACKAGES = ("serving", "export", "durable", "replication", "security")


def runtime_env() -> dict[str, Any]:
    """What a cluster recdrill joins needs to run its replicas: the packages they import,
    shipped by Ray (``py_modules``), never a ``PYTHONPATH`` pointing into this checkout."""
    import importlib

    return {"py_modules": [os.path.dirname(importlib.import_module(p).__file__ or "")
                           for p in REPLICA_PACKAGES]}


def run(settings: Any, ray_address: str | None, stop: threading.Event,
        frontdoor: Any = None, workdir: str | None = None) -> dict[str, Any]:
    """Start Ray (embedded unless ``ray_address``), deploy (``serve`` verified the artifact
    first), start the front door
    (``frontdoor``: a FrontDoorConfig, or None for none), print the addresses as one JSON line,
    wait for ``stop``; then delete only recdrill's application (other apps on a shared
    cluster stay)."""
    import tempfile

    import ray

    from serving.config import resolve_paths
    from serving.deployment import delete, deploy, list_endpoints
    from serving.frontdoor import FrontDoor

    settings = resolve_paths(settings)  # before Ray: a bad path fails in a second, by name
    if ray_address:
        ray.init(address=ray_address, logging_level=logging.WARNING, runtime_env=runtime_env())
    else:
        ray.init(include_dashboard=False, object_store_memory=100 * 1024 * 1024,
                 logging_level=logging.WARNING)
    door = None
    try:
        endpoints = deploy(settings, verified=True)  # serve() verified it before Ray started
        info: dict[str, Any] = {}
        if frontdoor is not None:
            work = Path(workdir or tempfile.mkdtemp(prefix="recdrill-frontdoor-"))
            door = FrontDoor(frontdoor, work)
            door.start(endpoints)
            door.watch(lambda: list_endpoints(settings.app_name))
            info["frontdoor"] = {"http": door.http_url, "grpc": door.grpc_target,
                                 "metrics": door.metrics_url, "config": str(door.config_path),
                                 "prometheus_file_sd": str(door.targets_path)}
        info.update({"tls": settings.tls_cert is not None,
                     "http": [e.http_url for e in endpoints],
                     "grpc": [e.grpc_target for e in endpoints],
                     "metrics": [f"{e.http_url}/metrics" for e in endpoints],
                     "proxy": (f"http://127.0.0.1:{settings.proxy_port}" if settings.proxy_port
                               else None)})
        typer.echo(json.dumps(info))
        sys.stdout.flush()
        stop.wait()
        return info
    finally:
        if door is not None:
            door.stop()
        with contextlib.suppress(Exception):
            delete(settings.app_name)
        ray.shutdown()


@app.command()
def serve(
    public_key: Annotated[str, PUBLIC_KEY],
    artifact: Annotated[str | None, ARTIFACT] = None,
    store: Annotated[str | None, typer.Option(
        "--store", envvar="RECDRILL_STORE",
        help="Version store URL/path to serve from, or 'node' (each node's own store).")] = None,
    store_key: Annotated[list[str] | None, STORE_KEY] = None,
    version: Annotated[str | None, VERSION] = None,
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
    tokens: str = typer.Option(None, "--tokens", envvar="RECDRILL_TOKENS",
                               help="Token table (`recdrill token create`): roles reader / "
                               "operator / admin on every route but health and metrics."),
    audit_log: str = typer.Option(None, "--audit", envvar="RECDRILL_AUDIT_LOG",
                                  help="Audit chain for admin actions (default: "
                                  "~/.local/state/recdrill/audit.jsonl)."),
    tls_cert: str = typer.Option(None, "--tls-cert", envvar="RECDRILL_TLS_CERT",
                                 help="PEM certificate: replicas and the front door serve HTTPS "
                                 "and gRPC over TLS only (default: plaintext)."),
    tls_key: str = typer.Option(None, "--tls-key", envvar="RECDRILL_TLS_KEY",
                                help="Unencrypted PEM private key of --tls-cert."),
    tls_ca: str = typer.Option(None, "--tls-ca", envvar="RECDRILL_TLS_CA",
                               help="PEM CA that signed --tls-cert; the front door verifies the "
                               "replicas against it (default: the system's CAs)."),
    pseudonym_key: str = typer.Option(None, "--pseudonym-key", envvar="RECDRILL_PSEUDONYM_KEY",
                                      help="HMAC key the artifacts' user ids were pseudonymised "
                                      "with at export (default: <key dir>/pseudonym.key)."),
    forget_register: str = typer.Option(None, "--forget-register",
                                        envvar="RECDRILL_FORGET_REGISTER",
                                        help="Forget-request register: its users are answered "
                                        "as unknown (default: <state dir>/forget.jsonl)."),
    ray_address: Annotated[str | None, RAY_ADDRESS] = None,
    frontdoor: bool = typer.Option(True, "--frontdoor/--no-frontdoor",
                                   envvar="RECDRILL_FRONTDOOR",
                                   help="One HTTP + gRPC address (HAProxy) over the replicas."),
    frontdoor_http_port: int = typer.Option(8000, envvar="RECDRILL_FRONTDOOR_HTTP_PORT",
                                            help="The front door's HTTP port."),
    frontdoor_grpc_port: int = typer.Option(9000, envvar="RECDRILL_FRONTDOOR_GRPC_PORT",
                                            help="The front door's gRPC (h2) port."),
    frontdoor_metrics_port: int = typer.Option(8404, envvar="RECDRILL_FRONTDOOR_METRICS_PORT",
                                               help="HAProxy's Prometheus /metrics and /stats."),
    frontdoor_dir: str = typer.Option(None, envvar="RECDRILL_FRONTDOOR_DIR",
                                      help="Where the front door's config, log and Prometheus "
                                      "file_sd targets go (default: a temp dir)."),
) -> None:
    """Serve the current committed version behind one front door; prints its HTTP, gRPC and
    metrics addresses (and each replica's) as one JSON line."""
    from pydantic import ValidationError

    from security.tls import client_context, server_context, tls_files
    from serving.config import ServeSettings, resolve_paths
    from serving.deployment import check_artifact
    from serving.errors import ModelLoadError  # before the try: its except clause names it
    from serving.frontdoor import FrontDoorConfig

    try:
        settings = ServeSettings(
            artifact=artifact, store=store, public_key=public_key, key_files=tuple(store_key or ()),
            version=version, host=host, http_port=http_port, grpc_port=grpc_port,
            proxy_port=proxy_port, replicas=replicas, num_cpus=num_cpus, batching=batching,
            max_batch_size=max_batch_size, max_in_flight=max_in_flight, deadline_s=deadline_s,
            api_token=api_token, admin_token=admin_token, tokens_file=tokens,
            audit_log=audit_log, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca,
            pseudonym_key=pseudonym_key, forget_register=forget_register)
        resolved = resolve_paths(settings)
        tls = tls_files(resolved.tls_cert, resolved.tls_key, resolved.tls_ca)
        if tls is not None:  # read here: a bad file fails now, by name, not in every replica
            server_context(tls)
            if tls.ca is not None:
                client_context(tls.ca)
        door = (FrontDoorConfig(http_port=frontdoor_http_port, grpc_port=frontdoor_grpc_port,
                                host=host, stats_port=frontdoor_metrics_port, tls=tls,
                                replica_ca=None if tls is None else tls.ca)
                if frontdoor else None)
        check_artifact(resolved)
    except (ValidationError, ValueError, ModelLoadError) as exc:
        typer.echo(f"serve: bad configuration: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run(settings, ray_address, stop, door, frontdoor_dir)
    except Exception as exc:  # noqa: BLE001 - reported to the user, exit non-zero
        typer.echo(f"serve: failed to start: {exc}", err=True)
        raise typer.Exit(EXIT_START_FAILED) from None
