"""The front door's HAProxy configuration (pure) and a real HAProxy in front of two plain HTTP
servers: health-checked, a dead backend retried elsewhere, a reload that drops nothing."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.frontdoor import FrontDoor, FrontDoorConfig, file_sd_targets, render_config
from serving.server import Endpoint
from serving.testing import free_port, kill_pids, port_open


def test_config_lists_every_replica_with_readiness_checks_and_retries() -> None:
    text = render_config(FrontDoorConfig(8000, grpc_port=9000),
                         [Endpoint("127.0.0.1", 8101, 9101), Endpoint("127.0.0.1", 8100, 9100)])
    assert "bind 127.0.0.1:8000\n" in text and "bind 127.0.0.1:9000 proto h2" in text
    assert text.index("server r0 127.0.0.1:8100") < text.index("server r1 127.0.0.1:8101")
    # gRPC travels as h2; its readiness check goes to the replica's HTTP port as HTTP/1.1
    assert "server g0 127.0.0.1:9100 proto h2 check port 8100 check-proto h1" in text
    assert "option httpchk GET /readyz" in text and "retries 1" in text
    assert "retry-on conn-failure empty-response response-timeout 503" in text
    assert "option http-buffer-request" in text  # a POST can only be re-sent when buffered
    assert "maxconn 32" in text and "timeout queue 50ms" in text  # overload shed at the door


def test_equal_endpoints_render_an_equal_file() -> None:
    a = [Endpoint("h", 1, 2), Endpoint("h", 3, 4)]
    assert render_config(FrontDoorConfig(80), a) == render_config(FrontDoorConfig(80), a[::-1])


def test_prometheus_targets_follow_the_replicas_and_include_the_front_door() -> None:
    groups = file_sd_targets(FrontDoorConfig(8000, stats_port=8404, host="10.0.0.1"),
                             [Endpoint("10.0.0.3", 8100, 9100), Endpoint("10.0.0.2", 8100, 9100)])
    assert groups == [
        {"targets": ["10.0.0.2:8100", "10.0.0.3:8100"], "labels": {"job": "recdrill-replicas"}},
        {"targets": ["10.0.0.1:8404"], "labels": {"job": "recdrill-frontdoor"}}]
    assert len(file_sd_targets(FrontDoorConfig(8000), [])) == 1  # no stats port: no door target


def test_a_taken_port_is_refused_by_name(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        door = FrontDoor(FrontDoorConfig(port), tmp_path)
        with pytest.raises(OSError, match=f"127.0.0.1:{port} is taken"):
            door.start([Endpoint("127.0.0.1", 1, 2)])
        assert door.pid is None  # nothing was started


class _Replica(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(b"ready")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._answer(str(self.server.server_address[1]).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture()
def replicas() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replica) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def _post(url: str) -> str:
    req = urllib.request.Request(url + "/v1/recommend", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=2) as resp:
        return resp.read().decode()


def test_haproxy_spreads_load_and_routes_around_a_dead_replica(
        replicas: list[http.server.ThreadingHTTPServer], tmp_path: Path) -> None:
    eps = [Endpoint("127.0.0.1", s.server_address[1], 0) for s in replicas]
    door = FrontDoor(FrontDoorConfig(free_port(), check_interval_ms=100), tmp_path)
    door.start(eps)
    try:
        answered = {_post(door.http_url) for _ in range(10)}
        assert answered == {str(e.http_port) for e in eps}
        replicas[0].shutdown()
        replicas[0].server_close()  # connections now refused: every request must still succeed
        answers = [_post(door.http_url) for _ in range(20)]
        assert set(answers) == {str(eps[1].http_port)}
        assert door.update(eps[1:]) and door.reloads == 1  # reload in place, still answering
        time.sleep(0.3)
        assert _post(door.http_url) == str(eps[1].http_port)
        assert not door.update(eps[1:])  # unchanged: no reload
    finally:
        door.stop()
    assert not port_open(door.cfg.http_port)


def test_a_killed_haproxy_is_replaced_while_its_ports_stay_open(
        replicas: list[http.server.ThreadingHTTPServer], tmp_path: Path) -> None:
    import psutil

    eps = [Endpoint("127.0.0.1", s.server_address[1], 0) for s in replicas]
    door = FrontDoor(FrontDoorConfig(free_port(), check_interval_ms=100), tmp_path)
    door.start(eps)
    try:
        assert _post(door.http_url)
        old = door.pid
        assert old is not None
        master = psutil.Process(old)
        kill_pids(p.pid for p in [master, *master.children(recursive=True)])
        # sent at once, while HAProxy is dead or starting: they wait in the accept queue
        answers = [_post(door.http_url) for _ in range(20)]
        assert set(answers) <= {str(e.http_port) for e in eps} and len(answers) == 20
        assert door.restarts == 1 and door.pid not in (None, old)
    finally:
        door.stop()
