"""Both transports of one replica on loopback (no Ray): answers, every bad input, admin, client."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from serving_factory import Artifacts

from serving.app import AppConfig
from serving.client import Client, recommend_sync
from serving.errors import ClientError
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.retry import RetryPolicy
from serving.schemas import RecommendRequest
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource
from serving.testing import free_port


@pytest.fixture(scope="module")
def server(artifacts: Artifacts) -> Iterator[tuple[EntryServer, Endpoint]]:
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0", config=ServiceConfig())
    svc.load("v1")
    srv = EntryServer(svc, AppConfig(admin_token="secret"), "127.0.0.1", 0, 0)
    endpoint = srv.start()
    yield srv, endpoint
    srv.stop()
    assert not srv.alive


def _post(url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
          ) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json",
                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


BAD_INPUTS: list[tuple[bytes | dict[str, Any], int, str]] = [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 422, "expected a JSON object"),
    ({"user_id": "u0", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ({"user_id": 7}, 422, "user_id: Input should be a valid string"),
    ({"user_id": "u0", "k": "5"}, 422, "k: Input should be a valid integer"),
    ({"user_id": "u0", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"user_id": "u0", "k": 101}, 422, "k: Input should be less than or equal to 100"),
    ({"user_id": "u0", "exclude_seen": "yes"}, 422, "exclude_seen: Input should be a valid"),
    ({"history": []}, 422, "history: List should have at least 1 item"),
    ({"history": ["i1"] * 1001}, 422, "history: List should have at most 1000 items"),
    ({"history": ["i1", "nope"]}, 422, "unknown item id(s)"),
    ({"user_id": "ghost"}, 422, "user_id 'ghost' is unknown"),
    ({"k": 3}, 422, "exactly one of user_id or history"),
    ({"user_id": "u0", "history": ["i1"]}, 422, "exactly one of user_id or history"),
    pytest.param(b'{"history": ["' + b"x" * 1_600_000 + b'"]}', 413,
                 "over the 1553704-byte limit", id="oversized"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_INPUTS)
def test_http_bad_input_is_a_4xx_that_says_what(server: tuple[EntryServer, Endpoint],
                                                 body: Any, status: int, message: str) -> None:
    code, answer, _ = _post(server[1].http_url + "/v1/recommend", body)
    assert (code, message in answer["error"]) == (status, True), answer


def _raw_exchange(ep: Endpoint, head: bytes, parts: list[bytes], pause_s: float) -> bytes:
    """Send ``head``, wait ``pause_s`` (the server has seen the headers), send every part
    whole, then read the answer: what a client that writes its body before reading sees."""
    with socket.create_connection(("127.0.0.1", ep.http_port), timeout=10) as sock:
        sock.sendall(head)
        time.sleep(pause_s)
        for part in parts:
            sock.sendall(part)  # a server that answered and closed at the headers: EPIPE here
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def test_an_oversized_body_gets_its_413_after_the_client_sent_it_all(
        server: tuple[EntryServer, Endpoint]) -> None:
    body = b'{"history": ["' + b"x" * 3_000_000 + b'"]}'
    head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
    answer = _raw_exchange(server[1], head, [body], 0.3)
    assert answer.startswith(b"HTTP/1.1 413") and b"over the 1553704-byte limit" in answer


def test_an_oversized_chunked_body_is_refused_with_413(
        server: tuple[EntryServer, Endpoint]) -> None:
    chunk = b"x" * 500_000
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 4 + [b"0\r\n\r\n"]
    head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer = _raw_exchange(server[1], head, parts, 0.1)
    assert answer.startswith(b"HTTP/1.1 413") and b"over the 1553704-byte limit" in answer
    assert _post(server[1].http_url + "/v1/recommend", {"user_id": "u0"})[0] == 200  # still up


@pytest.mark.parametrize("request_kwargs", [{}, {"k": 3}, {"user_id": "u0", "history": ["i1"]},
                                            {"user_id": "u0", "k": 500},
                                            {"history": ["nope"]}, {"user_id": "ghost"}])
def test_grpc_bad_input_is_invalid_argument(server: tuple[EntryServer, Endpoint],
                                            request_kwargs: dict[str, Any]) -> None:
    with (grpc.insecure_channel(server[1].grpc_target) as channel,
          pytest.raises(grpc.RpcError) as err):
        pbg.RecommenderStub(channel).Recommend(pb.RecommendRequest(**request_kwargs), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details()


@pytest.mark.parametrize("raw", [b"\xff\xff\xff\xff", b"\x1a" + b"\x02" * 70000])
def test_grpc_malformed_or_oversized_protobuf(server: tuple[EntryServer, Endpoint],
                                              raw: bytes) -> None:
    with (grpc.insecure_channel(server[1].grpc_target) as channel,
          pytest.raises(grpc.RpcError) as err):
        channel.unary_unary("/recdrill.v1.Recommender/Recommend")(raw, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed protobuf" in err.value.details() or "byte limit" in err.value.details()


def test_http_and_grpc_give_the_same_answer(server: tuple[EntryServer, Endpoint]) -> None:
    _srv, ep = server
    code, http_answer, _ = _post(ep.http_url + "/v1/recommend", {"user_id": "u3", "k": 7})
    assert code == 200 and len(http_answer["items"]) == 7
    assert (http_answer["model_version"], http_answer["degraded"]) == ("v1", False)
    assert (http_answer["replica"], http_answer["node"]) == ("r0", "n0")
    with grpc.insecure_channel(ep.grpc_target) as channel:
        g = pbg.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id="u3", k=7),
                                                   timeout=5)
        health = pbg.HealthStub(channel).Check(pb.HealthCheckRequest(), timeout=5)
    assert [i.item_id for i in g.items] == [i["item_id"] for i in http_answer["items"]]
    assert health.status == pb.HealthCheckResponse.SERVING and health.model_version == "v1"


def test_health_metrics_and_openapi(server: tuple[EntryServer, Endpoint]) -> None:
    base = server[1].http_url
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            assert resp.status == 200
    with urllib.request.urlopen(base + "/openapi.json", timeout=5) as resp:
        schema = json.loads(resp.read())
    op = schema["paths"]["/v1/recommend"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["additionalProperties"] is False
    assert {"200", "400", "413", "422", "503"} <= set(op["responses"])
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "recdrill_request_seconds_bucket" in text and "recdrill_model_version_info" in text


def test_admin_routes_need_the_token(server: tuple[EntryServer, Endpoint]) -> None:
    base = server[1].http_url
    assert _post(base + "/admin/promote", {"version": "v2"})[0] == 401
    assert _post(base + "/admin/promote", {"version": "v2"},
                 {"authorization": "Bearer wrong"})[0] == 401
    auth = {"authorization": "Bearer secret"}
    code, answer, _ = _post(base + "/admin/promote", {"version": "bad"}, auth)
    assert code == 409 and "still serving v1" in answer["error"]
    assert _post(base + "/admin/promote", {"version": "v2"}, auth)[1]["model_version"] == "v2"
    assert _post(base + "/admin/rollback", {}, auth)[1]["model_version"] == "v1"
    assert _post(base + "/admin/promote", {}, auth)[0] == 422


def test_client_retries_on_another_endpoint(server: tuple[EntryServer, Endpoint]) -> None:
    ep = server[1]
    dead_http, dead_grpc = f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    for transport, endpoints in (("http", [dead_http, ep.http_url]),
                                 ("grpc", [dead_grpc, ep.grpc_target])):
        for _ in range(3):  # whichever endpoint comes first, the live one answers
            answer = recommend_sync(endpoints, {"user_id": "u1", "k": 2}, transport=transport)
            assert len(answer.items) == 2


def test_client_does_not_retry_bad_input(server: tuple[EntryServer, Endpoint]) -> None:
    with pytest.raises(ClientError) as err:
        recommend_sync([server[1].http_url], {"user_id": "u1", "k": 0})
    assert err.value.status == 422 and len(err.value.attempts) == 1


def test_client_gives_up_at_its_deadline() -> None:
    policy = RetryPolicy(deadline_s=0.3, attempt_timeout_s=0.1, retries=5)
    with pytest.raises(ClientError, match="no endpoint answered"):
        recommend_sync([f"http://127.0.0.1:{free_port()}"], {"user_id": "u1"}, policy=policy)


def test_hedged_call_answers(server: tuple[EntryServer, Endpoint]) -> None:
    ep = server[1]
    policy = RetryPolicy(hedge_after_s=0.0001)

    async def run() -> list[str]:
        async with Client([ep.http_url, ep.http_url], policy=policy) as client:
            answers = await asyncio.gather(*(client.recommend({"user_id": "u2", "k": 1})
                                             for _ in range(5)))
        return [a.items[0].item_id for a in answers]

    assert len(set(asyncio.run(run()))) == 1


def test_with_every_endpoint_dead_the_local_fallback_answers(artifacts: Artifacts,
                                                               server: tuple[EntryServer, Endpoint]
                                                               ) -> None:
    from serving.local_fallback import LocalFallback
    from serving.runner import ModelRunner

    tier = LocalFallback.from_artifact(artifacts.path("v1"), artifacts.public_key)
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    policy = RetryPolicy(deadline_s=0.3, attempt_timeout_s=0.1, retries=3)

    async def run() -> tuple[Any, Any, int]:
        async with Client(dead, policy=policy, fallback=tier) as client:
            answer = await client.recommend({"user_id": "u1", "k": 3})
            with pytest.raises(ClientError) as err:  # bad input is still the caller's error
                await client.recommend({"user_id": "nobody", "k": 3})
            return answer, err.value, client.fallbacks

    answer, error, fallbacks = asyncio.run(run())
    runner = ModelRunner.load(
        DirectorySource(str(artifacts.root), str(artifacts.public_key)).fetch_verified("v1"))
    expected = runner.items_json(runner.fallback(runner.resolve(RecommendRequest(user_id="u1", k=3))))
    assert answer.degraded and answer.replica == "client-fallback" and answer.model_version == "v1"
    assert [i.model_dump() for i in answer.items] == expected
    assert error.status == 422 and "unknown" in str(error) and fallbacks == 1

    async def live() -> tuple[Any, int]:  # with a live endpoint the fallback stays unused
        async with Client([server[1].http_url], policy=policy, fallback=tier) as client:
            return await client.recommend({"user_id": "u1", "k": 3}), client.fallbacks

    live_answer, live_fallbacks = asyncio.run(live())
    assert not live_answer.degraded and live_fallbacks == 0


def test_local_fallback_refuses_a_tampered_artifact(artifacts: Artifacts, tmp_path: Any) -> None:
    import shutil

    from export.errors import ArtifactVerificationError
    from serving.local_fallback import LocalFallback

    copy = tmp_path / "v1"
    shutil.copytree(artifacts.path("v1"), copy)
    blob = bytearray((copy / "fallback.npz").read_bytes())
    blob[-1] ^= 1
    (copy / "fallback.npz").write_bytes(bytes(blob))
    with pytest.raises(ArtifactVerificationError) as err:
        LocalFallback.from_artifact(copy, artifacts.public_key)
    assert err.value.path == "fallback.npz"


def test_a_draining_replica_is_not_ready_but_still_answers(artifacts: Artifacts) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0", config=ServiceConfig())
    svc.load("v1")
    srv = EntryServer(svc, AppConfig(), "127.0.0.1", 0, 0)
    ep = srv.start()
    try:
        svc.drain()  # what a replica does first when Serve stops it
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(ep.http_url + "/readyz", timeout=5)
        assert err.value.code == 503 and json.loads(err.value.read())["detail"] == "draining"
        with grpc.insecure_channel(ep.grpc_target) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        status, body, _ = _post(ep.http_url + "/v1/recommend", {"user_id": "u0"})
        assert status == 200 and body["model_version"] == "v1"  # stragglers still answered
    finally:
        srv.stop()
