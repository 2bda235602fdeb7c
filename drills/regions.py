"""The system under a region drill: two regions, each its own process tree (``drills.region``:
Ray cluster, stores, replicas, front door), and one global entry (``serving.globalentry``,
HAProxy with the standby as a ``backup`` server) that a plain client calls.

A region is lost the way a data centre is: every process of its tree (region driver, GCS,
raylets, workers, replicas, front door) is SIGKILLed at once. Its disk survives (the stores
stay where they were), so it can come back: it pulls what the other region committed while it
was away, serves that, and the global entry moves traffic back once its checks pass.

Example:
    >>> with open_regions(shape, inputs, Path("runs/drill/work")) as sud:  # doctest: +SKIP
    ...     sud.start(); sud.start_frontdoor()
    ...     sud.kill_region("primary")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from drills.errors import EnvironmentError_
from drills.region import RegionsConfig, RegionSpec
from drills.scenario import ClusterShape
from drills.system import DrillInputs, Replica, http_json
from serving.testing import free_port

__all__ = ["RegionHandle", "TwoRegions", "open_regions"]

REPO = Path(__file__).resolve().parents[1]
PRIMARY, STANDBY = "primary", "standby"


@dataclass
class RegionHandle:
    """A running region process and what it reported when ready."""

    spec: RegionSpec
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


_HANDED_OUT: set[int] = set()


def stable_port(low: int = 20000, high: int = 32000, tries: int = 200) -> int:
    """A free loopback port that stays free while a region starts and restarts: outside the
    kernel's ephemeral range (where ``free_port`` draws, and where Ray's raylets, GCS clients
    and every outgoing connection draw too) and above Ray's worker ports (10002-19999).
    A port picked from the ephemeral range was taken by a Ray process before the region's
    front door bound it."""
    import random
    import socket

    for _ in range(tries):
        port = random.randrange(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise EnvironmentError_(f"no free port in {low}-{high} after {tries} tries")


class TwoRegions:
    """Two regions and the global entry; the same surface the drill runner uses of
    ``drills.system.System`` (start, start_frontdoor, addresses, ...) plus region faults."""

    def __init__(self, root: Path, inputs: DrillInputs, shape: ClusterShape) -> None:
        from replication.keys import generate_key_file

        self.root, self.inputs, self.shape = root, inputs, shape
        key = inputs.key_file or root / "store.key"
        if not key.exists():
            generate_key_file(key)
        specs = tuple(RegionSpec(name=name, root=root / name, http_port=stable_port(),
                                 grpc_port=stable_port(), control_port=stable_port(),
                                 workers=shape.workers, replicas=shape.replicas,
                                 w=min(shape.w, shape.workers + 1))
                      for name in (PRIMARY, STANDBY))
        self.cfg = RegionsConfig(regions=specs, mode=shape.region_mode,
                                 artifact=inputs.artifact, public_key=inputs.public_key,
                                 store_key=key, checkpoint=inputs.checkpoint)
        self.config_path = root / "regions.json"
        self.handles: dict[str, RegionHandle] = {}
        self.entry: Any = None
        self.version: str | None = None
        self.frontdoor: Any = None  # the global entry, under the name the runner reads
        self.rc = None
        self.settings = None
        self.killed: list[str] = []
        self.ray_roots: set[str] = set()

    mode = "two-regions"

    # -- what the runner reads -----------------------------------------------------------
    @staticmethod
    def nodes() -> list[dict[str, Any]]:
        return []

    def alive_nodes(self) -> int:
        return sum(h.alive for h in self.handles.values())

    @staticmethod
    def head_node_id() -> str | None:
        return None

    @staticmethod
    def replicas() -> list[Replica]:
        return []

    def addresses(self, protocol: str, which: str = "all", via: str = "frontdoor") -> list[str]:
        if self.entry is None:
            raise EnvironmentError_("the global entry is not running")
        return [self.entry.http_url if protocol == "http" else self.entry.grpc_target]

    # -- regions ----------------------------------------------------------------------------
    def spawn(self, name: str, *, publish: bool = False, active: bool = False,
              catch_up: bool = False, timeout_s: float = 300.0) -> RegionHandle:
        """Start region ``name``'s process tree; returns once it serves (its ready line)."""
        spec = self.cfg.region(name)
        spec.root.mkdir(parents=True, exist_ok=True)
        log_path = spec.root / f"region-{len(self.killed)}.log"
        cmd = [sys.executable, "-m", "drills.region_cli", "serve", str(self.config_path), name]
        cmd += [flag for flag, on in (("--publish", publish), ("--active", active),
                                      ("--catch-up", catch_up)) if on]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        env.pop("RAY_ADDRESS", None)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env,
                                    cwd=REPO, start_new_session=True)
        ready = self._ready_line(proc, name, log_path, timeout_s)
        if ready.get("ray_root"):
            self.ray_roots.add(str(ready["ray_root"]))
        handle = RegionHandle(spec, proc, ready, log_path)
        self.handles[name] = handle
        return handle

    @staticmethod
    def _ready_line(proc: subprocess.Popen[bytes], name: str, log_path: Path,
                    timeout_s: float) -> dict[str, Any]:
        assert proc.stdout is not None
        found: dict[str, Any] = {}

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if isinstance(line, dict) and line.get("region") == name:
                        found.update(line)
                        break
            # keep draining so the region never blocks on a full pipe
            for _ in proc.stdout:
                pass

        reader = threading.Thread(target=read, name=f"region-{name}-stdout", daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout_s
        while not found:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise EnvironmentError_(f"region {name} exited ({proc.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                raise EnvironmentError_(f"region {name} not ready after {timeout_s:g} s; see "
                                        f"{log_path}")
            time.sleep(0.2)
        return found

    def control(self, name: str, path: str, body: dict[str, Any] | None = None,
                timeout_s: float = 60.0) -> tuple[int, dict[str, Any]]:
        return http_json(self.cfg.region(name).control_url + path, body, None, timeout_s)

    def start(self, timeout_s: float = 300.0) -> dict[str, Any]:
        """Standby first (it waits for its first version), then the primary, which publishes
        the artifact and ships it; returns once the standby serves the same version (warm)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.cfg.model_dump_json(indent=1))
        t0 = time.monotonic()
        standby: dict[str, Any] = {}
        error: list[BaseException] = []

        def start_standby() -> None:
            try:
                standby["h"] = self.spawn(STANDBY, timeout_s=timeout_s)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                error.append(exc)

        thread = threading.Thread(target=start_standby, name="standby-start", daemon=True)
        thread.start()
        primary = self.spawn(PRIMARY, publish=True, active=True, timeout_s=timeout_s)
        thread.join(timeout_s)
        if error:
            raise error[0]
        self.version = primary.ready["version"]
        if standby["h"].ready["version"] != self.version:
            raise EnvironmentError_(f"standby serves {standby['h'].ready['version']}, primary "
                                    f"{self.version}")
        return {"version": self.version, "mode": self.cfg.mode,
                "regions": {n: {"frontdoor": h.ready["frontdoor"], "pid": h.proc.pid,
                                "control": h.ready["control"]} for n, h in self.handles.items()},
                "start_s": round(time.monotonic() - t0, 2)}

    def start_frontdoor(self) -> dict[str, Any]:
        """The global entry: the primary region's front door, the standby's as ``backup``."""
        from serving.globalentry import GlobalEntry, GlobalEntryConfig, Region

        self.entry = GlobalEntry(GlobalEntryConfig(http_port=free_port(), grpc_port=free_port(),
                                                   stats_port=free_port()),
                                 self.root / "global-entry")
        regions = [Region(s.name, "127.0.0.1", s.http_port, s.grpc_port, backup=s.name != PRIMARY)
                   for s in self.cfg.regions]
        self.entry.start(regions)
        self.frontdoor = self.entry
        return {"http": self.entry.http_url, "grpc": self.entry.grpc_target,
                "stats": self.entry.stats_url, "pid": self.entry.pid}

    def live_region(self) -> str | None:
        return None if self.entry is None else self.entry.live_region()

    def region_pids(self, name: str) -> list[int]:
        """Every process of region ``name``: its driver, what it started, and any Ray process
        of its cluster found by its temp dir."""
        handle = self.handles.get(name)
        pids: set[int] = set()
        if handle is not None and handle.alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(handle.proc.pid)
                pids |= {root.pid, *(c.pid for c in root.children(recursive=True))}
        ray_root = handle.ready.get("ray_root") if handle else None
        if ray_root:
            for proc in psutil.process_iter(["cmdline"]):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    if any(str(ray_root) in a for a in proc.info["cmdline"] or ()):
                        pids.add(proc.pid)
        pids.discard(os.getpid())
        return sorted(pids)

    def kill_region(self, name: str) -> list[int]:
        """SIGKILL every process of the region at once (a region lost); returns the pids."""
        pids = self.region_pids(name)
        if not pids:
            raise EnvironmentError_(f"region {name} has no live process to kill")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        handle = self.handles[name]
        with contextlib.suppress(subprocess.TimeoutExpired):
            handle.proc.wait(10)
        self.killed.append(name)
        return pids

    def committed(self, name: str) -> list[str]:
        """Committed versions in region ``name``'s primary store, read from disk (works while
        the region is down: its disk survives)."""
        from replication.keys import KeySpec
        from replication.repo import VersionStore
        from replication.store import open_store

        spec = self.cfg.region(name)
        if not spec.store_dir.exists():
            return []
        keyring = KeySpec(files=(str(self.cfg.store_key),)).load()
        vs = VersionStore(open_store(str(spec.store_dir)), keyring, node=f"{name} (read)")
        refs = vs.committed()
        return sorted(refs, key=lambda v: refs[v].seq)

    def stop(self) -> None:
        """Stop the global entry and every region (SIGTERM, then SIGKILL what remains)."""
        if self.entry is not None:
            with contextlib.suppress(Exception):
                self.entry.stop()
        for handle in self.handles.values():
            if handle.alive:
                with contextlib.suppress(ProcessLookupError):
                    handle.proc.send_signal(signal.SIGTERM)
        for name, handle in self.handles.items():
            try:
                handle.proc.wait(60)
            except subprocess.TimeoutExpired:
                for pid in self.region_pids(name):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        for name in self.handles:  # a killed region's Ray processes die with it; be sure
            for pid in self.region_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ray_root in self.ray_roots:
            shutil.rmtree(ray_root, ignore_errors=True)


@contextlib.contextmanager
def open_regions(shape: ClusterShape, inputs: DrillInputs, root: Path,
                 ray_address: str | None = None) -> Iterator[TwoRegions]:
    """Two embedded regions on this machine (never an attached cluster); always cleaned up."""
    if ray_address:
        raise EnvironmentError_("a region drill starts its own two clusters; it cannot run on "
                                "an attached cluster (drop --ray-address / RAY_ADDRESS)")
    root.mkdir(parents=True, exist_ok=True)
    sud = TwoRegions(root, inputs, shape)
    try:
        yield sud
    finally:
        sud.stop()
