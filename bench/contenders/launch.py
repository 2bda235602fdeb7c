"""Start a whole contender stack, wait until every replica/worker answers, yield where to send
load, and stop all of it on the way out (also on Ctrl-C): context managers over
:class:`~bench.contenders.process.ServerProcess` and recdrill's
:class:`serving.frontdoor.FrontDoor`.

- :func:`fastapi_ort`: the FastAPI + onnxruntime baseline with N uvicorn workers;
- :func:`serve_haproxy`: Ray Serve's HAProxy mode on a Ray instance of its own;
- :func:`recdrill_serve`: ``python -m serving serve`` (replicas' own HTTP/gRPC servers, and
  Serve's standard proxy), addresses read from the JSON line it prints;
- :func:`front_door`: recdrill's front door (HAProxy) over given replica endpoints.

Example::

    with fastapi_ort(artifact, workers=2, logs=Path("logs")) as url:
        ...  # load url + "/v1/recommend"
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contenders.process import ServerProcess, free_port, renice_session
from bench.loadgen.errors import ContenderError
from serving.server import Endpoint

__all__ = ["RecdrillStack", "fastapi_ort", "front_door", "recdrill_serve", "serve_haproxy",
           "wait_distinct_pids"]

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def wait_distinct_pids(url: str, n: int, timeout_s: float = 60.0) -> set[int]:
    """Poll ``url`` (a health route answering ``{"pid": ...}``) until ``n`` different processes
    answered: every worker or replica behind one address is up.

    Each poll opens a new connection, so the kernel (uvicorn workers on one socket) or the
    balancer (HAProxy) spreads them.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                seen.add(int(json.loads(resp.read())["pid"]))
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            time.sleep(0.2)
        if len(seen) >= n:
            return seen
        time.sleep(0.02)
    raise ContenderError(f"{url}: {len(seen)} of {n} processes answered within {timeout_s} s")


@contextlib.contextmanager
def fastapi_ort(artifact: Path, workers: int, logs: Path) -> Iterator[str]:
    """The FastAPI + onnxruntime baseline with ``workers`` uvicorn workers; yields its URL."""
    args = ["--artifact", str(artifact), "--workers", str(workers)]
    with ServerProcess("bench.contenders.fastapi_ort", args,
                       logs / f"fastapi-ort-w{workers}.log") as server:
        wait_distinct_pids(server.url + "/healthz", workers)
        yield server.url


@contextlib.contextmanager
def serve_haproxy(artifact: Path, replicas: int, logs: Path, renice: bool = True,
                  log: Log = _quiet) -> Iterator[str]:
    """Ray Serve's HAProxy mode with ``replicas`` replicas; yields HAProxy's URL."""
    workdir = Path(tempfile.mkdtemp(prefix="rdfd-"))  # short: HAProxy socket paths ≤ 97 chars
    args = ["--artifact", str(artifact), "--replicas", str(replicas), "--workdir", str(workdir)]
    try:
        with ServerProcess("bench.contenders.serve_haproxy", args, logs / "serve-haproxy.log",
                           ready_timeout_s=180.0, grace_s=20.0) as server:
            wait_distinct_pids(server.url + "/healthz", replicas, timeout_s=120.0)
            if renice and server.pid is not None:
                log(f"serve-haproxy: reniced {renice_session(server.pid)} threads to 0")
            yield server.url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class RecdrillStack:
    """What ``python -m serving serve`` printed: replica endpoints and Serve's proxy."""

    endpoints: tuple[Endpoint, ...]
    proxy_url: str | None

    @staticmethod
    def from_line(line: dict[str, Any]) -> RecdrillStack:
        """From the serve command's JSON line (``http``, ``grpc``, ``proxy``).

        Example:
            >>> RecdrillStack.from_line({"http": ["http://127.0.0.1:8100"],
            ...                          "grpc": ["127.0.0.1:9100"], "proxy": None}).endpoints
            (Endpoint(host='127.0.0.1', http_port=8100, grpc_port=9100),)
        """
        eps = []
        for http, grpc in zip(line["http"], line["grpc"], strict=True):
            host, _, port = http.removeprefix("http://").rpartition(":")
            eps.append(Endpoint(host, int(port), int(grpc.rpartition(":")[2])))
        return RecdrillStack(tuple(eps), line.get("proxy"))


def _json_line(path: Path, key: str, server: ServerProcess, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for text in path.read_text(errors="replace").splitlines():
            if text.startswith("{") and f'"{key}"' in text:
                with contextlib.suppress(ValueError):
                    return dict(json.loads(text))
        if not server.running:
            break
        time.sleep(0.2)
    raise ContenderError(f"no JSON line with {key!r} in {path} within {timeout_s} s\n"
                         f"{server.log_tail()}")


@contextlib.contextmanager
def recdrill_serve(artifact: Path, public_key: Path, replicas: int, logs: Path,
                   proxy: bool = True, renice: bool = True,
                   log: Log = _quiet) -> Iterator[RecdrillStack]:
    """``python -m serving serve`` on an embedded Ray of its own; yields its addresses."""
    http, grpc = free_port(), free_port()
    args = ["serve", "--artifact", str(artifact), "--public-key", str(public_key),
            "--replicas", str(replicas), "--http-port", str(http), "--grpc-port", str(grpc)]
    if proxy:
        args += ["--proxy-port", str(free_port())]
    ray_tmp = Path(tempfile.mkdtemp(prefix="rdfd-"))
    log_path = logs / "recdrill-serve.log"
    try:
        with ServerProcess("serving", args, log_path, port=http, port_flag=None,
                           health_path="/readyz", ready_timeout_s=180.0, grace_s=20.0,
                           env={"RAY_TMPDIR": str(ray_tmp)}) as server:
            stack = RecdrillStack.from_line(_json_line(log_path, "http", server, 120.0))
            for ep in stack.endpoints:
                ServerProcess.wait_ready(ep.http_url + "/readyz", 60.0)
            if renice and server.pid is not None:
                log(f"recdrill serve: reniced {renice_session(server.pid)} threads to 0")
            yield stack
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@contextlib.contextmanager
def front_door(endpoints: tuple[Endpoint, ...], grpc: bool = True) -> Iterator[Any]:
    """recdrill's front door (one HAProxy thread) over ``endpoints``; yields the FrontDoor
    once a request through it reached a replica."""
    from serving.frontdoor import FrontDoor, FrontDoorConfig

    workdir = Path(tempfile.mkdtemp(prefix="rdfd-door-"))
    door = FrontDoor(FrontDoorConfig(http_port=free_port(),
                                     grpc_port=free_port() if grpc else None, threads=1),
                     workdir)
    try:
        door.start(list(endpoints))
        ServerProcess.wait_ready(door.http_url + "/readyz", 30.0)
        yield door
    finally:
        door.stop()
        shutil.rmtree(workdir, ignore_errors=True)
