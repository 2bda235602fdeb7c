"""How one request goes out: a small :class:`Transport` protocol, with HTTP (aiohttp) and
gRPC (grpc.aio) implementations speaking serving's public contract, and ``client`` that goes
through ``serving.client.Client`` (retries, hedging) as an application would.

Requests are validated with ``serving.schemas`` and encoded once before the run, so the hot
path only writes bytes and reads the answer. ``send`` never raises: every failure becomes an
:class:`Answer` status. ``http`` and ``grpc`` make one attempt per request, round-robin over
the addresses (a generator that retried would hide errors); ``client-http`` / ``client-grpc``
measure what a retrying client sees. Implementations are chosen by name from :data:`TRANSPORTS`.
A prepared request is a recommend or a search (``SearchRequest``: ``POST /v1/search``, gRPC
``Search``, ``Client.search_raw``); the answer has the same shape either way.
With ``feedback`` on, ``http`` also reports each answered user's held-out item to
``POST /v1/feedback`` of the replica that answered (fire and forget, outside the measured
request), as a shop front would report which recommended item the user took; searches are
never replayed as feedback.
With ``ca`` (a PEM CA file) every kind trusts only that CA: HTTP addresses must then be
``https://``, and gRPC goes over TLS.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.loadgen.errors import ConfigError
from bench.loadgen.outcomes import Status
from serving.schemas import RecommendRequest, RecommendResponse, SearchRequest, SearchResponse

__all__ = ["TRANSPORTS", "Answer", "ClientTransport", "GrpcTransport", "HttpTransport",
           "Request", "Transport", "TransportSpec", "make_transport"]

Request = RecommendRequest | SearchRequest


@dataclass(frozen=True)
class Answer:
    """What came back: status, whether the fallback tier answered, returned item ids."""

    status: Status
    degraded: bool = False
    item_ids: tuple[str, ...] = ()
    model_version: str | None = None


class Transport(Protocol):
    """Sends prepared request ``index``; opened and closed inside the running event loop."""

    async def open(self) -> None: ...

    async def send(self, index: int) -> Answer: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TransportSpec:
    """Picklable recipe for a transport (generator processes rebuild it on their side).

    ``addresses`` are base URLs for HTTP (``http://127.0.0.1:8000``) and ``host:port`` for
    gRPC; ``retries`` and ``hedge_after_s`` apply to the ``client-*`` kinds only; ``ca``: a PEM
    CA file, the only one trusted (TLS: ``https://`` addresses, gRPC over TLS).

    Example:
        >>> TransportSpec("http", ("http://127.0.0.1:8000",)).address
        'http://127.0.0.1:8000'
    """

    kind: str
    addresses: tuple[str, ...]
    timeout_s: float = 2.0
    max_connections: int = 1000
    validate: bool = False
    retries: int = 0
    hedge_after_s: float | None = None
    feedback: bool = False
    ca: str | None = None

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ConfigError("a transport needs at least one address")
        if self.ca is not None and self.kind in ("http", "client-http"):
            plain = [a for a in self.addresses if not a.startswith("https://")]
            if plain:
                raise ConfigError(f"ca is set but {plain} are not https:// addresses; use "
                                  "https:// (or drop ca for plaintext)")
        if self.feedback and self.kind != "http":
            raise ConfigError(f"feedback replay needs the http transport, found {self.kind!r}")

    @property
    def address(self) -> str:
        """All addresses, comma-separated (for reports)."""
        return ",".join(self.addresses)


class HttpTransport:
    """``POST {address}/v1/recommend`` (or ``/v1/search``) over one pooled aiohttp session."""

    PATH = "/v1/recommend"
    SEARCH_PATH = "/v1/search"
    FEEDBACK_PATH = "/v1/feedback"

    def __init__(self, spec: TransportSpec, requests: Sequence[Request],
                 targets: Sequence[str | None] | None = None) -> None:
        self._spec = spec
        self._bases = itertools.cycle([a.rstrip("/") for a in spec.addresses])
        self._bodies = [r.model_dump_json(exclude_none=True).encode() for r in requests]
        self._search = [isinstance(r, SearchRequest) for r in requests]
        self._paths = [self.SEARCH_PATH if search else self.PATH for search in self._search]
        self._targets = list(targets) if targets is not None else None
        self._session: Any = None
        self._pending: set[asyncio.Task[None]] = set()
        self.feedback_sent = self.feedback_failed = 0

    async def open(self) -> None:
        import aiohttp

        ssl: Any = True  # aiohttp's default: https:// verified with the system's CAs
        if self._spec.ca is not None:
            from security.tls import client_context

            ssl = client_context(Path(self._spec.ca))
        connector = aiohttp.TCPConnector(limit=self._spec.max_connections, ttl_dns_cache=None,
                                         ssl=ssl)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self._spec.timeout_s),
            headers={"Content-Type": "application/json"})

    async def send(self, index: int) -> Answer:
        base = next(self._bases)
        try:
            async with self._session.post(base + self._paths[index],
                                          data=self._bodies[index]) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            return Answer(Status.TIMEOUT)
        except Exception:  # noqa: BLE001 - any transport failure is an error outcome
            return Answer(Status.ERROR)
        if status != 200:
            return Answer(Status.SHED if status == 503 else Status.ERROR)
        answer = self._parse(body, self._search[index])
        target = (self._targets[index] if self._targets is not None and not self._search[index]
                  else None)
        if (self._spec.feedback and answer.status == Status.OK and target is not None
                and answer.model_version is not None):
            task = asyncio.ensure_future(self._feedback(base, answer, target))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return answer

    async def _feedback(self, base: str, answer: Answer, target: str) -> None:
        body = json.dumps({"model_version": answer.model_version,
                           "items": list(answer.item_ids[:100]) or [target], "item_id": target})
        try:
            async with self._session.post(base + self.FEEDBACK_PATH, data=body) as resp:
                await resp.read()
                ok = resp.status < 300
        except Exception:  # noqa: BLE001 - feedback is best effort, counted
            ok = False
        self.feedback_sent += ok
        self.feedback_failed += not ok

    def _parse(self, body: bytes, search: bool = False) -> Answer:
        try:
            if self._spec.validate:
                model = SearchResponse if search else RecommendResponse
                answer = model.model_validate_json(body)
                return Answer(Status.OK, answer.degraded, tuple(i.item_id for i in answer.items),
                              answer.model_version)
            data = json.loads(body)
            return Answer(Status.OK, bool(data["degraded"]),
                          tuple(item["item_id"] for item in data["items"]),
                          data.get("model_version"))
        except (ValueError, KeyError, TypeError):
            return Answer(Status.ERROR)

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self._spec.timeout_s)
        if self._session is not None:
            await self._session.close()


class GrpcTransport:
    """``recdrill.v1.Recommender/Recommend`` (or ``/Search``) over one grpc.aio channel per
    address."""

    def __init__(self, spec: TransportSpec, requests: Sequence[Request],
                 targets: Sequence[str | None] | None = None) -> None:
        self._spec = spec
        self._messages = [_message(r) for r in requests]
        self._search = [int(isinstance(r, SearchRequest)) for r in requests]
        self._channels: list[Any] = []
        self._calls: Any = None

    async def open(self) -> None:
        import grpc

        from serving.proto import recdrill_pb2_grpc

        if self._spec.ca is None:
            self._channels = [grpc.aio.insecure_channel(a) for a in self._spec.addresses]
        else:
            from security.tls import grpc_channel_credentials

            creds = grpc_channel_credentials(Path(self._spec.ca))
            self._channels = [grpc.aio.secure_channel(a, creds) for a in self._spec.addresses]
        stubs = [recdrill_pb2_grpc.RecommenderStub(c) for c in self._channels]
        self._calls = itertools.cycle([(stub.Recommend, stub.Search) for stub in stubs])

    async def send(self, index: int) -> Answer:
        import grpc

        try:
            call = next(self._calls)[self._search[index]]
            reply = await call(self._messages[index], timeout=self._spec.timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Answer(Status.TIMEOUT)
            shed = code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
            return Answer(Status.SHED if shed else Status.ERROR)
        except TimeoutError:
            return Answer(Status.TIMEOUT)
        except Exception:  # noqa: BLE001 - any transport failure is an error outcome
            return Answer(Status.ERROR)
        return Answer(Status.OK, reply.degraded, tuple(item.item_id for item in reply.items))

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


def _message(request: Request) -> Any:
    """The protobuf message of one prepared request (empty string / list means absent)."""
    from serving.proto import recdrill_pb2

    if isinstance(request, SearchRequest):
        return recdrill_pb2.SearchRequest(query=request.query, k=request.k,
                                          user_id=request.user_id or "",
                                          history=request.history or [])
    return recdrill_pb2.RecommendRequest(user_id=request.user_id or "",
                                         history=request.history or [], k=request.k,
                                         exclude_seen=request.exclude_seen)


class ClientTransport:
    """``serving.client.Client`` over all addresses, with its retries and optional hedging."""

    def __init__(self, spec: TransportSpec, requests: Sequence[Request],
                 targets: Sequence[str | None] | None = None) -> None:
        from serving.retry import RetryPolicy

        self._spec = spec
        self._bodies = [r.model_dump(exclude_none=True) for r in requests]
        self._search = [isinstance(r, SearchRequest) for r in requests]
        self._policy = RetryPolicy(deadline_s=spec.timeout_s,
                                   attempt_timeout_s=spec.timeout_s / (spec.retries + 1),
                                   retries=spec.retries, hedge_after_s=spec.hedge_after_s)
        self._client: Any = None

    async def open(self) -> None:
        from serving.client import Client

        kind = self._spec.kind.removeprefix("client-")
        self._client = Client(list(self._spec.addresses), transport=kind, policy=self._policy,
                              ca=self._spec.ca)

    async def send(self, index: int) -> Answer:
        from serving.errors import ClientError

        start = time.monotonic()
        try:
            call = self._client.search_raw if self._search[index] else self._client.recommend_raw
            data = await call(self._bodies[index])
            return Answer(Status.OK, bool(data["degraded"]),
                          tuple(item["item_id"] for item in data["items"]))
        except ClientError as exc:
            if exc.status == 503:
                return Answer(Status.SHED)
            late = time.monotonic() - start >= self._policy.deadline_s * 0.99
            return Answer(Status.TIMEOUT if late else Status.ERROR)
        except Exception:  # noqa: BLE001 - any client failure is an error outcome
            return Answer(Status.ERROR)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


TRANSPORTS: dict[str, type[HttpTransport | GrpcTransport | ClientTransport]] = {
    "http": HttpTransport, "grpc": GrpcTransport,
    "client-http": ClientTransport, "client-grpc": ClientTransport}


def make_transport(spec: TransportSpec, requests: Sequence[Request],
                   targets: Sequence[str | None] | None = None) -> Transport:
    """The transport named by ``spec.kind`` for ``requests`` (recommends first, then
    searches); ``targets`` (held-out item per recommend request) are needed for feedback
    replay only."""
    try:
        cls = TRANSPORTS[spec.kind]
    except KeyError:
        raise ConfigError(f"transport must be one of {sorted(TRANSPORTS)}, found {spec.kind!r}") from None
    return cls(spec, requests, targets)
