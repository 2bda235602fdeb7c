"""Test, bench and drill helpers for serving: the generic ones from ``replication.testing``
(free ports, polling with a deadline, killing processes and Ray nodes) plus waiting for an
HTTP server from outside.

Example:
    >>> port = free_port()
    >>> http_status(f"http://127.0.0.1:{port}/readyz")  # nothing listens there
    0
    >>> wait_http_ready(server.url + "/readyz", 30.0, proc=server_proc)  # doctest: +SKIP
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

from replication.testing import (
    free_port,
    kill_node,
    kill_pids,
    node_processes,
    poll_until,
    port_open,
    wait_until,
)
from serving.server import free_port_base

__all__ = ["free_port", "free_port_base", "http_status", "kill_node", "kill_pids",
           "node_processes", "poll_until", "port_open", "wait_http_ready", "wait_until"]


def http_status(url: str, timeout_s: float = 1.0) -> int:
    """The status of a GET of ``url`` (an HTTP error status included); 0 when no connection
    or no answer within ``timeout_s``.

    Example:
        >>> http_status(f"http://127.0.0.1:{free_port()}/healthz")
        0
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def wait_http_ready(url: str, timeout_s: float = 60.0, *, status: int = 200,
                    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
                    interval_s: float = 0.1) -> None:
    """Poll ``url`` until a GET answers ``status``. Raises TimeoutError naming the URL after
    ``timeout_s``, or RuntimeError as soon as ``proc`` (the server's process, if given)
    has exited.

    Example:
        >>> wait_http_ready(f"http://127.0.0.1:{free_port()}/readyz", 0.2)
        Traceback (most recent call last):
        ...
        TimeoutError: timed out after 0.2 s waiting for http://127.0.0.1:.../readyz to answer 200
    """
    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered {status}")
        return http_status(url) == status

    wait_until(ready, timeout_s, interval_s, what=f"{url} to answer {status}")
