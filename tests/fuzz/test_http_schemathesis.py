"""Schemathesis against a real replica's HTTP server (uvicorn on loopback, no Ray), from the
OpenAPI it publishes: every phase and check, positive and negative data, admin routes with
the admin token. The replica must come out ready and answering, its artifacts untouched."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from serving_factory import Artifacts

from export.fuzzing import tree_digest
from security.fuzzing import FuzzResult, examples_from_env, seed_from_env
from serving.app import AppConfig
from serving.fuzzing import fuzz_http, known_ids
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource
from serving.testing import http_status

ADMIN = "fuzz-admin-token"
EXAMPLES = examples_from_env(40)  # per operation and phase: about 15 s here


@pytest.fixture(scope="module")
def server(artifacts: Artifacts) -> Iterator[tuple[EntryServer, Endpoint]]:
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0", config=ServiceConfig())
    svc.load("v1")
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
        server: tuple[EntryServer, Endpoint], artifacts: Artifacts,
        fuzz_report: list[FuzzResult]) -> None:
    srv, ep = server
    before = tree_digest(artifacts.root)
    result = fuzz_http(ep.http_url, examples=EXAMPLES, seed=seed_from_env(),
                       headers={"Authorization": f"Bearer {ADMIN}"},
                       ids=known_ids(srv.service.runner))
    fuzz_report.append(result)
    print(result.summary_line())
    assert not result.failures, "\n\n".join(
        f"{f.target} [{f.check}] {f.message}\n{f.reproduce}" for f in result.failures)
    assert not result.notes
    assert set(result.cases) == _paths(ep.http_url)  # every operation, admin ones included
    assert {"200", "202", "409", "422"} <= set(result.outcomes)  # answered, refused, both
    # still alive, ready and answering; the admin token the fuzzer sent works
    srv.ping()
    assert http_status(ep.http_url + "/readyz") == 200
    assert _post(ep.http_url + "/admin/promote", {"version": "v1"}, ADMIN)[0] == 200
    code, answer = _post(ep.http_url + "/v1/recommend", {"user_id": "u3", "k": 5})
    assert (code, len(answer["items"]), answer["model_version"]) == (200, 5, "v1")
    # admin actions load versions: none may have written into the artifacts
    assert tree_digest(artifacts.root) == before


@pytest.mark.parametrize("version", ["/", "../artifacts/v1", "v1/../v2", "v1\n", "a\x00b", ""])
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
