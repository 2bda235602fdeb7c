"""One region of a multi-region deployment, run as its own process tree: a Ray cluster (head +
workers, its own temp dir and ports), its replicated stores, the served app, its front door,
cross-region replication to its peer, and a small JSON control API on loopback.

The regions are described by configuration (``RegionsConfig``, a JSON file), never by code:
which ports, which directories, which mode (``async``: a publish returns after the local
quorum and a replicator ships it to the peer; ``sync``: a version is served only once the peer
region holds it). One region is *active* (it publishes and ships to its peer); the others
follow: whatever their own primary store holds as current they distribute to their nodes and
serve (warm standby). Write failover is explicit (``POST /activate``), read failover is the
global entry's (``serving.globalentry``). A region that comes back pulls what it missed from
its peer (``--catch-up``) before it serves.

Control API (``127.0.0.1:<control_port>``): ``GET /status``, ``GET /metrics`` (Prometheus:
replication lag), ``POST /publish {"artifact": DIR}``, ``POST /activate``, ``POST /deactivate``.

Example:
    $ recdrill region serve regions.json primary --publish --active
    {"region": "primary", "frontdoor": {"http": "http://127.0.0.1:8000", ...}, ...}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EntrySpec", "RegionProcess", "RegionSpec", "RegionsConfig", "main"]

log = logging.getLogger("recdrill.region")


class RegionSpec(BaseModel):
    """One region: where it keeps its state and where it listens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=r"^[a-z][a-z0-9-]{0,30}$")
    root: Path = Field(..., description="The region's directory: stores, front door, logs.")
    http_port: int = Field(..., gt=0, lt=65536, description="Front door HTTP port.")
    grpc_port: int = Field(..., gt=0, lt=65536, description="Front door gRPC (h2) port.")
    control_port: int = Field(..., gt=0, lt=65536, description="Control API port (loopback).")
    stats_port: int | None = Field(None, gt=0, lt=65536, description="Front door metrics.")
    workers: int = Field(1, ge=0, le=8)
    replicas: int = Field(2, ge=1, le=8)
    w: int = Field(1, ge=1, description="Verified node copies a local publish needs.")

    @property
    def store_dir(self) -> Path:
        """The region's primary version store (``drills.system.System``'s layout)."""
        return self.root / "stores" / "primary"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


class EntrySpec(BaseModel):
    """Where the global entry (``serving.globalentry``) listens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    http_port: int = Field(..., gt=0, lt=65536)
    grpc_port: int | None = Field(None, gt=0, lt=65536)
    stats_port: int | None = Field(None, gt=0, lt=65536, description="HAProxy stats/metrics.")
    root: Path = Field(Path("global-entry"), description="Config, log and state directory.")


class RegionsConfig(BaseModel):
    """Every region (the first is the primary, the others standbys in order of preference),
    the replication mode, what is served, and the global entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: tuple[RegionSpec, ...] = Field(..., min_length=2)
    mode: Literal["async", "sync"] = "async"
    artifact: Path
    public_key: Path
    store_key: Path
    checkpoint: Path | None = None
    ship_interval_s: float = Field(0.2, gt=0, le=60)
    sync_timeout_s: float = Field(30.0, gt=0)
    entry: EntrySpec | None = None

    def region(self, name: str) -> RegionSpec:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(f"no region {name!r}; expected one of {[r.name for r in self.regions]}")

    def peer(self, name: str) -> RegionSpec:
        """The region ``name`` replicates to (the next one in order)."""
        names = [r.name for r in self.regions]
        return self.regions[(names.index(name) + 1) % len(names)]

    @classmethod
    def load(cls, path: Path) -> RegionsConfig:
        return cls.model_validate_json(path.read_text())


