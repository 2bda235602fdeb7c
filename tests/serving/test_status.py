"""One error table for every protocol: each serving error's HTTP status, gRPC code and
Retry-After, and HTTP's and gRPC's answers both read it."""

from __future__ import annotations

import json

import grpc
import pytest

from serving.app import _error_of
from serving.errors import InvalidRequest, ModelLoadError, NotReady, Overloaded, Unauthorized
from serving.grpc_server import grpc_code_of
from serving.status import status_of


@pytest.mark.parametrize(("exc", "http", "code", "retry"), [
    (InvalidRequest("k: too big"), 422, "INVALID_ARGUMENT", None),
    (Overloaded("full", retry_after_s=0.25), 503, "RESOURCE_EXHAUSTED", 0.25),
    (NotReady("loading"), 503, "UNAVAILABLE", 1.0),
    (ModelLoadError("refused"), 409, "FAILED_PRECONDITION", None),
    (Unauthorized("token"), 401, "UNAUTHENTICATED", None),
    (KeyError("bug"), 503, "INTERNAL", 1.0),
])
def test_each_error_has_one_answer_on_every_protocol(exc: Exception, http: int, code: str,
                                                     retry: float | None) -> None:
    st = status_of(exc)
    assert (st.http, st.grpc, st.retry_after_s) == (http, code, retry)
    assert grpc_code_of(exc) is getattr(grpc.StatusCode, code)
    response = _error_of(exc)
    assert response.status_code == http
    assert response.headers.get("retry-after") == (None if retry is None else f"{retry:g}")
    message = json.loads(response.body)["error"]
    assert message == (str(exc) if st.expected else f"internal error, retry elsewhere: {exc!r}")
    assert st.message(exc) == message
