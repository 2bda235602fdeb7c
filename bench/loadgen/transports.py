"""How one request goes out: a small :class:`Transport` protocol, with HTTP (aiohttp) and
gRPC (grpc.aio) implementations speaking serving's public contract.

Requests are validated with ``serving.schemas`` and encoded once before the run, so the hot
path only writes bytes and reads the answer. ``send`` never raises: every failure becomes an
:class:`Answer` status, and each request is one attempt (no retries: a load generator that
retried would hide errors). Implementations are chosen by name from :data:`TRANSPORTS`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bench.loadgen.errors import ConfigError
from bench.loadgen.outcomes import Status
from serving.schemas import RecommendRequest, RecommendResponse

__all__ = ["TRANSPORTS", "Answer", "GrpcTransport", "HttpTransport", "Transport",
           "TransportSpec", "make_transport"]


@dataclass(frozen=True)
class Answer:
    """What came back: status, whether the fallback tier answered, returned item ids."""

    status: Status
    degraded: bool = False
    item_ids: tuple[str, ...] = ()


class Transport(Protocol):
    """Sends prepared request ``index``; opened and closed inside the running event loop."""

    async def open(self) -> None: ...

    async def send(self, index: int) -> Answer: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TransportSpec:
    """Picklable recipe for a transport (generator processes rebuild it on their side).

    ``address`` is a base URL for HTTP (``http://127.0.0.1:8000``) and ``host:port`` for gRPC.
    """

    kind: str
    address: str
    timeout_s: float = 2.0
    max_connections: int = 1000
    validate: bool = False


class HttpTransport:
    """``POST {address}/v1/recommend`` over one pooled aiohttp session."""

    PATH = "/v1/recommend"

    def __init__(self, spec: TransportSpec, requests: Sequence[RecommendRequest]) -> None:
        self._spec = spec
        self._url = spec.address.rstrip("/") + self.PATH
        self._bodies = [r.model_dump_json(exclude_none=True).encode() for r in requests]
        self._session: Any = None

    async def open(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._spec.max_connections, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self._spec.timeout_s),
            headers={"Content-Type": "application/json"})

    async def send(self, index: int) -> Answer:
        try:
            async with self._session.post(self._url, data=self._bodies[index]) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            return Answer(Status.TIMEOUT)
        except Exception:  # noqa: BLE001 - any transport failure is an error outcome
            return Answer(Status.ERROR)
        if status != 200:
            return Answer(Status.SHED if status == 503 else Status.ERROR)
        return self._parse(body)

    def _parse(self, body: bytes) -> Answer:
        try:
            if self._spec.validate:
                answer = RecommendResponse.model_validate_json(body)
                return Answer(Status.OK, answer.degraded, tuple(i.item_id for i in answer.items))
            data = json.loads(body)
            return Answer(Status.OK, bool(data["degraded"]),
                          tuple(item["item_id"] for item in data["items"]))
        except (ValueError, KeyError, TypeError):
            return Answer(Status.ERROR)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class GrpcTransport:
    """``recdrill.v1.Recommender/Recommend`` over one grpc.aio channel."""

    def __init__(self, spec: TransportSpec, requests: Sequence[RecommendRequest]) -> None:
        from serving.proto import recdrill_pb2

        self._spec = spec
        self._messages = [recdrill_pb2.RecommendRequest(
            user_id=r.user_id or "", history=r.history or [], k=r.k, exclude_seen=r.exclude_seen)
            for r in requests]
        self._channel: Any = None
        self._call: Any = None

    async def open(self) -> None:
        import grpc

        from serving.proto import recdrill_pb2_grpc

        self._channel = grpc.aio.insecure_channel(self._spec.address)
        self._call = recdrill_pb2_grpc.RecommenderStub(self._channel).Recommend

    async def send(self, index: int) -> Answer:
        import grpc

        try:
            reply = await self._call(self._messages[index], timeout=self._spec.timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Answer(Status.TIMEOUT)
            shed = code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
            return Answer(Status.SHED if shed else Status.ERROR)
        except (asyncio.TimeoutError, TimeoutError):
            return Answer(Status.TIMEOUT)
        except Exception:  # noqa: BLE001 - any transport failure is an error outcome
            return Answer(Status.ERROR)
        return Answer(Status.OK, reply.degraded, tuple(item.item_id for item in reply.items))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


TRANSPORTS: dict[str, type[HttpTransport] | type[GrpcTransport]] = {
    "http": HttpTransport, "grpc": GrpcTransport}


def make_transport(spec: TransportSpec, requests: Sequence[RecommendRequest]) -> Transport:
    """The transport named by ``spec.kind`` (``http`` or ``grpc``)."""
    try:
        cls = TRANSPORTS[spec.kind]
    except KeyError:
        raise ConfigError(f"transport must be one of {sorted(TRANSPORTS)}, found {spec.kind!r}") from None
    return cls(spec, requests)
