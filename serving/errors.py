"""Errors of the serving stage.

Hierarchy::

    ServingError                 root of everything serving raises on purpose
    ├── InvalidRequest           the caller's input is wrong (HTTP 4xx, gRPC INVALID_ARGUMENT)
    ├── Overloaded               shed by admission control (HTTP 503 + Retry-After, RESOURCE_EXHAUSTED)
    ├── NotReady                 no verified, probed model yet (HTTP 503, UNAVAILABLE)
    ├── ModelLoadError           an artifact failed verification, loading or its probe;
    │                            the version in service keeps serving
    ├── Unauthorized             an admin route without the right token (HTTP 401)
    └── ClientError              serving.client gave up: every attempt failed (``.attempts``)
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "InvalidRequest",
    "ModelLoadError",
    "NoSearchModel",
    "NotReady",
    "Overloaded",
    "ServingError",
    "Unauthorized",
]


class ServingError(Exception):
    """Root of the serving stage's errors."""


class InvalidRequest(ServingError):
    """The request is malformed or names unknown users/items; the message says which field."""


class Overloaded(ServingError):
    """Admission control shed the request; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(ServingError):
    """The replica has no verified, probed model to serve yet."""


class ModelLoadError(ServingError):
    """A version was refused (verification, load or probe failed); the old one keeps serving."""


class NoSearchModel(ServingError):
    """The version in service carries no search model (exported without ``--search``)."""


class Unauthorized(ServingError):
    """An admin (or protected) route was called without the configured token."""


class ClientError(ServingError):
    """Every attempt of a client call failed; ``attempts`` lists (endpoint, reason) pairs."""

    def __init__(self, message: str, attempts: list[tuple[str, str]] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []
        self.status = status

