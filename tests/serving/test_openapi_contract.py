"""The published OpenAPI says what the server enforces: a body is schema-valid exactly when the
server's parser accepts it (property-based, hypothesis), and every status and content type the
routes answer with is documented. A client generated from /openapi.json can trust it."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serving_factory import Artifacts

from serving.app import AppConfig, create_app
from serving.errors import InvalidRequest
from serving.metrics import CONTENT_TYPE
from serving.schemas import parse_request, parse_search
from serving.service import RecommendService
from serving.source import DirectorySource

_ABSENT = object()


@pytest.fixture(scope="module")
def openapi(artifacts: Artifacts) -> dict[str, Any]:
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0")
    return create_app(svc, AppConfig(admin_token="t")).openapi()


def _body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = (doc["paths"][path]["post"]["requestBody"]["content"]
                              ["application/json"]["schema"])
    return schema


def _accepted(parse: Any, body: dict[str, Any]) -> bool:
    try:
        parse(body)
    except InvalidRequest:
        return False
    return True


def _valid(schema: dict[str, Any], body: dict[str, Any]) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(body)


def _bodies(fields: dict[str, list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: st.sampled_from([_ABSENT, *values])
                                  for name, values in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not _ABSENT})


_COMMON: dict[str, list[Any]] = {
    "user_id": [None, "u0", "", 7, "x" * 257],
    "history": [None, [], ["i1"], ["i1", "i2"], [1], "i1", ["x" * 257]],
    "k": [0, 1, 10, 100, 101, "5", 2.5, 5.0, 100.0, 101.0, None, True],
    "colour": ["red"]}


@settings(max_examples=400, deadline=None)
@given(body=_bodies({**_COMMON, "exclude_seen": [True, False, "yes", None]}))
def test_recommend_schema_accepts_exactly_what_the_server_accepts(
        openapi: dict[str, Any], body: dict[str, Any]) -> None:
    schema = _body_schema(openapi, "/v1/recommend")
    assert _valid(schema, body) == _accepted(parse_request, body), body


@settings(max_examples=400, deadline=None)
@given(body=_bodies({**_COMMON, "query": ["", " ", " \t", "mug", " mug ", "x" * 1001, 5, None]}))
def test_search_schema_accepts_exactly_what_the_server_accepts(
        openapi: dict[str, Any], body: dict[str, Any]) -> None:
    schema = _body_schema(openapi, "/v1/search")
    assert _valid(schema, body) == _accepted(parse_search, body), body


def test_both_user_id_and_history_is_schema_invalid(openapi: dict[str, Any]) -> None:
    body = {"user_id": "u0", "history": ["i1"]}
    assert not _valid(_body_schema(openapi, "/v1/recommend"), body)
    assert not _valid(_body_schema(openapi, "/v1/search"), {"query": "mug", **body})


def test_admin_and_metrics_routes_document_what_they_answer(openapi: dict[str, Any]) -> None:
    promote = openapi["paths"]["/admin/promote"]["post"]
    assert promote["requestBody"]["required"] is True
    schema = _body_schema(openapi, "/admin/promote")
    assert not _valid(schema, {}) and _valid(schema, {"version": "v2"})
    for path in ("/admin/reload", "/admin/promote", "/admin/rollback"):
        assert {"200", "401", "403", "409", "422"} <= set(openapi["paths"][path]["post"]
                                                          ["responses"]), path
    metrics = openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [CONTENT_TYPE] and CONTENT_TYPE.startswith("text/plain")
    assert "404" in openapi["paths"]["/v1/search"]["post"]["responses"]
