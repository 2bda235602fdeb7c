"""The HTTP API (FastAPI): recommend, health, metrics, admin; the schema at /openapi.json.

Routes:
    POST /v1/recommend     RecommendRequest → RecommendResponse (open, or token by config)
    POST /v1/search        SearchRequest → SearchResponse (same token rule; 404 when the
                           version carries no search model)
    POST /v1/feedback      FeedbackRequest → 202 FeedbackResponse (same token rule)
    GET  /v1/feedback/stats  versions in service and feedback tallies (open, like /metrics)
    GET  /healthz          liveness: the event loop answers
    GET  /readyz           readiness: a verified, probed version is in service (else 503)
    GET  /metrics          Prometheus exposition
    POST /admin/reload     load a version on this replica ({"version": null} = current)
    POST /admin/promote    same, version required
    POST /admin/rollback   back to the previous version on this replica
Access (``security.access``): the data routes need a token of role reader or above, unless no
token table and no api token are configured (then they are open); the admin routes need role
operator and are off (403) without a token table or admin token. A missing, unknown, wrong or
revoked token is 401 (one message for all, with ``WWW-Authenticate: Bearer``), a valid token
with too low a role 403. Health, readiness, metrics and the OpenAPI document stay open (load
balancers and scrapers call them). Every admin action, its refusals included, is appended to
the audit chain with the caller's token name and role.

The recommend and feedback routes parse the body themselves (orjson, then pydantic) rather
than through FastAPI's body binding: they are the hot path, and it lets every bad input get
its own status and message — malformed JSON 400, oversized body 413, wrong fields 422 — never
a 500.

Example:
    >>> app = create_app(service, AppConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from security.access import Authorizer, Decision
from security.tokens import Principal, Role
from serving.admission import parse_timeout_s
from serving.errors import (
    InvalidRequest,
    ModelLoadError,
    ServingError,
)
from serving.metrics import CONTENT_TYPE
from serving.schemas import (
    MAX_VALID_BODY_BYTES,
    AdminAnswer,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    FeedbackStats,
    Health,
    PromoteRequest,
    RecommendRequest,
    RecommendResponse,
    SearchRequest,
    SearchResponse,
    VersionRequest,
    parse_feedback,
    parse_request,
    parse_search,
)
from serving.service import RecommendService
from serving.status import status_of

__all__ = ["AppConfig", "FastPath", "create_app"]

log = logging.getLogger(__name__)

_JSON = "application/json"
DRAIN_BYTES = 8 * 1024 * 1024  # an oversized body up to this is read (and dropped) before 413
TIMEOUT_HEADER = "x-request-timeout-ms"


async def _drain(request: Request) -> None:
    """Read what is left of the body and keep none of it."""
    async for _ in request.stream():
        pass


async def _read_within(request: Request, limit: int) -> bytes | None:
    """The body if it is at most ``limit`` bytes; else None, once it is read and dropped (up
    to ``DRAIN_BYTES``: a chunked body beyond that is cut off)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            break
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


@dataclass(frozen=True)
class AppConfig:
    """HTTP- and gRPC-level settings: body limit, credentials and the audit log."""

    max_body_bytes: int = MAX_VALID_BODY_BYTES  # 1.55 MB: every schema-valid body fits
    api_token: str | None = None  # static token of role reader (None: see security.access)
    admin_token: str | None = None  # static token of role operator
    tokens_file: str | None = None  # the token table (security.tokens); None: static only
    audit_log: str | None = None  # None: security.paths.audit_log_path()

    def authorizer(self) -> Authorizer:
        """The access decisions these settings describe (one per server: HTTP and gRPC share it)."""
        static = {t: r for t, r in ((self.api_token, Role.READER),
                                    (self.admin_token, Role.OPERATOR)) if t is not None}
        table = Path(self.tokens_file) if self.tokens_file is not None else None
        return Authorizer(table=table, static=static)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


def _error_of(exc: BaseException) -> Response:
    """The HTTP answer to ``exc`` (``serving.status.status_of``, shared with gRPC)."""
    st = status_of(exc)
    return _error(st.http, st.message(exc), st.headers())


def _refusal(decision: Decision) -> Response:
    """The 401 / 403 answer of a refused access check."""
    headers = {"WWW-Authenticate": 'Bearer realm="recdrill"'} if decision.status == 401 else None
    return _error(decision.status, decision.message, headers)


def _audit(cfg: AppConfig, principal: Principal | None, action: str, target: str | None,
           details: dict[str, Any]) -> None:
    """Append one admin act to the audit chain; a failing log is logged, never the answer."""
    from security.audit import record

    try:
        record(action, target=target, role=str(principal.role) if principal else None,
               actor=principal.name if principal else "anonymous", details=details,
               log=Path(cfg.audit_log) if cfg.audit_log else None)
    except Exception:  # an unwritable audit log must not take serving down
        log.exception("audit: could not record %s", action)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON."},
    401: {"model": ErrorBody, "description": "Missing, unknown, wrong or revoked token."},
    403: {"model": ErrorBody, "description": "The token's role is below the route's."},
    413: {"model": ErrorBody, "description": "Body over the size limit."},
    422: {"model": ErrorBody, "description": "Wrong fields, types, ranges or unknown ids."},
    503: {"model": ErrorBody, "description": "Overloaded or not ready; see Retry-After."}}