class RegionProcess:
    """The region's long-lived driver: serve, follow the store, ship, answer the control API."""

    def __init__(self, cfg: RegionsConfig, name: str) -> None:
        self.cfg, self.spec, self.peer = cfg, cfg.region(name), cfg.peer(name)
        self.sud: Any = None
        self.replicator: Any = None
        self.active = False
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # -- stores ---------------------------------------------------------------------------
    def _vs(self, spec: RegionSpec) -> Any:
        from replication.repo import VersionStore
        from replication.store import open_store

        return VersionStore(open_store(str(spec.store_dir)), self.sud.rc.keyring,
                            node=f"{spec.name} primary")

    def _replicator(self) -> Any:
        from replication.region import RegionReplicator

        return RegionReplicator(self._vs(self.spec), self._vs(self.peer),
                                str(self.cfg.public_key), interval_s=self.cfg.ship_interval_s,
                                label=f"{self.spec.name}->{self.peer.name}")

    def _event(self, kind: str, **data: Any) -> None:
        entry = {"t": round(time.time(), 3), "kind": kind, **data}
        self.events.append(entry)
        log.info("%s %s", kind, data)

    def catch_up(self) -> dict[str, Any]:
        """Pull every committed version (and the refs) the peer holds and this region lacks:
        failback after an outage."""
        self.spec.store_dir.mkdir(parents=True, exist_ok=True)
        report = self._replicator().catch_up()
        out = report.to_dict() if hasattr(report, "to_dict") else dict(vars(report))
        self._event("catch-up", **{k: out[k] for k in ("versions", "seconds") if k in out})
        return out

    # -- roles ----------------------------------------------------------------------------
    def peer_up(self) -> bool:
        """The peer region answers its control API. Its disk may be reachable while it is
        down (on one machine it always is); nothing is shipped into a region that is down:
        it pulls what it missed when it comes back (``--catch-up``)."""
        import urllib.request

        try:
            with urllib.request.urlopen(self.peer.control_url + "/status", timeout=2.0) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def activate(self) -> dict[str, Any]:
        """Become the writer: publishes land here and are shipped to the peer by a replicator
        started once the peer is up (in ``sync`` mode a publish also ships and waits)."""
        with self._lock:
            self.active = True
            if self.replicator is None:  # both modes: what a publish did not ship itself
                self.replicator = self._replicator()
                threading.Thread(target=self._ship_when_peer_up, args=(self.replicator,),
                                 name="ship-when-up", daemon=True).start()
        self._event("activate")
        return {"active": True, "peer_up": self.peer_up()}

    def _ship_when_peer_up(self, replicator: Any) -> None:
        while not self._stop.is_set() and self.replicator is replicator:
            if self.peer_up():
                with self._lock:
                    if self.replicator is replicator:
                        replicator.start()
                        self._event("shipping", to=self.peer.name)
                return
            self._stop.wait(0.5)

    def deactivate(self) -> dict[str, Any]:
        with self._lock:
            if self.replicator is not None:
                self.replicator.close()
                self.replicator = None
            self.active = False
        self._event("deactivate")
        return {"active": False}

    def publish(self, artifact: str) -> dict[str, Any]:
        """Publish locally (W verified copies), then ship: at once and waited for in ``sync``
        mode (on failure the version is taken out of current again), by the replicator in the
        background in ``async`` mode."""
        if not self.active:
            raise PermissionError(f"region {self.spec.name} is not active: POST /activate first")
        t0 = time.monotonic()
        result = self.sud.rc.publish(artifact)
        version = result["version"]
        if self.cfg.mode == "sync":
            if not self.peer_up():
                with contextlib.suppress(Exception):
                    self.sud.rc.rollback()
                raise RuntimeError(f"sync mode: region {self.peer.name} is down, so {version} "
                                   "cannot be held there; it is not served")
            try:
                self.replicator.ship_sync(version, timeout_s=self.cfg.sync_timeout_s)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self.sud.rc.rollback()
                raise RuntimeError(f"{self.peer.name} did not confirm {version} within "
                                   f"{self.cfg.sync_timeout_s:g} s ({exc}); it is not "
                                   "served") from exc
        else:
            self.replicator.notify()
        result["publish_s"] = round(time.monotonic() - t0, 3)
        result["mode"] = self.cfg.mode
        self._event("publish", version=version, seconds=result["publish_s"])
        return result

    # -- follow the store -------------------------------------------------------------------
    def _servable(self, version: str) -> bool:
        """In sync mode the active region serves a version only once the peer holds it."""
        if self.cfg.mode != "sync" or not self.active:
            return True
        with contextlib.suppress(Exception):
            return version in self._vs(self.peer).committed()
        return False

    def follow_once(self) -> str | None:
        """Serve the primary store's current version if it changed; returns the new one."""
        from serving.deployment import set_version

        current = self.sud.current_version()
        if current is None or current == self.sud.version or not self._servable(current):
            return None
        self.sud.rc.catch_up()
        set_version(self.sud.settings, current)
        previous, self.sud.version = self.sud.version, current
        self._event("serve", version=current, previous=previous)
        return current

    def _follow(self) -> None:
        while not self._stop.wait(self.cfg.ship_interval_s):
            try:
                self.follow_once()
            except Exception as exc:  # noqa: BLE001 - logged, tried again next round
                log.warning("follow: %r", exc)

    # -- control API ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        lag = None
        if self.replicator is not None:
            got = self.replicator.lag()
            lag = got.to_dict() if hasattr(got, "to_dict") else vars(got)
        committed: list[str] = []
        with contextlib.suppress(Exception):
            committed = sorted(self._vs(self.spec).committed())
        door = self.sud.frontdoor
        ready = 0
        if self.sud.settings is not None:
            with contextlib.suppress(Exception):
                ready = len(self.sud.ready_replicas())
        return {"region": self.spec.name, "active": self.active, "mode": self.cfg.mode,
                "version": self.sud.version, "current": self.sud.current_version(),
                "committed": committed, "lag": lag, "serving": door is not None,
                "ready_replicas": ready,
                "frontdoor": None if door is None else {"http": door.http_url,
                                                        "grpc": door.grpc_target},
                "events": self.events[-20:]}

    def _server(self) -> ThreadingHTTPServer:
        proc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                return

            def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/status":
                    self._send(200, proc.status())
                elif self.path == "/metrics":
                    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if self.path == "/publish":
                        if not isinstance(body.get("artifact"), str):
                            self._send(400, {"error": "body: expected {\"artifact\": DIR}"})
                            return
                        self._send(200, proc.publish(body["artifact"]))
                    elif self.path == "/activate":
                        self._send(200, proc.activate())
                    elif self.path == "/deactivate":
                        self._send(200, proc.deactivate())
                    else:
                        self._send(404, {"error": f"no route {self.path}"})
                except json.JSONDecodeError as exc:
                    self._send(400, {"error": f"body is not JSON: {exc}"})
                except PermissionError as exc:
                    self._send(HTTPStatus.CONFLICT, {"error": str(exc)})
                except Exception as exc:  # noqa: BLE001 - the caller gets the reason
                    self._send(500, {"error": f"{type(exc).__name__}: {exc}"})

        return ThreadingHTTPServer(("127.0.0.1", self.spec.control_port), Handler)

    # -- lifecycle --------------------------------------------------------------------------
    def run(self, *, publish: bool, active: bool, catch_up: bool,
            ready: Any = None, wait_s: float = 300.0) -> None:
        """Start everything, report ``ready`` (one JSON line), serve until ``stop``."""
        from drills.scenario import ClusterShape
        from drills.system import DrillInputs, open_system

        cfg, spec = self.cfg, self.spec
        inputs = DrillInputs(cfg.artifact, cfg.public_key, cfg.checkpoint, None, cfg.store_key)
        shape = ClusterShape(workers=max(1, spec.workers), replicas=spec.replicas, w=spec.w)
        with open_system(shape, inputs, spec.root) as sud:
            self.sud = sud
            server = self._server()  # up first: the peer ships only to a region that answers
            threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
            try:
                caught = self.catch_up() if catch_up else None
                deadline = time.monotonic() + wait_s
                while not publish and sud.current_version() is None:  # a standby's first one
                    if time.monotonic() > deadline or self._stop.is_set():
                        raise TimeoutError(f"{spec.name}: no version arrived in "
                                           f"{spec.store_dir} within {wait_s:g} s")
                    time.sleep(0.2)
                has_version = sud.current_version() is not None
                started = sud.start(publish=publish and not has_version)
                door = sud.start_frontdoor(spec.http_port, spec.grpc_port, spec.stats_port)
                if active:
                    self.activate()
                threading.Thread(target=self._follow, name="follow", daemon=True).start()
                line = {"region": spec.name, "pid": os.getpid(), "version": sud.version,
                        "frontdoor": door, "control": spec.control_url, "active": self.active,
                        "ray_root": str(sud.local.root) if sud.local is not None else None,
                        "caught_up": caught, "started": started}
                if ready is not None:
                    ready(line)
                self._stop.wait()
            finally:
                server.shutdown()
                self.deactivate()

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    """``python -m drills.region CONFIG NAME [--publish] [--active] [--catch-up]``."""
    parser = argparse.ArgumentParser(prog="python -m drills.region", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="RegionsConfig JSON file.")
    parser.add_argument("name", help="This region's name in the config.")
    parser.add_argument("--publish", action="store_true",
                        help="Publish the config's artifact when the store holds no version.")
    parser.add_argument("--active", action="store_true", help="Start as the writer region.")
    parser.add_argument("--catch-up", action="store_true",
                        help="First pull what the peer holds and this region lacks (failback).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = RegionsConfig.load(args.config)
        proc = RegionProcess(cfg, args.name)
    except (OSError, ValueError, KeyError) as exc:
        print(f"region: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: proc.stop())
    signal.signal(signal.SIGINT, lambda *_: proc.stop())

    def ready(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line, default=str) + "\n")
        sys.stdout.flush()

    proc.run(publish=args.publish, active=args.active, catch_up=args.catch_up, ready=ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
