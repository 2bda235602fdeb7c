"""The helpers ``serving.testing`` ships: the generic ones re-exported, and waiting for an
HTTP server from outside."""

from __future__ import annotations

import doctest
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import replication.testing
from serving import testing
from serving.testing import free_port, http_status, wait_http_ready, wait_until


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = int(self.path.rsplit("/", 1)[-1])
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A server answering ``/<code>`` with that status."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_generic_helpers_are_the_replication_ones() -> None:
    assert testing.free_port is replication.testing.free_port
    assert wait_until is replication.testing.wait_until


def test_http_status_reports_errors_as_statuses_and_no_server_as_zero(url: str) -> None:
    assert [http_status(f"{url}/{c}") for c in (200, 404, 503)] == [200, 404, 503]
    assert http_status(f"http://127.0.0.1:{free_port()}/") == 0


def test_wait_http_ready_returns_once_the_status_answers(url: str) -> None:
    wait_http_ready(f"{url}/200", 5.0)
    wait_http_ready(f"{url}/503", 5.0, status=503)


def test_wait_http_ready_names_the_url_on_timeout(url: str) -> None:
    with pytest.raises(TimeoutError, match=f"waiting for {url}/503 to answer 200"):
        wait_http_ready(f"{url}/503", 0.3, interval_s=0.05)


def test_wait_http_ready_stops_as_soon_as_the_server_process_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(30)
    with pytest.raises(RuntimeError, match="exited with 3 before"):
        wait_http_ready(f"http://127.0.0.1:{free_port()}/readyz", 30.0, proc=proc)


def test_docstring_examples() -> None:
    result = doctest.testmod(testing, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
