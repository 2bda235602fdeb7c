"""The gRPC API (``recdrill.v1``: Recommender.Recommend, Recommender.Feedback and Health.Check)
over grpc.aio.

Requests arrive as raw bytes and are decoded here, so a malformed protobuf is answered with
INVALID_ARGUMENT (grpc's own decoder would say INTERNAL). Errors map as: bad input →
INVALID_ARGUMENT, shed → RESOURCE_EXHAUSTED, not ready → UNAVAILABLE; never UNKNOWN/INTERNAL.
The call's own deadline (``context.time_remaining()``) bounds the model's time.

Example:
    >>> server = await start_grpc_server(service, "127.0.0.1", 50051)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from serving.errors import InvalidRequest, NotReady, Overloaded
from serving.proto import recdrill_pb2 as pb
from serving.schemas import parse_feedback, parse_request
from serving.service import RecommendService

__all__ = [
    "MAX_MESSAGE_BYTES",
    "feedback_to_dict",
    "request_to_dict",
    "response_to_proto",
    "start_grpc_server",
]

MAX_MESSAGE_BYTES = 64 * 1024
_RECOMMEND = "/recdrill.v1.Recommender/Recommend"


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
    def __init__(self, service: RecommendService) -> None:
        self.service = service

    async def recommend(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        t0, svc = time.perf_counter(), self.service
        code, version, degraded = "OK", svc.version or "none", False
        try:
            msg = _decode(raw, pb.RecommendRequest, "history")
            answer = await svc.recommend(parse_request(request_to_dict(msg)),
                                         context.time_remaining())
            version, degraded = answer["model_version"], answer["degraded"]
            return response_to_proto(answer).SerializeToString()
        except InvalidRequest as exc:
            code = "INVALID_ARGUMENT"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Overloaded as exc:
            code = "RESOURCE_EXHAUSTED"
            context.set_trailing_metadata((("retry-after", f"{exc.retry_after_s:g}"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except NotReady as exc:
            code = "UNAVAILABLE"
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        finally:
            svc.metrics.observe_request("grpc.recommend", code, version, degraded,
                                        time.perf_counter() - t0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def feedback(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
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


async def start_grpc_server(service: RecommendService, host: str, port: int
                            ) -> tuple[grpc.aio.Server, int]:
    """Bind (port 0 = any free port) and start; returns the server and its port."""
    handlers = _Handlers(service)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                      ("grpc.max_receive_message_length", 4 * 1024 * 1024)])
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("recdrill.v1.Recommender", {
            "Recommend": grpc.unary_unary_rpc_method_handler(handlers.recommend),
            "Feedback": grpc.unary_unary_rpc_method_handler(handlers.feedback)}),
        grpc.method_handlers_generic_handler("recdrill.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(handlers.check)}),
    ))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"gRPC: cannot bind {host}:{port}; choose another --grpc-port")
    await server.start()
    return server, bound
