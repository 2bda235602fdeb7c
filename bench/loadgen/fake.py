"""An in-memory :class:`~bench.loadgen.transports.Transport` for tests and dry runs: one
server that answers requests one at a time (a FIFO queue), with drivers to stall it or make
it fail, so generator behaviour is testable without sockets.

Example::

    fake = FakeTransport(service_s=0.001, items=("a", "b"))
    fake.stall(0.3)            # the next request holds the server for 300 ms
"""

from __future__ import annotations

import asyncio

from bench.loadgen.outcomes import Status
from bench.loadgen.transports import Answer

__all__ = ["FakeTransport"]


class FakeTransport:
    """Single-server queue: each request waits for the server, then takes ``service_s``."""

    def __init__(self, service_s: float = 0.001, items: tuple[str, ...] = (),
                 degraded: bool = False) -> None:
        self.service_s, self.items, self.degraded = service_s, items, degraded
        self.sent = 0
        self._stall_s = 0.0
        self._failing: Status | None = None
        self._lock: asyncio.Lock | None = None

    def stall(self, seconds: float) -> None:
        """Driver: the next request holds the server for ``seconds`` more."""
        self._stall_s = seconds

    def fail_with(self, status: Status | None) -> None:
        """Driver: answer every request with ``status`` at once (None: back to normal)."""
        self._failing = status

    async def open(self) -> None:
        self._lock = asyncio.Lock()

    async def send(self, index: int) -> Answer:
        self.sent += 1
        if self._failing is not None:
            return Answer(self._failing)
        assert self._lock is not None, "open() first"
        async with self._lock:
            pause, self._stall_s = self.service_s + self._stall_s, 0.0
            await asyncio.sleep(pause)
        return Answer(Status.OK, self.degraded, self.items)

    async def close(self) -> None:
        self._lock = None
