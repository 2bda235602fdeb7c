"""The gRPC API over grpc.aio: ``recdrill.v1`` (Recommender.Recommend, Recommender.Search,
Recommender.Feedback, Health.Check), the standard ``grpc.health.v1.Health`` (Check and Watch) and server reflection,
so ``grpcurl`` and gRPC-aware load balancers work without the .proto.

Requests arrive as raw bytes and are decoded here, so a malformed protobuf is answered with
INVALID_ARGUMENT (grpc's own decoder would say INTERNAL). Recommend's errors map as
(``grpc_code_of``): bad input → INVALID_ARGUMENT, shed → RESOURCE_EXHAUSTED, not ready →
UNAVAILABLE, anything unexpected → INTERNAL with a message (never UNKNOWN); the metrics record
the code returned.
The call's own deadline (``context.time_remaining()``) bounds the model's time.

``grpc.health.v1.Health`` answers SERVING for ``""`` and ``recdrill.v1.Recommender`` only while
the service has a verified model in service (``service.ready``), else NOT_SERVING.

Example:
    >>> server, port = await start_grpc_server(service, "127.0.0.1", 50051)  # doctest: +SKIP
    $ grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from security.access import Authorizer
from security.tokens import Role
from serving.errors import InvalidRequest
from serving.proto import recdrill_pb2 as pb
from serving.schemas import parse_feedback, parse_request, parse_search
from serving.service import RecommendService
from serving.status import status_of

__all__ = [
    "HEALTH_POLL_S",
    "MAX_MESSAGE_BYTES",
    "SERVICE_NAMES",
    "feedback_to_dict",
    "grpc_code_of",
    "health_status",
    "request_to_dict",
    "response_to_proto",
    "search_to_dict",
    "start_grpc_server",
]

MAX_MESSAGE_BYTES = 64 * 1024
HEALTH_POLL_S = 0.5  # how often an open Watch stream re-reads the service's readiness
_RECOMMENDER = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
_HEALTH = pb.DESCRIPTOR.services_by_name["Health"].full_name
# The names grpc.health.v1.Health answers for ("" = the whole server).
_HEALTH_NAMES = (grpc_health.OVERALL_HEALTH, _RECOMMENDER)
SERVICE_NAMES = (_RECOMMENDER, _HEALTH, grpc_health.SERVICE_NAME, reflection.SERVICE_NAME)

log = logging.getLogger(__name__)


def grpc_code_of(exc: BaseException) -> grpc.StatusCode:
    """The status a Recommend call ends with when ``exc`` escapes the service.

    Example:
        >>> grpc_code_of(Overloaded("full")).name
        'RESOURCE_EXHAUSTED'
    """
    if isinstance(exc, asyncio.CancelledError):  # the client cancelled or its deadline passed
        return grpc.StatusCode.CANCELLED
    code: grpc.StatusCode = getattr(grpc.StatusCode, status_of(exc).grpc)
    return code


def health_status(ready: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    """The grpc.health.v1 status of every name this server checks.

    Example:
        >>> health_status(False) == health_pb2.HealthCheckResponse.NOT_SERVING
        True
    """
    return (health_pb2.HealthCheckResponse.SERVING if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING)


def request_to_dict(msg: pb.RecommendRequest) -> dict[str, Any]:
    """The JSON shape of a protobuf request (proto3 defaults mean 'absent')."""
    obj: dict[str, Any] = {}
    if msg.user_id:
        obj["user_id"] = msg.user_id
    if msg.history:
        obj["history"] = list(msg.history)
    if msg.k:
        obj["k"] = msg.k
    if msg.HasField("exclude_seen"):
        obj["exclude_seen"] = msg.exclude_seen
    return obj


def search_to_dict(msg: pb.SearchRequest) -> dict[str, Any]:
    """The JSON shape of a protobuf search (empty strings, 0 and empty lists mean 'absent';
    the query is always passed on, so an empty one is refused by name)."""
    obj: dict[str, Any] = {"query": msg.query}
    if msg.k:
        obj["k"] = msg.k
    if msg.user_id:
        obj["user_id"] = msg.user_id
    if msg.history:
        obj["history"] = list(msg.history)
    return obj


def feedback_to_dict(msg: pb.FeedbackRequest) -> dict[str, Any]:
    """The JSON shape of a protobuf feedback message (empty strings and lists mean 'absent')."""
    obj: dict[str, Any] = {}
    if msg.model_version:
        obj["model_version"] = msg.model_version
    if msg.items:
        obj["items"] = list(msg.items)
    if msg.item_id:
        obj["item_id"] = msg.item_id
    return obj


def _decode(raw: bytes, message: type[Any], shorter: str) -> Any:
    """Parse a request under the size limit; InvalidRequest says what was wrong."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidRequest(f"request: {len(raw)} bytes is over the "
                             f"{MAX_MESSAGE_BYTES}-byte limit; send a shorter {shorter}")
    try:
        return message.FromString(raw)
    except DecodeError as exc:
        raise InvalidRequest(f"request: malformed protobuf ({exc})") from None


