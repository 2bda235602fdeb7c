"""Schemathesis against a real replica's HTTP server (uvicorn on loopback, no Ray), from the
OpenAPI it publishes: every phase and check, positive and negative data, admin routes with
the admin token. The replica serves a version that carries product search (the pretrained
encoder), so /v1/search runs the tokenizer and the model, not only its validation. It must
come out ready and answering, its artifacts untouched."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_factory import Artifacts, build_search_artifact

from export.fuzzing import tree_digest
from security.fuzzing import SUITE_SEED, FuzzResult, examples_from_env, seed_from_env
from serving.app import AppConfig
from serving.fuzzing import fuzz_http, known_ids
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource
from serving.testing import http_status

ADMIN = "fuzz-admin-token"
EXAMPLES = examples_from_env(40)  # per operation and phase: about 20 s here


@pytest.fixture(scope="module")
def searchable(artifacts: Artifacts) -> Path:
    """The root holding version ``s1``, which carries search (built once, ~25 s)."""
    return build_search_artifact(artifacts, "s1").parent


@pytest.fixture(scope="module")
def server(artifacts: Artifacts, searchable: Path) -> Iterator[tuple[EntryServer, Endpoint]]:
    svc = RecommendService(DirectorySource(str(searchable), str(artifacts.public_key)),
                           replica="r0", node="n0", config=ServiceConfig())
    svc.load("s1")
    srv = EntryServer(svc, AppConfig(admin_token=ADMIN), "127.0.0.1", 0, 0)
    endpoint = srv.start()
    yield srv, endpoint
    srv.stop()


def _post(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _paths(base_url: str) -> set[str]:
    with urllib.request.urlopen(base_url + "/openapi.json", timeout=10) as resp:
        doc = json.loads(resp.read())
    return {f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops}


def test_schemathesis_finds_nothing_and_the_replica_survives(
        server: tuple[EntryServer, Endpoint], searchable: Path,
        fuzz_report: list[FuzzResult]) -> None:
    srv, ep = server
    before = tree_digest(searchable)
    result = fuzz_http(ep.http_url, examples=EXAMPLES, seed=seed_from_env(SUITE_SEED),
                       headers={"Authorization": f"Bearer {ADMIN}"},
                       ids=known_ids(srv.service.runner))
    fuzz_report.append(result)
    print(result.summary_line())
    assert not result.failures, "\n\n".join(
        f"{f.target} [{f.check}] {f.message}\n{f.reproduce}" for f in result.failures)
    assert not result.notes
    assert set(result.cases) == _paths(ep.http_url)  # every operation, admin ones included
    assert {"200", "202", "409", "422"} <= set(result.outcomes)  # answered and refused
    # still alive, ready and answering; the admin token the fuzzer sent works
    srv.ping()
    assert http_status(ep.http_url + "/readyz") == 200
    assert _post(ep.http_url + "/admin/promote", {"version": "s1"}, ADMIN)[0] == 200
    code, answer = _post(ep.http_url + "/v1/recommend", {"user_id": "u3", "k": 5})
    assert (code, len(answer["items"]), answer["model_version"]) == (200, 5, "s1")
    code, answer = _post(ep.http_url + "/v1/search", {"query": "coffee mug", "k": 3})
    assert (code, len(answer["items"]), answer["degraded"]) == (200, 3, False)
    # admin actions load versions: none may have written into the artifacts
    assert tree_digest(searchable) == before


@pytest.mark.parametrize("version", ["/", "../artifacts/v1", "s1/../s1", "s1\n", "a\x00b", ""])
def test_admin_refuses_a_version_that_is_a_path(server: tuple[EntryServer, Endpoint],
                                                version: str) -> None:
    """Found fuzzing the admin routes: "/" had the replica hash its way through the whole
    file system, "../x" verified directories outside the artifact root."""
    code, answer = _post(server[1].http_url + "/admin/promote", {"version": version}, ADMIN)
    assert code == 409 and "invalid version name" in answer["error"], answer


@pytest.mark.parametrize(("k", "status"), [(5.0, 200), (100.0, 200), (5.5, 422), (101.0, 422)])
def test_a_whole_float_k_is_an_integer_as_the_schema_says(server: tuple[EntryServer, Endpoint],
                                                          k: float, status: int) -> None:
    """Found by the fuzzer: JSON Schema's integer k=72.0 was refused with 422."""
    code, answer = _post(server[1].http_url + "/v1/recommend", {"user_id": "u1", "k": k})
    assert code == status, answer
    if k == 5.0:
        assert len(answer["items"]) == 5


@pytest.mark.parametrize("route", ["/v1/recommend", "/v1/search", "/v1/feedback"])
def test_a_deeply_nested_body_is_a_422(server: tuple[EntryServer, Endpoint], route: str) -> None:
    """Found fuzzing: orjson reads JSON nested up to 1024 deep, and the error message's repr of
    the value then overflowed the stack (RecursionError: a 503 "internal error")."""
    deep = "[" * 1020 + "]" * 1020
    req = urllib.request.Request(server[1].http_url + route,
                                 f'{{"history": {deep}}}'.encode(),
                                 {"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    answer = json.loads(err.value.read())
    assert err.value.code == 422 and "[[[[...]]]]" in answer["error"], answer
