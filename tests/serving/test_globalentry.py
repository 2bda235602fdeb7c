"""The global entry's HAProxy configuration (pure), then a real HAProxy over two regional
"front doors" (plain HTTP servers, each a subprocess so that killing one is a real crash):
all traffic to the primary, a region lost under load, and the failback."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest

from serving.frontdoor import haproxy_binary
from serving.globalentry import (
    GlobalEntry,
    GlobalEntryConfig,
    Region,
    check_regions,
    render_global_config,
    serving_region,
)
from serving.testing import free_port, http_status, port_open, wait_until

EU = Region("eu", "10.0.1.5", 8000, 9000)
US = Region("us", "10.0.2.5", 8000, 9000, backup=True)


# -- (a) the configuration, pure ---------------------------------------------------------------

def test_primary_serves_and_standby_is_a_backup_checked_on_readyz() -> None:
    text = render_global_config(GlobalEntryConfig(7000, grpc_port=7001), [EU, US])
    assert "server eu 10.0.1.5:8000 check\n" in text
    assert "server us 10.0.2.5:8000 check backup\n" in text
    assert "option httpchk GET /readyz" in text and "http-check expect status 200" in text
    # gRPC goes as h2; its check is HTTP/1.1 on the door's HTTP port (else every check fails)
    assert "server eu 10.0.1.5:9000 proto h2 check port 8000 check-proto h1\n" in text
    assert "server us 10.0.2.5:9000 proto h2 check port 8000 check-proto h1 backup\n" in text
    assert "shutdown-backup-sessions" not in text and "allbackups" not in text


def test_a_dead_region_is_marked_down_by_traffic_and_its_requests_resent() -> None:
    text = render_global_config(GlobalEntryConfig(7000), [EU, US])
    assert ("default-server inter 200ms fastinter 100ms downinter 500ms fall 2 rise 3 "
            "observe layer4 error-limit 1 on-error mark-down on-marked-down shutdown-sessions\n"
            ) in text
    assert "retries 3" in text and "option redispatch 1" in text
    assert "retry-on conn-failure empty-response response-timeout 503" in text
    assert "option http-buffer-request" in text  # a POST can only be re-sent when buffered
    assert "option idle-close-on-response" in text  # a reload answers kept-alive clients first
    plain = render_global_config(GlobalEntryConfig(7000, shutdown_sessions=False), [EU, US])
    assert "on-error mark-down\n" in plain and "shutdown-sessions" not in plain


def test_standbys_keep_their_order_and_the_stats_port_is_optional() -> None:
    second = Region("ap", "10.0.3.5", 8000, backup=True)
    text = render_global_config(GlobalEntryConfig(7000, stats_port=7404), [EU, US, second])
    assert text.index("server us ") < text.index("server ap ")  # first standby preferred
    assert "prometheus-exporter" in text and "stats uri /stats" in text
    assert "frontend stats" not in render_global_config(GlobalEntryConfig(7000), [EU, US])
    assert "frontend grpc_in" not in render_global_config(GlobalEntryConfig(7000), [EU, US])


def test_haproxy_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_global_config(GlobalEntryConfig(7000, grpc_port=7001, stats_port=7404),
                                        [EU, US]))
    proc = subprocess.run([haproxy_binary(), "-c", "-f", str(cfg)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("regions", "match"), [
    ([], "no regions"),
    ([US], "no primary"),
    ([EU, Region("eu", "h", 1, backup=True)], "distinct"),
    ([Region("eu west", "h", 1)], "must match"),
])
def test_bad_regions_are_refused(regions: list[Region], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_regions(regions)


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="check_interval_ms"):
        GlobalEntryConfig(7000, check_interval_ms=0)


_HEADER = "# pxname,svname,status,bck\n"


@pytest.mark.parametrize(("rows", "live"), [
    ("regions_http,eu,UP,0\nregions_http,us,UP,1\n", "eu"),
    ("regions_http,eu,UP 1/2,0\nregions_http,us,UP,1\n", "eu"),  # going down, still serving
    ("regions_http,eu,DOWN 1/3,0\nregions_http,us,UP,1\n", "us"),  # coming back, not yet
    ("regions_http,eu,DOWN,0\nregions_http,us,DOWN,1\nregions_http,ap,UP,1\n", "ap"),
    ("regions_http,eu,MAINT,0\nregions_http,us,DOWN,1\nregions_grpc,us,UP,1\n", None),
])
def test_serving_region_follows_haproxy_rules(rows: str, live: str | None) -> None:
    assert serving_region(_HEADER + rows + "regions_http,BACKEND,UP,0\n") == live


# -- real HAProxy over two regional doors -------------------------------------------------------

_DOOR = r'''
import http.server, json, sys, time
from concurrent import futures
import grpc
name, port, delay_s, grpc_port = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a regional HAProxy would
    disable_nagle_algorithm = True  # else the body waits 40 ms for an ACK of the headers
    wbufsize = 1 << 16  # headers and body in one write, as a regional HAProxy sends them

    def do_GET(self):
        self._answer(200 if self.path == "/readyz" else 404, {"ready": True})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(delay_s)  # a few requests are always in flight, as in a real region
        self._answer(200, {"region": name, "items": []})

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass  # a peer gone mid-answer is what these tests do

probe = grpc.method_handlers_generic_handler("recdrill.Probe", {
    "Region": grpc.unary_unary_rpc_method_handler(lambda request, context: name.encode())})
rpc = grpc.server(futures.ThreadPoolExecutor(4), handlers=[probe])
rpc.add_insecure_port(f"127.0.0.1:{grpc_port}")
rpc.start()
Server(("127.0.0.1", port), Handler).serve_forever()
'''


class _Door:
    """A regional front door in a subprocess: ``kill()`` is a region lost (the kernel refuses
    new connections and closes the open ones), ``start()`` again is the region back."""

    def __init__(self, name: str, script: Path, delay_s: float = 0.02) -> None:
        self.name, self.script, self.port, self.delay_s = name, script, free_port(), delay_s
        self.grpc_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(self.script), self.name, str(self.port),
                                      str(self.delay_s), str(self.grpc_port)])
        wait_until(lambda: http_status(f"http://127.0.0.1:{self.port}/readyz") == 200, 20, 0.05,
                   what=f"region {self.name} on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen one dies too
            self.proc.kill()
            self.proc.wait()

    def region(self, backup: bool = False) -> Region:
        return Region(self.name, "127.0.0.1", self.port, self.grpc_port, backup=backup)


@dataclass
class _Shot:
    start: float
    end: float
    region: str | None  # None: failed
    error: str = ""


@dataclass
class _Load:
    """Plain one-attempt clients at a fixed arrival rate (open loop: a hung request does not
    slow the others), half opening a connection per request, half on kept-alive ones; every
    request is recorded, failed or not."""

    url: str
    rate_rps: float = 200.0
    timeout_s: float = 10.0
    shots: list[_Shot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _local: threading.local = field(default_factory=threading.local)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(128))
    _ticker: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5)
        self._pool.shutdown(wait=True)
        self.shots.sort(key=lambda s: s.start)

    def _tick(self) -> None:
        begin, sent = time.monotonic(), 0
        while not self._stop.is_set():
            sent += 1
            self._pool.submit(self._one, sent % 2 == 0)
            time.sleep(max(0.0, begin + sent / self.rate_rps - time.monotonic()))

    def _one(self, keep: bool) -> None:
        start = time.monotonic()
        try:
            region = self._keepalive() if keep else self._fresh()
            self.shots.append(_Shot(start, time.monotonic(), region))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if keep:
                self._local.conn.close()
            self.shots.append(_Shot(start, time.monotonic(), None,
                                    f"{'kept' if keep else 'new'} connection: {exc!r}"))

    def _fresh(self) -> str:
        req = urllib.request.Request(self.url + "/v1/recommend", data=b'{"user_id": "1"}',
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return str(json.loads(resp.read())["region"])

    def _keepalive(self) -> str:
        if not hasattr(self._local, "conn"):
            host, port = self.url.removeprefix("http://").split(":")
            self._local.conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout_s)
        conn: http.client.HTTPConnection = self._local.conn
        conn.request("POST", "/v1/recommend", b'{"user_id": "1"}',
                     {"content-type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status}")
        return str(json.loads(body)["region"])

    def failed(self, since: float = 0.0) -> list[_Shot]:
        return [s for s in self.shots if s.region is None and s.end >= since]

    def sent_per_s(self) -> float:
        return len(self.shots) / max(1e-3, self.shots[-1].end - self.shots[0].start)


@pytest.fixture()
def doors(tmp_path: Path) -> Iterator[tuple[_Door, _Door]]:
    script = tmp_path / "door.py"
    script.write_text(_DOOR)
    pair = (_Door("primary", script), _Door("standby", script))
    try:
        for door in pair:
            door.start()
        yield pair
    finally:
        for door in pair:
            door.kill()


@pytest.fixture()
def entry(doors: tuple[_Door, _Door], tmp_path: Path) -> Iterator[GlobalEntry]:
    primary, standby = doors
    ge = GlobalEntry(GlobalEntryConfig(free_port(), grpc_port=free_port(), stats_port=free_port()),
                     tmp_path / "ge")
    ge.start([primary.region(), standby.region(backup=True)])
    try:
        yield ge
    finally:
        ge.stop()
    assert not port_open(ge.cfg.http_port)


def _recommend(url: str) -> tuple[str, str]:
    req = urllib.request.Request(url + "/v1/recommend", data=b"{}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["region"], resp.headers["x-recdrill-region"]


def _live(ge: GlobalEntry, name: str) -> bool:
    return ge.live_region() == name


def test_all_traffic_goes_to_the_primary_while_it_is_up(entry: GlobalEntry) -> None:
    assert {_recommend(entry.http_url) for _ in range(30)} == {("primary", "primary")}
    assert entry.live_region() == "primary"
    assert entry.metrics_url is not None
    with urllib.request.urlopen(entry.metrics_url, timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'haproxy_server_status{proxy="regions_http",server="primary",state="UP"} 1' in metrics


def _grpc_region(target: str) -> str:
    import grpc

    with grpc.insecure_channel(target) as channel:
        return bytes(channel.unary_unary("/recdrill.Probe/Region")(b"", timeout=5)).decode()


def test_grpc_goes_to_the_live_region_too(doors: tuple[_Door, _Door], entry: GlobalEntry) -> None:
    assert entry.grpc_target is not None
    assert _grpc_region(entry.grpc_target) == "primary"  # as h2, checked over HTTP/1.1
    doors[0].kill()
    assert _grpc_region(entry.grpc_target) == "standby"  # the call that met the dead region too


def test_swapping_the_roles_reloads_in_place(
        doors: tuple[_Door, _Door], entry: GlobalEntry) -> None:
    primary, standby = doors
    with _Load(entry.http_url, rate_rps=100) as load:
        time.sleep(0.3)
        assert entry.update([primary.region(backup=True), standby.region()])
        wait_until(lambda: _live(entry, "standby"), 5, 0.05, what="the standby promoted")
        time.sleep(0.3)
    assert entry.reloads == 1 and not entry.update([primary.region(backup=True), standby.region()])
    assert not load.failed(), load.failed()[:3]
    assert load.shots[-1].region == "standby"


def test_an_update_while_the_primary_is_down_fails_nothing(
        doors: tuple[_Door, _Door], entry: GlobalEntry) -> None:
    primary, standby = doors
    primary.kill()
    wait_until(lambda: _live(entry, "standby"), 5, 0.02, what="the standby to serve")
    with _Load(entry.http_url, rate_rps=100) as load:
        time.sleep(0.3)
        third = Region("third", "127.0.0.1", free_port(), backup=True)  # nothing there
        assert entry.update([primary.region(), standby.region(backup=True), third])
        time.sleep(1.0)
    assert not load.failed(), load.failed()[:3]
    assert {s.region for s in load.shots} == {"standby"} and entry.live_region() == "standby"


def test_region_loss_under_load_switches_to_the_standby(
        doors: tuple[_Door, _Door], entry: GlobalEntry) -> None:
    primary, _ = doors
    with _Load(entry.http_url) as load:
        wait_until(lambda: len(load.shots) > 100, 10, 0.05, what="steady load")
        killed = time.monotonic()
        primary.kill()  # with a few requests in flight there
        wait_until(lambda: _live(entry, "standby"), 5, 0.02, what="the standby to serve")
        marked_s = time.monotonic() - killed
        time.sleep(1.5)
    after = [s for s in load.shots if s.end >= killed]
    switch_s = min(s.end for s in after if s.region == "standby") - killed
    failed, rate = load.failed(killed), load.sent_per_s()
    rto_s = max((s.end for s in failed), default=killed) - killed
    slowest_s = max(s.end - s.start for s in after)
    print(f"\nregion loss: {len(load.shots)} requests at {rate:.0f}/s, {len(failed)} failed "
          f"(allowed {rate:.0f}); first standby answer {switch_s * 1000:.0f} ms after the kill, "
          f"marked down within {marked_s * 1000:.0f} ms, last failure at {rto_s * 1000:.0f} ms, "
          f"slowest request {slowest_s * 1000:.0f} ms; {sorted({s.error for s in failed})[:3]}")
    assert all(s.region == "primary" for s in load.shots if s.end < killed)
    assert len(failed) <= rate  # at most one second's worth of requests
    assert switch_s < 3.0 and rto_s < 3.0
    assert all(s.region == "standby" for s in after if s.start > killed + marked_s)


def test_failback_to_the_returning_primary_fails_nothing(
        doors: tuple[_Door, _Door], entry: GlobalEntry) -> None:
    primary, _ = doors
    primary.kill()
    wait_until(lambda: _live(entry, "standby"), 5, 0.02, what="the standby to serve")
    with _Load(entry.http_url) as load:  # the standby has requests in flight throughout
        wait_until(lambda: len(load.shots) > 50, 10, 0.05, what="steady load")
        primary.start()  # returns once it answers /readyz
        back = time.monotonic()
        wait_until(lambda: _live(entry, "primary"), 10, 0.02, what="the primary to serve again")
        failback_s = time.monotonic() - back
        time.sleep(0.5)
    print(f"\nfailback: {len(load.shots)} requests at {load.sent_per_s():.0f}/s, "
          f"{len(load.failed())} failed; primary live {failback_s * 1000:.0f} ms after it was "
          f"ready")
    assert not load.failed(), load.failed()[:3]
    assert {s.region for s in load.shots if s.start > back + failback_s} == {"primary"}
    assert failback_s < 5.0


def test_a_frozen_primary_is_left_and_its_requests_resent(
        doors: tuple[_Door, _Door], entry: GlobalEntry) -> None:
    primary, _ = doors
    assert primary.proc is not None
    with _Load(entry.http_url) as load:
        wait_until(lambda: len(load.shots) > 100, 10, 0.05, what="steady load")
        frozen = time.monotonic()
        os.kill(primary.proc.pid, signal.SIGSTOP)  # accepts (kernel backlog), never answers
        wait_until(lambda: _live(entry, "standby"), 8, 0.02, what="the standby to serve")
        marked_s = time.monotonic() - frozen
        time.sleep(1.0)
    failed, rate = load.failed(frozen), load.sent_per_s()
    slowest_s = max(s.end - s.start for s in load.shots)
    print(f"\nfrozen region: {len(load.shots)} requests at {rate:.0f}/s, {len(failed)} failed; "
          f"marked down after {marked_s * 1000:.0f} ms, slowest request {slowest_s * 1000:.0f} ms"
          f"; {sorted({s.error for s in failed})[:3]}")
    assert marked_s < 5.0 and len(failed) <= rate
    # cut at the mark-down and re-sent to the standby, not left to the 5 s server timeout
    assert slowest_s < entry.cfg.server_timeout_ms / 1000
