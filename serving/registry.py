"""Where each replica of an application answers: a small named Ray actor (public APIs only).

Every replica registers its record (host, ports, node, pid, rank, Serve actor name) on start
and refreshes it every ``REFRESH_S`` from a background thread; readers (``recdrill serve``'s
front door, the drills, the rollout) list the newest record of each rank. The actor is named,
detached and restartable (``max_restarts=-1``): if it dies with its node, Ray starts it again
and the replicas' next refresh fills it, so it holds soft state only and nothing depends on it
on the request path. It replaces Ray's private ``_internal_kv``.

Example:
    >>> reg = registry("recdrill")  # doctest: +SKIP
    >>> ray.get(reg.put.remote(0, {"host": "127.0.0.1", "http_port": 8100}))  # doctest: +SKIP
    >>> entries("recdrill")[0]["http_port"]  # doctest: +SKIP
    8100
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

__all__ = ["NAMESPACE", "REFRESH_S", "Heartbeat", "drop", "entries", "registry"]

NAMESPACE = "recdrill"
REFRESH_S = 2.0
log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=16)
class _Registry:
    """The records by rank (the newest wins), each stamped with the time it arrived."""

    def __init__(self) -> None:
        self._by_rank: dict[int, dict[str, Any]] = {}

    def put(self, rank: int, record: dict[str, Any]) -> None:
        self._by_rank[rank] = {**record, "seen_at": time.time()}

    def clear(self) -> None:
        self._by_rank.clear()

    def records(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{**r, "age_s": round(now - r["seen_at"], 3)}
                for _, r in sorted(self._by_rank.items())]


def _name(app_name: str) -> str:
    return f"registry:{app_name}"


def registry(app_name: str) -> Any:
    """The registry actor of ``app_name``, created on first use (idempotent, race-free)."""
    return _Registry.options(name=_name(app_name), namespace=NAMESPACE, get_if_exists=True,
                             lifetime="detached").remote()


def entries(app_name: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every rank's newest record (``age_s``: seconds since it was refreshed); [] when the
    application has no registry."""
    try:
        handle = ray.get_actor(_name(app_name), namespace=NAMESPACE)
    except ValueError:
        return []
    return list(ray.get(handle.records.remote(), timeout=timeout_s))


def drop(app_name: str) -> None:
    """Remove ``app_name``'s registry (on application delete)."""
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(_name(app_name), namespace=NAMESPACE), no_restart=True)


class Heartbeat:
    """Register ``record()`` under ``rank`` now (waiting for it) and again every ``every_s``
    (fire and forget: a slow or restarting registry never blocks the replica)."""

    def __init__(self, app_name: str, rank: int, record: Callable[[], dict[str, Any]],
                 every_s: float = REFRESH_S) -> None:
        self.app_name, self.rank, self.record, self.every_s = app_name, rank, record, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recdrill-registry",
                                        daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        ray.get(registry(self.app_name).put.remote(self.rank, self.record()), timeout=timeout_s)
        self._thread.start()

    def _loop(self) -> None:
        handle = None
        while not self._stop.wait(self.every_s):
            try:
                handle = handle or registry(self.app_name)
                handle.put.remote(self.rank, self.record())
            except Exception as exc:  # noqa: BLE001 - the control plane may be down; retry
                handle = None
                log.debug("registry refresh failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
