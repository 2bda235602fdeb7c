"""The entry server of one replica: HTTP (uvicorn) and gRPC on their own thread and loop.

The replica process serves clients itself (direct ingress), so no proxy hop and no Ray call
sits on the request path; Ray Serve supervises the process (restarts, reconfigure, placement).
The thread owns one asyncio loop (uvloop when installed) shared by uvicorn and grpc.aio.
With ``tls`` (``security.tls.TLSFiles``) both serve TLS only: HTTPS, and gRPC over TLS; the
files are read and checked in ``start``, so a bad one fails there, by name.

Example:
    >>> server = EntryServer(service, AppConfig(), "127.0.0.1", 0, 0)  # doctest: +SKIP
    >>> endpoint = server.start()  # doctest: +SKIP
    >>> endpoint.http_url  # doctest: +SKIP
    'http://127.0.0.1:41234'
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn

from security.tls import TLSFiles, grpc_server_credentials, server_context
from serving.app import AppConfig, FastPath, create_app
from serving.grpc_server import start_grpc_server
from serving.service import RecommendService

__all__ = ["GRPC_PORT_OFFSET", "Endpoint", "EntryServer", "free_port_base"]

GRPC_PORT_OFFSET = 40  # replica rank r: HTTP on base + r, gRPC on base + 40 + r (by convention)


def free_port_base(span: int, start: int = 18100, grpc_offset: int = GRPC_PORT_OFFSET) -> int:
    """A base port with ``span`` HTTP ports and ``span`` gRPC ports (``+ grpc_offset``) free
    on loopback; raises OSError when none is.

    Example:
        >>> base = free_port_base(2)  # doctest: +SKIP
    """
    for base in range(start, 60000, 53):
        try:
            for port in [*range(base, base + span),
                         *range(base + grpc_offset, base + grpc_offset + span)]:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise OSError(f"no {span} free loopback HTTP + gRPC ports from {start} on")

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class Endpoint:
    """Where one replica answers; ``tls``: HTTPS and gRPC over TLS only.

    Example:
        >>> Endpoint("127.0.0.1", 8100, 9100, tls=True).http_url
        'https://127.0.0.1:8100'
    """

    host: str
    http_port: int
    grpc_port: int
    tls: bool = False

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def __repr__(self) -> str:
        # A plaintext endpoint prints as it always did (JSON lines and doctests compare it).
        tls = ", tls=True" if self.tls else ""
        return (f"Endpoint(host={self.host!r}, http_port={self.http_port}, "
                f"grpc_port={self.grpc_port}{tls})")


def _loop_factory() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


class EntryServer:
    """Start, watch and stop the HTTP + gRPC servers of one service."""

    def __init__(self, service: RecommendService, app_config: AppConfig, host: str,
                 http_port: int, grpc_port: int | None, *, tls: TLSFiles | None = None) -> None:
        self.service, self.app_config = service, app_config
        self.host, self._http_port, self._grpc_port = host, http_port, grpc_port
        self.tls = tls
        self._ssl: Any = None
        self._grpc_credentials: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._grpc: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.endpoint: Endpoint | None = None

    def start(self, timeout_s: float = 15.0) -> Endpoint:
        """Bind both ports and serve; raises OSError if a port is taken and
        ``security.tls.TLSFileError`` (before binding) for an unusable TLS file."""
        if self.tls is not None:
            self._ssl = server_context(self.tls)
            self._grpc_credentials = grpc_server_credentials(self.tls)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._http_port))
        sock.listen(2048)
        sock.set_inheritable(True)
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True,
                                        name="recdrill-entry")
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise OSError(f"entry server did not start within {timeout_s} s")
        if self._error is not None:
            raise OSError(f"entry server failed to start: {self._error}") from self._error
        assert self.endpoint is not None
        return self.endpoint

    def _run(self, sock: socket.socket) -> None:
        loop = self._loop = _loop_factory()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # noqa: BLE001 - reported to start(); the thread ends
            self._error = exc
            self._started.set()
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        grpc_port = 0
        auth = self.app_config.authorizer()  # one for both protocols: same table, same cache
        if self._grpc_port is not None:
            self._grpc, grpc_port = await start_grpc_server(
                self.service, self.host, self._grpc_port, credentials=self._grpc_credentials,
                auth=auth)
        # log_config=None: uvicorn's default dictConfig closes every handler in the process,
        # Serve's own replica log handler included; a recovering Serve controller then finds
        # the replica broken (is_allocated raises) and replaces it.
        config = uvicorn.Config(FastPath(create_app(self.service, self.app_config, auth)),
                                access_log=False, proxy_headers=False,
                                log_config=None, log_level="warning", lifespan="off",
                                http="httptools",
                                timeout_keep_alive=30, backlog=2048)
        if self._ssl is not None:
            # Our context (TLS >= 1.2, checked files) instead of uvicorn's file options; set
            # after load(), which serve() then skips: works on every uvicorn this supports.
            config.load()
            config.ssl = self._ssl
        self._uvicorn = uvicorn.Server(config)
        self.endpoint = Endpoint(self.host, sock.getsockname()[1], grpc_port,
                                 tls=self.tls is not None)
        serve = asyncio.ensure_future(self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started and not serve.done():
            await asyncio.sleep(0.01)
        self._started.set()
        try:
            await serve
        finally:
            if self._grpc is not None:
                await self._grpc.stop(grace=1.0)
            self.service.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then stop the thread."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)

    def ping(self, timeout_s: float = 2.0) -> None:
        """Liveness: the serving loop runs a no-op within ``timeout_s`` (else TimeoutError)."""
        if not self.alive or self._loop is None:
            raise RuntimeError(f"entry server thread is not running ({self._error!r})")
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(timeout_s)

    def call(self, coro: Any) -> Any:
        """Run ``coro`` on the serving loop (for callers on other loops); a concurrent future."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)
