"""The one error table: how each serving error is answered over HTTP, gRPC and Serve's proxy
path (status, gRPC code, Retry-After), so the three cannot drift apart.

Example:
    >>> status_of(InvalidRequest("k: too big")).http
    422
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.errors import (
    InvalidRequest,
    ModelLoadError,
    NoSearchModel,
    NotReady,
    Overloaded,
    ServingError,
    Unauthorized,
)

__all__ = ["Status", "status_of"]


@dataclass(frozen=True)
class Status:
    """How one error is answered on every protocol: HTTP status, gRPC status name, and the
    seconds a client should wait before retrying (``Retry-After``), if any."""

    http: int
    grpc: str
    retry_after_s: float | None = None
    expected: bool = True  # False: an unexpected exception, logged and reported as internal

    def message(self, exc: BaseException) -> str:
        """What the caller is told: the error's own words, or, for an unexpected exception,
        that it was internal and worth retrying elsewhere."""
        return str(exc) if self.expected else f"internal error, retry elsewhere: {exc!r}"

    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after_s is None else {"Retry-After": f"{self.retry_after_s:g}"}


# The one error table of HTTP, gRPC and Serve's proxy path. An unexpected exception is 503
# over HTTP (the front door and clients retry it elsewhere) and INTERNAL over gRPC: never 500,
# never UNKNOWN, never counted as OK.
_TABLE: tuple[tuple[type[ServingError], Status], ...] = (
    (InvalidRequest, Status(422, "INVALID_ARGUMENT")),
    (NotReady, Status(503, "UNAVAILABLE", 1.0)),
    (ModelLoadError, Status(409, "FAILED_PRECONDITION")),
    (Unauthorized, Status(401, "UNAUTHENTICATED")),
    (NoSearchModel, Status(404, "UNIMPLEMENTED")),
)
_UNEXPECTED = Status(503, "INTERNAL", 1.0, expected=False)


def status_of(exc: BaseException) -> Status:
    """The answer to ``exc`` on every protocol.

    Example:
        >>> status_of(Overloaded("full", retry_after_s=0.5))
        Status(http=503, grpc='RESOURCE_EXHAUSTED', retry_after_s=0.5, expected=True)
        >>> status_of(KeyError("x")).grpc
        'INTERNAL'
    """
    if isinstance(exc, Overloaded):
        return Status(503, "RESOURCE_EXHAUSTED", exc.retry_after_s)
    return next((st for kind, st in _TABLE if isinstance(exc, kind)), _UNEXPECTED)