def response_to_proto(answer: dict[str, Any]) -> pb.RecommendResponse:
    return pb.RecommendResponse(
        items=[pb.Item(**item) for item in answer["items"]],
        model_version=answer["model_version"], degraded=answer["degraded"],
        replica=answer["replica"], node=answer["node"])


class _Handlers:
    def __init__(self, service: RecommendService, auth: Authorizer | None = None) -> None:
        self.service, self.auth = service, auth

    async def _admit(self, route: str, context: grpc.aio.ServicerContext) -> None:
        """Abort with UNAUTHENTICATED / PERMISSION_DENIED unless the call's ``authorization``
        metadata carries a token of role reader or above (``security.access``)."""
        if self.auth is None:
            return
        header = next((str(v) for k, v in context.invocation_metadata() or ()
                       if k == "authorization"), None)
        decision = self.auth.check(header, Role.READER)
        if not decision.allowed:
            code = getattr(grpc.StatusCode, decision.grpc_code)
            self._observe(route, code, time.perf_counter())
            await context.abort(code, decision.message)

    async def recommend(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._admit("recommend", context)
        async def call() -> tuple[bytes, dict[str, Any]]:
            msg = _decode(raw, pb.RecommendRequest, "history")
            answer = await self.service.recommend(parse_request(request_to_dict(msg)),
                                                  context.time_remaining())
            return response_to_proto(answer).SerializeToString(), answer

        return await self._answer("recommend", call, context)

    async def search(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._admit("search", context)
        async def call() -> tuple[bytes, dict[str, Any]]:
            msg = _decode(raw, pb.SearchRequest, "query")
            answer = await self.service.search(parse_search(search_to_dict(msg)),
                                               context.time_remaining())
            return pb.SearchResponse(
                items=[pb.Item(**item) for item in answer["items"]],
                model_version=answer["model_version"], degraded=answer["degraded"],
                truncated=answer["truncated"], personalised=answer["personalised"],
                replica=answer["replica"], node=answer["node"]).SerializeToString(), answer

        return await self._answer("search", call, context)

    async def _answer(self, route: str, call: Any, context: grpc.aio.ServicerContext) -> bytes:
        # Recorded before the status leaves: a client that saw it can already scrape it.
        t0 = time.perf_counter()
        try:
            body, answer = await call()
        except asyncio.CancelledError:
            self._observe(route, grpc.StatusCode.CANCELLED, t0)
            raise
        except Exception as exc:  # every error gets its own status, never UNKNOWN
            st, code = status_of(exc), grpc_code_of(exc)
            if not st.expected:
                log.exception("%s failed unexpectedly", route)
            if st.retry_after_s is not None:
                context.set_trailing_metadata((("retry-after", f"{st.retry_after_s:g}"),))
            self._observe(route, code, t0)
            await context.abort(code, st.message(exc))
            raise AssertionError("unreachable") from None  # pragma: no cover
        self._observe(route, grpc.StatusCode.OK, t0, answer["model_version"], answer["degraded"])
        return body

    def _observe(self, route: str, code: grpc.StatusCode, t0: float,
                 version: str | None = None, degraded: bool = False) -> None:
        self.service.metrics.observe_request(
            route, "grpc", code.name, version or self.service.version or "none", degraded,
            time.perf_counter() - t0)

    async def feedback(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._admit("feedback", context)
        try:
            fb = parse_feedback(feedback_to_dict(_decode(raw, pb.FeedbackRequest, "items list")))
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None  # pragma: no cover
        known = self.service.record_feedback(fb.model_version, fb.items, fb.item_id)
        return pb.FeedbackResponse(recorded=True, model_version=fb.model_version,
                                   known=known).SerializeToString()

    async def check(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        ready = self.service.ready
        status = pb.HealthCheckResponse.SERVING if ready else pb.HealthCheckResponse.NOT_SERVING
        return pb.HealthCheckResponse(status=status,
                                      model_version=self.service.version or "").SerializeToString()


class _StandardHealth(grpc_health.aio.HealthServicer):
    """``grpc.health.v1.Health`` following ``service.ready``.

    The library's servicer answers from statuses it stores; ``refresh`` stores the service's
    current one, on every Check and every ``poll_s`` while a Watch stream is open, so no task
    outlives a stream (the server's stop cancels streams).
    """

    def __init__(self, service: RecommendService, poll_s: float) -> None:
        super().__init__()
        self._service, self._poll_s = service, poll_s
        self._stored: int | None = None

    async def refresh(self) -> None:
        status = health_status(self._service.ready)
        if status != self._stored:
            for name in _HEALTH_NAMES:
                await self.set(name, status)
            self._stored = status

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        await self.refresh()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> None:
        await self.refresh()
        poller = asyncio.ensure_future(self._poll())
        try:
            await super().Watch(request, context)
        finally:
            poller.cancel()  # not awaited: the server's stop does not wait for cancelled RPCs

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.refresh()


async def start_grpc_server(service: RecommendService, host: str, port: int, *,
                            health_poll_s: float = HEALTH_POLL_S,
                            credentials: grpc.ServerCredentials | None = None,
                            auth: Authorizer | None = None
                            ) -> tuple[grpc.aio.Server, int]:
    """Bind (port 0 = any free port) and start; returns the server and its port. With
    ``credentials`` (``security.tls.grpc_server_credentials``) the port speaks TLS only.

    Serves ``SERVICE_NAMES``: recdrill.v1's Recommender and Health, grpc.health.v1.Health and
    server reflection (v1alpha, the version grpcurl asks for first). With ``auth`` the
    Recommender's methods need a token in the ``authorization`` metadata (``Bearer <token>``);
    health and reflection stay open.
    """
    handlers = _Handlers(service, auth)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                      ("grpc.max_receive_message_length", 4 * 1024 * 1024)])
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(_RECOMMENDER, {
            "Recommend": grpc.unary_unary_rpc_method_handler(handlers.recommend),
            "Search": grpc.unary_unary_rpc_method_handler(handlers.search),
            "Feedback": grpc.unary_unary_rpc_method_handler(handlers.feedback)}),
        grpc.method_handlers_generic_handler(_HEALTH, {
            "Check": grpc.unary_unary_rpc_method_handler(handlers.check)}),
    ))
    health = _StandardHealth(service, health_poll_s)
    await health.refresh()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    bound = (server.add_insecure_port(f"{host}:{port}") if credentials is None
             else server.add_secure_port(f"{host}:{port}", credentials))
    if bound == 0:
        raise OSError(f"gRPC: cannot bind {host}:{port}; choose another --grpc-port")
    await server.start()
    return server, bound