_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **{k: v for k, v in _ERRORS.items() if k in (401, 422)},
    403: {"model": ErrorBody, "description": "The token's role is below operator, or admin "
                                             "routes are off (no token table or admin token)."},
    409: {"model": ErrorBody, "description": "The version was refused (verification, load or "
                                             "probe failed) or there is none to roll back to; "
                                             "the old version keeps serving."}}


def create_app(service: RecommendService, config: AppConfig | None = None,
               auth: Authorizer | None = None) -> FastAPI:
    """Build the FastAPI app around one replica's service (``auth``: shared with the gRPC
    server; default: the one ``config`` describes)."""
    cfg = config or AppConfig()
    access = auth if auth is not None else cfg.authorizer()
    app = FastAPI(title="recdrill", version="1", summary="Recommendations that survive faults.")
    metrics = service.metrics

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=_ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {
                  _JSON: {"schema": RecommendRequest.model_json_schema()}}}})
    async def recommend(request: Request) -> Response:
        """Top-k items for a user or a history; ``degraded`` when the fallback tier answered."""
        return await _observed("recommend", request, "history", parse_request,
                               service.recommend)

    async def _observed(route: str, request: Request, shorter: str, parse: Any,
                        call: Any) -> Response:
        """Parse, call the service, answer; the request is counted whatever happens."""
        t0 = time.perf_counter()
        # If the call raises (a client gone mid-body), Starlette answers 500: count that.
        code, version, degraded = "500", service.version or "none", False
        try:
            response, version, degraded = await _call(request, shorter, parse, call)
            code = str(response.status_code)
            return response
        finally:
            metrics.observe_request(route, "http", code, version, degraded,
                                    time.perf_counter() - t0)

    async def _json_body(request: Request, shorter: str) -> Any | Response:
        """The decoded body, or the 401/413/400 response that refuses it."""
        decision = access.check(request.headers.get("authorization"), Role.READER)
        if not decision.allowed:
            return _refusal(decision)
        length = request.headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        if declared is not None and declared > cfg.max_body_bytes:
            if declared <= DRAIN_BYTES:  # read and drop it, or a client that writes its whole
                await _drain(request)  # body before reading gets a reset, not the 413
            return _error(413, f"body: {length} bytes is over the {cfg.max_body_bytes}-byte "
                               f"limit; send a shorter {shorter}")
        body = await _read_within(request, cfg.max_body_bytes)
        if body is None:
            return _error(413, f"body: over the {cfg.max_body_bytes}-byte limit")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"body: malformed JSON ({exc})")

    async def _call(request: Request, shorter: str, parse: Any, call: Any
                    ) -> tuple[Response, str, bool]:
        version = service.version or "none"
        obj = await _json_body(request, shorter)
        if isinstance(obj, Response):
            return obj, version, False
        try:
            answer = await call(parse(obj), parse_timeout_s(request.headers.get(TIMEOUT_HEADER)))
        except Exception as exc:  # noqa: BLE001 -- serving.status's table answers every error
            return _error_of(exc), version, False
        return _json(200, answer), answer["model_version"], answer["degraded"]

    @app.post("/v1/search", response_model=SearchResponse,
              responses={**_ERRORS, 404: {"model": ErrorBody, "description":
                                          "The version in service carries no search model."}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  _JSON: {"schema": SearchRequest.model_json_schema()}}}})
    async def search(request: Request) -> Response:
        """Items matching a text query, personalised by a user_id or history when given;
        ``degraded`` when BM25 answered, ``truncated`` when the query was cut."""
        return await _observed("search", request, "query", parse_search, service.search)

    @app.post("/v1/feedback", status_code=202, response_model=FeedbackResponse,
              responses={k: v for k, v in _ERRORS.items() if k != 503},
              openapi_extra={"requestBody": {"required": True, "content": {
                  _JSON: {"schema": FeedbackRequest.model_json_schema()}}}})
    async def feedback(request: Request) -> Response:
        """Which recommended item the user took; feeds the canary's online HR@10."""
        obj = await _json_body(request, "items list")
        if isinstance(obj, Response):
            return obj
        try:
            fb = parse_feedback(obj)
        except InvalidRequest as exc:
            return _error(422, str(exc))
        known = service.record_feedback(fb.model_version, fb.items, fb.item_id)
        return _json(202, {"recorded": True, "model_version": fb.model_version, "known": known})

    @app.get("/v1/feedback/stats", response_model=FeedbackStats)
    async def feedback_stats() -> Response:
        """This replica's stable and canary versions and its feedback tallies per version."""
        return _json(200, service.feedback_report())

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Response:
        """Liveness: the server's event loop is answering."""
        return _json(200, {"status": "alive", "model_version": service.version})

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz() -> Response:
        """Readiness: loaded + verified + probe passed."""
        if service.ready:
            return _json(200, {"status": "ready", "model_version": service.version})
        detail = "draining" if service.draining else "no verified version loaded"
        return _json(503, {"status": "not-ready", "detail": detail}, {"Retry-After": "1"})

    @app.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition.",
        "content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def _admin(request: Request, action: str, need_version: bool) -> Response:
        decision = access.check(request.headers.get("authorization"), Role.OPERATOR)
        if not decision.allowed:
            if decision.principal is not None:  # a known caller above its role: on the record
                await asyncio.to_thread(_audit, cfg, decision.principal, f"serving.{action}",
                                        None, {"outcome": "denied", "replica": service.replica})
            return _refusal(decision)
        answer, asked = await _admin_act(request, action, need_version)
        outcome = "done" if answer.status_code == 200 else f"refused {answer.status_code}"
        await asyncio.to_thread(_audit, cfg, decision.principal, f"serving.{action}", asked,
                                {"outcome": outcome, "replica": service.replica,
                                 "serving": service.version})
        return answer

    async def _admin_act(request: Request, action: str, need_version: bool
                         ) -> tuple[Response, str | None]:
        """Do one admin action: (the answer, the version asked for)."""
        version = None
        if action != "rollback":
            try:
                version = VersionRequest.model_validate(orjson.loads(await request.body() or b"{}")
                                                        ).version
            except (orjson.JSONDecodeError, ValueError) as exc:
                return _error(422, f"body: expected {{\"version\": str | null}} ({exc})"), None
            if need_version and version is None:
                return _error(422, "version: required for promote"), None
        try:
            loaded = await asyncio.to_thread(
                service.rollback if action == "rollback" else lambda: service.load(version))
        except ModelLoadError as exc:
            return _error(409, f"{exc}; still serving {service.version}"), version
        except ServingError as exc:
            return _error(409, str(exc)), version
        return _json(200, {"model_version": loaded, "replica": service.replica}), loaded

    @app.post("/admin/reload", response_model=AdminAnswer, responses=_ADMIN_ERRORS,
              openapi_extra={"requestBody": {"required": False, "content": {
                  _JSON: {"schema": VersionRequest.model_json_schema()}}}})
    async def reload(request: Request) -> Response:
        """Load a version (default: the source's current one) on this replica."""
        return await _admin(request, "reload", False)

    @app.post("/admin/promote", response_model=AdminAnswer, responses=_ADMIN_ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {
                  _JSON: {"schema": PromoteRequest.model_json_schema()}}}})
    async def promote(request: Request) -> Response:
        """Load the named version on this replica."""
        return await _admin(request, "promote", True)

    @app.post("/admin/rollback", response_model=AdminAnswer, responses=_ADMIN_ERRORS)
    async def rollback(request: Request) -> Response:
        """Back to the version served before the current one."""
        return await _admin(request, "rollback", False)

    _declare_security(app, access)
    app.state.hot_routes = {("POST", "/v1/recommend"): recommend,
                            ("POST", "/v1/search"): search,
                            ("POST", "/v1/feedback"): feedback,
                            ("GET", "/readyz"): lambda _request: readyz()}
    return app


