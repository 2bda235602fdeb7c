"""``recdrill region``: run and operate the regions a ``RegionsConfig`` file describes.

Every region and the global entry come from the configuration, never from code:

    $ recdrill region serve regions.json standby            # warm standby: serves what arrives
    $ recdrill region serve regions.json primary --publish --active
    $ recdrill region entry regions.json                    # the one address clients call
    $ recdrill region status regions.json                   # each region's versions, lag, writer
    $ recdrill region activate regions.json standby         # move the writer role (failover)
    $ recdrill region publish regions.json standby artifacts/v8
    $ recdrill region serve regions.json primary --catch-up # failback: pull, then serve
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from drills.region import RegionsConfig

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Regions: serve one, the global entry, status, writer role, publish.")

Config = Annotated[Path, typer.Argument(help="RegionsConfig JSON file.")]
Name = Annotated[str, typer.Argument(help="Region name in the config.")]


def _config(path: Path) -> RegionsConfig:
    try:
        return RegionsConfig.load(path)
    except (OSError, ValueError) as exc:
        typer.echo(f"region config {path}: {exc}", err=True)
        raise typer.Exit(2) from None


def _call(cfg: RegionsConfig, name: str, path: str, body: dict[str, Any] | None = None,
          ) -> dict[str, Any]:
    from drills.system import http_json

    try:
        spec = cfg.region(name)
    except KeyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    status, out = http_json(spec.control_url + path, body, None, 120.0)
    if status != 200:
        typer.echo(f"region {name}{path}: {status or 'down'} {out.get('error', out)}", err=True)
        raise typer.Exit(1)
    return out


@app.command()
def serve(config: Config, name: Name,
          publish: bool = typer.Option(False, help="Publish the config's artifact when the "
                                       "region's store holds no version yet."),
          active: bool = typer.Option(False, help="Start as the writer region."),
          catch_up: bool = typer.Option(False, help="First pull what the peer committed and "
                                        "this region lacks (failback).")) -> None:
    """Run region NAME (its Ray cluster, stores, replicas, front door) until interrupted."""
    from drills.region import main

    args = [str(config), name] + [f for f, on in (("--publish", publish), ("--active", active),
                                                  ("--catch-up", catch_up)) if on]
    raise typer.Exit(main(args))


@app.command()
def entry(config: Config) -> None:
    """Run the global entry over every region's front door (the first region primary, the
    others backups) until interrupted; prints its addresses as one JSON line."""
    from serving.globalentry import GlobalEntry, GlobalEntryConfig, Region

    cfg = _config(config)
    if cfg.entry is None:
        typer.echo(f"{config}: no 'entry' section (http_port, grpc_port, stats_port)", err=True)
        raise typer.Exit(2)
    door = GlobalEntry(GlobalEntryConfig(http_port=cfg.entry.http_port,
                                         grpc_port=cfg.entry.grpc_port,
                                         stats_port=cfg.entry.stats_port), cfg.entry.root)
    door.start([Region(r.name, "127.0.0.1", r.http_port, r.grpc_port, backup=i > 0)
                for i, r in enumerate(cfg.regions)])
    typer.echo(json.dumps({"http": door.http_url, "grpc": door.grpc_target,
                           "stats": door.stats_url}))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        door.stop()


@app.command()
def status(config: Config) -> None:
    """Each region's served version, committed versions, replication lag and writer role."""
    from drills.system import http_json

    cfg = _config(config)
    out = {}
    for r in cfg.regions:
        code, body = http_json(r.control_url + "/status", None, None, 5.0)
        out[r.name] = body if code == 200 else {"down": True}
    typer.echo(json.dumps(out, indent=1, default=str))


@app.command()
def activate(config: Config, name: Name) -> None:
    """Make region NAME the writer (publishes land there and are shipped to its peer)."""
    typer.echo(json.dumps(_call(_config(config), name, "/activate", {})))


@app.command()
def deactivate(config: Config, name: Name) -> None:
    """Take the writer role from region NAME."""
    typer.echo(json.dumps(_call(_config(config), name, "/deactivate", {})))


@app.command()
def publish(config: Config, name: Name,
            artifact: Annotated[Path, typer.Argument(help="Signed artifact directory.")]) -> None:
    """Publish ARTIFACT in the writer region NAME (sync mode: served once the peer holds it)."""
    typer.echo(json.dumps(_call(_config(config), name, "/publish",
                                {"artifact": str(artifact.resolve())})))


if __name__ == "__main__":
    app()
