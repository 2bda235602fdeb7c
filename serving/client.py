"""The Python client of the serving API, over HTTP or gRPC, for several endpoints.

Every call has a deadline; an attempt that fails with a connection error, a timeout, a 5xx or
a retryable gRPC code is retried on the *next* endpoint after a full-jitter backoff; with
``hedge_after_s`` a second attempt races the first when it is slow. Bad input (4xx,
INVALID_ARGUMENT) is never retried. With ``fallback`` (a ``LocalFallback``), a recommend call
that no endpoint answers in time is answered from the artifact's lists, ``degraded: true``,
instead of raising (searches have no local tier: the replicas' BM25 is theirs). bench/ and
drills/ use it. With ``ca`` (a PEM CA file) it trusts only that CA: ``https://`` endpoints are
verified against it and gRPC goes over TLS (without, gRPC is plaintext and ``https://`` uses the
system's CAs).

Example:
    >>> async with Client(["http://127.0.0.1:8100", "http://127.0.0.1:8101"]) as c:  # doctest: +SKIP
    ...     answer = await c.recommend({"user_id": "1", "k": 5})
    >>> answer.degraded  # doctest: +SKIP
    False
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from serving.errors import ClientError, InvalidRequest
from serving.local_fallback import LocalFallback
from serving.retry import (
    GRPC_RETRYABLE,
    RetryPolicy,
    attempt_timeout_s,
    backoff_s,
    endpoint_order,
    retryable_http,
)
from serving.schemas import RecommendRequest, RecommendResponse

__all__ = ["Client", "recommend_sync"]

_TIMEOUT_HEADER = "X-Request-Timeout-Ms"
# operation -> (HTTP path, gRPC method); the request / response messages are named after it
_ROUTES = {"recommend": ("/v1/recommend", "/recdrill.v1.Recommender/Recommend"),
           "search": ("/v1/search", "/recdrill.v1.Recommender/Search")}


class _Fatal(Exception):
    """A non-retryable answer (bad input)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """Async client; ``transport`` is "http" (endpoints are base URLs) or "grpc" (host:port)."""

    def __init__(self, endpoints: Sequence[str], *, transport: str = "http",
                 policy: RetryPolicy | None = None, token: str | None = None,
                 rng: random.Random | None = None,
                 fallback: LocalFallback | None = None, ca: str | Path | None = None) -> None:
        if not endpoints:
            raise ValueError("Client needs at least one endpoint")
        if transport not in ("http", "grpc"):
            raise ValueError(f"transport: expected 'http' or 'grpc', found {transport!r}")
        self.endpoints, self.transport = list(endpoints), transport
        self.ca = None if ca is None else Path(ca)
        self._ssl: Any = True  # aiohttp's default: verify https:// with the system's CAs
        self._grpc_credentials: Any = None
        if self.ca is not None:  # files checked now: a bad one is a ValueError naming it
            from security.tls import client_context, grpc_channel_credentials

            if transport == "http":
                plain = [e for e in self.endpoints if not e.startswith("https://")]
                if plain:
                    raise ValueError(f"ca: expected https:// endpoints to verify, found "
                                     f"{plain}; use https:// or drop ca")
                self._ssl = client_context(self.ca)
            else:
                self._grpc_credentials = grpc_channel_credentials(self.ca)
        self.policy = policy or RetryPolicy()
        self.fallback = fallback
        self.fallbacks = 0  # answers the local degraded tier gave (no endpoint could)
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._rng = rng or random.Random()
        self._next = itertools.count(self._rng.randrange(len(self.endpoints)))
        self._session: Any = None
        self._stubs: dict[tuple[str, str], Any] = {}
        self._grpc_channels: dict[str, Any] = {}
        self._channels: list[Any] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        for channel in self._channels:
            await channel.close()

    async def recommend(self, request: RecommendRequest | dict[str, Any],
                        policy: RetryPolicy | None = None) -> RecommendResponse:
        """One answer within the deadline, or ClientError listing every attempt."""
        body = request if isinstance(request, dict) else request.model_dump(exclude_none=True)
        raw = await self.recommend_raw(body, policy)
        return RecommendResponse.model_validate(raw)

    async def recommend_raw(self, body: dict[str, Any], policy: RetryPolicy | None = None
                            ) -> dict[str, Any]:
        """As ``recommend`` but returns the decoded JSON (cheaper: for load generators)."""
        return await self._call("recommend", body, policy)

    async def search_raw(self, body: dict[str, Any], policy: RetryPolicy | None = None
                         ) -> dict[str, Any]:
        """A search (``POST /v1/search`` / ``Recommender.Search``) with the same deadline,
        retries and hedging as ``recommend_raw``; the decoded JSON of a ``SearchResponse``.

        A version without search answers 404 / UNIMPLEMENTED: a ClientError, never retried.
        There is no local fallback for search: with no endpoint answering it raises.

        Example:
            >>> await client.search_raw({"query": "red shoes", "k": 10})  # doctest: +SKIP
            {'items': [...], 'degraded': False, 'truncated': False, 'personalised': False, ...}
        """
        return await self._call("search", body, policy)

    async def _call(self, op: str, body: dict[str, Any], policy: RetryPolicy | None
                    ) -> dict[str, Any]:
        p = policy or self.policy
        deadline = time.monotonic() + p.deadline_s
        order = endpoint_order(len(self.endpoints), next(self._next) % len(self.endpoints))
        attempts: list[tuple[str, str]] = []
        for attempt in range(p.retries + 1):
            if attempt:
                await asyncio.sleep(backoff_s(p, attempt, self._rng.random()))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            first = self.endpoints[order[attempt % len(order)]]
            hedge = (self.endpoints[order[(attempt + 1) % len(order)]]
                     if p.hedge_after_s is not None and len(order) > 1 else None)
            try:
                return await self._attempt(op, first, hedge, body, p, remaining, attempts)
            except _RetryableError:
                continue  # recorded in attempts; the next attempt goes elsewhere
            except _Fatal as exc:
                raise ClientError(str(exc), attempts + [(first, str(exc))], exc.status) from None
        if self.fallback is not None and op == "recommend":
            try:
                answer = self.fallback.answer(body)
            except InvalidRequest as exc:
                raise ClientError(str(exc), attempts, 422) from None
            self.fallbacks += 1
            return answer
        raise ClientError(f"no endpoint answered within {p.deadline_s} s after "
                          f"{len(attempts)} attempt(s): {attempts[-3:]}", attempts)

    async def _attempt(self, op: str, endpoint: str, hedge: str | None, body: dict[str, Any],
                       p: RetryPolicy, remaining: float, attempts: list[tuple[str, str]]
                       ) -> dict[str, Any]:
        timeout = attempt_timeout_s(p, remaining)
        if hedge is None:
            return await self._one(op, endpoint, body, timeout, attempts)
        tasks = [asyncio.ensure_future(self._one(op, endpoint, body, timeout, attempts))]
        done, _ = await asyncio.wait(tasks, timeout=p.hedge_after_s)
        if not done:
            tasks.append(asyncio.ensure_future(self._one(
                op, hedge, body, max(0.0, timeout - (p.hedge_after_s or 0)), attempts)))
        error: BaseException | None = None
        for next_done in asyncio.as_completed(tasks):
            try:
                result = await next_done
            except _RetryableError as exc:
                error = exc
                continue
            for t in tasks:
                t.cancel()
            return result
        assert error is not None
        raise error

    async def _one(self, op: str, endpoint: str, body: dict[str, Any], timeout: float,
                   attempts: list[tuple[str, str]]) -> dict[str, Any]:
        try:
            if self.transport == "http":
                return await self._http(op, endpoint, body, timeout)
            return await self._grpc(op, endpoint, body, timeout)
        except _RetryableError as exc:
            attempts.append((endpoint, str(exc)))
            raise

    async def _http(self, op: str, url: str, body: dict[str, Any], timeout: float
                    ) -> dict[str, Any]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, ssl=self._ssl),
                json_serialize=_dumps)
        headers = {**self._headers, _TIMEOUT_HEADER: str(int(timeout * 1000))}
        try:
            async with self._session.post(f"{url}{_ROUTES[op][0]}", json=body, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                data = await resp.read()
                if resp.status == 200:
                    return _loads(data)  # type: ignore[no-any-return]
                message = f"HTTP {resp.status}: {data[:300].decode(errors='replace')}"
                if retryable_http(resp.status):
                    raise _RetryableError(message)
                raise _Fatal(resp.status, message)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from None

    async def _grpc(self, op: str, target: str, body: dict[str, Any], timeout: float
                    ) -> dict[str, Any]:
        import grpc

        from serving.proto import recdrill_pb2 as pb

        request_type = pb.SearchRequest if op == "search" else pb.RecommendRequest
        stub = self._stubs.get((target, op))
        if stub is None:
            channel = self._grpc_channels.get(target)
            if channel is None:
                channel = self._grpc_channels[target] = (
                    grpc.aio.insecure_channel(target) if self._grpc_credentials is None
                    else grpc.aio.secure_channel(target, self._grpc_credentials))
                self._channels.append(channel)
            response_type = pb.SearchResponse if op == "search" else pb.RecommendResponse
            stub = self._stubs[(target, op)] = channel.unary_unary(
                _ROUTES[op][1], request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString)
        try:
            resp = await stub(request_type(**body), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            message = f"gRPC {exc.code().name}: {exc.details()}"
            if exc.code().name in GRPC_RETRYABLE:
                raise _RetryableError(message) from None
            raise _Fatal(400, message) from None
        out = {"items": [{"item_id": i.item_id, "title": i.title, "score": i.score}
                         for i in resp.items],
               "model_version": resp.model_version, "degraded": resp.degraded,
               "replica": resp.replica, "node": resp.node}
        if op == "search":
            out.update(truncated=resp.truncated, personalised=resp.personalised)
        return out


class _RetryableError(Exception):
    """An attempt failed in a way another endpoint may not."""


def _dumps(obj: Any) -> str:
    import orjson

    return orjson.dumps(obj).decode()


def _loads(data: bytes) -> Any:
    import orjson

    return orjson.loads(data)


def recommend_sync(endpoints: Sequence[str], request: RecommendRequest | dict[str, Any], *,
                   transport: str = "http", policy: RetryPolicy | None = None,
                   ca: str | Path | None = None) -> RecommendResponse:
    """One call from synchronous code (opens and closes its own connections)."""
    async def _run() -> RecommendResponse:
        async with Client(endpoints, transport=transport, policy=policy, ca=ca) as client:
            return await client.recommend(request)

    return asyncio.run(_run())