_READ_ROUTES = ("/v1/recommend", "/v1/search", "/v1/feedback")


def _declare_security(app: FastAPI, access: Authorizer) -> None:
    """Say in /openapi.json which routes need a bearer token, as ``access`` enforces it: the
    data routes unless reads are open, the admin routes whenever they are on."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "A recdrill token (recdrill token create); role reader for the data "
                           "routes, operator for the admin routes."}}
        for path, item in schema.get("paths", {}).items():
            guarded = (path in _READ_ROUTES and not access.reads_open) or (
                path.startswith("/admin/") and access.operators_enabled)
            if guarded:
                for operation in item.values():
                    operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class FastPath:
    """ASGI in front of the app: the hot routes (recommend, search, feedback, readiness) go straight to
    their endpoint, past FastAPI's middleware stack and router, which took about a tenth of a
    replica's CPU under load; every other path, and the OpenAPI document, is the app's.

    Example:
        >>> server_app = FastPath(create_app(service))  # doctest: +SKIP
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], Any] = app.state.hot_routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        endpoint = (self.routes.get((scope["method"], scope["path"]))
                    if scope["type"] == "http" else None)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await endpoint(Request(scope, receive))
        except Exception as exc:  # noqa: BLE001 - what Starlette's error middleware would do
            response = _error(500, f"internal error: {exc!r}")
        await response(scope, receive, send)
