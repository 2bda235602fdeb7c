"""Roles and tokens as an attacker meets them: real HTTP and gRPC servers of one replica, and
the real front door (HAProxy) in front of it; revocation live; admin acts on the audit chain."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from serving_factory import Artifacts, build_artifacts

from security.audit import AuditLog
from security.tokens import Role, TokenTable
from serving.app import AppConfig
from serving.frontdoor import FrontDoor, FrontDoorConfig
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource
from serving.testing import free_port, poll_until

pytestmark = pytest.mark.integration


class Setup:
    def __init__(self, root: Path) -> None:
        self.table = TokenTable(root / "tokens.json")
        self.reader, _ = self.table.create("app", Role.READER)
        self.operator, _ = self.table.create("sre", Role.OPERATOR)
        self.audit = AuditLog(root / "audit.jsonl")
        self.endpoint: Endpoint
        self.door: FrontDoor


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("auth")
    artifacts: Artifacts = build_artifacts(root / "artifacts")
    s = Setup(root)
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0", config=ServiceConfig())
    svc.load("v1")
    server = EntryServer(svc, AppConfig(tokens_file=str(s.table.path),
                                        audit_log=str(s.audit.path)), "127.0.0.1", 0, 0)
    s.endpoint = server.start()
    s.door = FrontDoor(FrontDoorConfig(free_port(), grpc_port=free_port(),
                                       check_interval_ms=100), root / "door")
    s.door.start([s.endpoint])
    try:
        yield s
    finally:
        s.door.stop()
        server.stop()


def _post(url: str, body: dict[str, Any], token: str | None = None
          ) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), {k.lower(): v for k, v in err.headers.items()}


def _grpc(target: str, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    with grpc.insecure_channel(target) as channel:
        try:
            pbg.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id="u1", k=3),
                                                   metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("via", ["replica", "frontdoor"])
def test_http_data_routes_need_a_reader_token(setup: Setup, via: str) -> None:
    base = setup.endpoint.http_url if via == "replica" else setup.door.http_url
    if via == "frontdoor":
        assert poll_until(lambda: _post(base + "/v1/recommend", {"user_id": "u1"},
                                        setup.reader)[0] == 200, 15.0)
    for route, body in (("/v1/recommend", {"user_id": "u1", "k": 3}),
                        ("/v1/feedback", {"model_version": "v1", "items": ["i1"],
                                          "item_id": "i1"})):
        status, answer, headers = _post(base + route, body)
        assert status == 401 and "missing bearer token" in answer["error"]
        assert headers.get("www-authenticate", "").startswith("Bearer")
        bad = [_post(base + route, body, t)[:2] for t in
               ("nope", setup.reader[:-1] + ("B" if setup.reader[-1] == "A" else "A"),
                 "rdt_00000000_" + "A" * 43)]
        assert {(code, a["error"]) for code, a in bad} == {(401, "invalid or revoked token")}
        assert _post(base + route, body, setup.reader)[0] in (200, 202)
    # health and metrics stay open: load balancers and scrapers hold no token
    for path in ("/healthz", "/readyz", "/metrics"):
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("via", ["replica", "frontdoor"])
def test_grpc_needs_a_token_in_metadata(setup: Setup, via: str) -> None:
    target = setup.endpoint.grpc_target if via == "replica" else setup.door.grpc_target
    assert target is not None
    if via == "frontdoor":
        assert poll_until(lambda: _grpc(target, setup.reader) == grpc.StatusCode.OK, 15.0)
    assert _grpc(target, None) == grpc.StatusCode.UNAUTHENTICATED
    assert _grpc(target, "nope") == grpc.StatusCode.UNAUTHENTICATED
    assert _grpc(target, setup.reader) == grpc.StatusCode.OK
    with grpc.insecure_channel(target) as channel:  # health stays open
        check = pbg.HealthStub(channel).Check(pb.HealthCheckRequest(), timeout=10)
        assert check.status == pb.HealthCheckResponse.SERVING


def test_admin_routes_need_an_operator_and_every_act_is_audited(setup: Setup) -> None:
    url = setup.endpoint.http_url + "/admin/promote"
    assert _post(url, {"version": "v2"})[0] == 401
    status, answer, _ = _post(url, {"version": "v2"}, setup.reader)
    assert status == 403 and "'app' has role reader; this needs operator" in answer["error"]
    assert _post(url, {"version": "v2"}, setup.operator)[:2] == (
        200, {"model_version": "v2", "replica": "r0"})
    assert _post(url, {"version": "nope"}, setup.operator)[0] == 409
    assert _post(setup.endpoint.http_url + "/admin/rollback", {}, setup.operator)[0] == 200
    setup.audit.verify()
    acts = [(e.action, e.actor, e.role, e.target, e.details["outcome"])
            for e in setup.audit.entries()]
    assert acts == [("serving.promote", "app", "reader", None, "denied"),
                    ("serving.promote", "sre", "operator", "v2", "done"),
                    ("serving.promote", "sre", "operator", "nope", "refused 409"),
                    ("serving.rollback", "sre", "operator", "v1", "done")]
    assert setup.reader not in setup.audit.path.read_text()


def test_a_revoked_token_is_refused_within_seconds_on_both_protocols(setup: Setup) -> None:
    token, _ = setup.table.create("temp", Role.READER)
    url = setup.endpoint.http_url + "/v1/recommend"
    assert poll_until(lambda: _post(url, {"user_id": "u1"}, token)[0] == 200, 5.0)
    t0 = time.monotonic()
    setup.table.revoke("temp")
    assert poll_until(lambda: _post(url, {"user_id": "u1"}, token)[0] == 401, 10.0)
    assert time.monotonic() - t0 < 5.0  # the table is re-read once a second; margin for CI
    assert _grpc(setup.endpoint.grpc_target, token) == grpc.StatusCode.UNAUTHENTICATED
    assert _post(url, {"user_id": "u1"}, setup.reader)[0] == 200  # the others still work


def test_openapi_says_which_routes_need_a_token(setup: Setup) -> None:
    with urllib.request.urlopen(setup.endpoint.http_url + "/openapi.json", timeout=5) as resp:
        doc = json.loads(resp.read())
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    secured = {path for path, item in doc["paths"].items()
               if any("security" in op for op in item.values())}
    assert secured == {"/v1/recommend", "/v1/search", "/v1/feedback", "/admin/reload",
                       "/admin/promote", "/admin/rollback"}
