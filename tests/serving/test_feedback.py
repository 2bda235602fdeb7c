"""Online feedback and the canary slot of one replica (no Ray): HTTP, gRPC and the service."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from serving_factory import Artifacts

from serving.app import AppConfig
from serving.canary import Tally, in_canary, routing_key
from serving.errors import ModelLoadError
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.schemas import RecommendRequest
from serving.server import Endpoint, EntryServer
from serving.service import MAX_TALLIES, RecommendService, ServiceConfig
from serving.source import DirectorySource

TOKEN = {"authorization": "Bearer tok"}
GRPC_TOKEN = (("authorization", "Bearer tok"),)


def _service(artifacts: Artifacts, batching: bool = True) -> RecommendService:
    source = DirectorySource(str(artifacts.root), str(artifacts.public_key))
    # The micro-batcher binds to the loop of its first request: one asyncio.run per service.
    svc = RecommendService(source, replica="r0", node="n0",
                           config=ServiceConfig(batching=batching))
    svc.load("v1")
    return svc


@pytest.fixture(scope="module")
def server(artifacts: Artifacts) -> Iterator[tuple[RecommendService, Endpoint]]:
    svc = _service(artifacts)
    srv = EntryServer(svc, AppConfig(api_token="tok"), "127.0.0.1", 0, 0)
    endpoint = srv.start()
    yield svc, endpoint
    srv.stop()


def _call(url: str, body: bytes | dict[str, Any] | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json",
                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _stats(ep: Endpoint) -> dict[str, Any]:
    code, stats = _call(ep.http_url + "/v1/feedback/stats")  # open: no token
    assert code == 200
    return stats


def _tally(ep: Endpoint, version: str) -> Tally:
    t = _stats(ep)["tally"].get(version, {"shown": 0, "hits": 0})
    return Tally(t["shown"], t["hits"])


def test_http_feedback_is_counted_and_shown_in_stats(
        server: tuple[RecommendService, Endpoint]) -> None:
    _svc, ep = server
    before = _tally(ep, "v1")
    code, answer = _call(ep.http_url + "/v1/recommend", {"user_id": "u3"}, TOKEN)
    assert code == 200 and answer["model_version"] == "v1"
    items = [i["item_id"] for i in answer["items"]]
    for taken in (items[0], "not-shown"):
        code, ack = _call(ep.http_url + "/v1/feedback", {"model_version": "v1", "items": items,
                                                         "item_id": taken}, TOKEN)
        assert (code, ack) == (202, {"recorded": True, "model_version": "v1", "known": True})
    assert _tally(ep, "v1") == before + Tally(2, 1)
    stats = _stats(ep)
    assert (stats["replica"], stats["stable"], stats["canary"], stats["canary_share"]) == (
        "r0", "v1", None, 0.0)


def test_only_the_top_10_count_as_a_hit(server: tuple[RecommendService, Endpoint]) -> None:
    svc, _ep = server
    before = svc.feedback_stats().get("v1", Tally())
    items = [f"i{i}" for i in range(12)]
    assert svc.record_feedback("v1", items, "i9") and svc.record_feedback("v1", items, "i10")
    assert svc.feedback_stats()["v1"] == before + Tally(2, 1)


def test_grpc_feedback_is_counted(server: tuple[RecommendService, Endpoint]) -> None:
    _svc, ep = server
    before = _tally(ep, "v1")
    with grpc.insecure_channel(ep.grpc_target) as channel:
        ack = pbg.RecommenderStub(channel).Feedback(
            pb.FeedbackRequest(model_version="v1", items=["i1", "i2"], item_id="i2"), timeout=5,
            metadata=GRPC_TOKEN)
    assert (ack.recorded, ack.model_version, ack.known) == (True, "v1", True)
    assert _tally(ep, "v1") == before + Tally(1, 1)


def test_feedback_on_an_unknown_version_is_counted_but_not_a_metric_label(
        server: tuple[RecommendService, Endpoint]) -> None:
    svc, ep = server
    code, ack = _call(ep.http_url + "/v1/feedback", {"model_version": "v-elsewhere",
                                                     "items": ["i1"], "item_id": "i1"}, TOKEN)
    assert code == 202 and ack["known"] is False and _tally(ep, "v-elsewhere") == Tally(1, 1)
    text = svc.metrics.render().decode()
    assert 'recdrill_feedback_total{hit="true",model_version="unknown"}' in text
    assert "v-elsewhere" not in text and 'model_version="v1"' in text


BAD_FEEDBACK: list[tuple[bytes | dict[str, Any], int, str]] = [
    (b"{nope", 400, "malformed JSON"),
    (b"[1]", 422, "expected a JSON object"),
    ({"model_version": "v1", "items": ["i1"]}, 422, "item_id: Field required"),
    ({"model_version": "v1", "items": [], "item_id": "i1"}, 422,
     "items: List should have at least 1 item"),
    ({"model_version": "v1", "items": ["i1"] * 101, "item_id": "i1"}, 422,
     "items: List should have at most 100 items"),
    ({"model_version": 7, "items": ["i1"], "item_id": "i1"}, 422,
     "model_version: Input should be a valid string"),
    ({"model_version": "v1", "items": ["i1"], "item_id": ""}, 422,
     "item_id: String should have at least 1 character"),
    ({"model_version": "v1", "items": ["i1"], "item_id": "i1", "user": "u1"}, 422,
     "user: Extra inputs are not permitted"),
    (b'{"items": ["' + b"x" * 1_600_000 + b'"]}', 413, "over the 1553704-byte limit"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_FEEDBACK)
def test_http_bad_feedback_is_a_4xx_that_says_what(server: tuple[RecommendService, Endpoint],
                                                   body: Any, status: int, message: str) -> None:
    code, answer = _call(server[1].http_url + "/v1/feedback", body, TOKEN)
    assert (code, message in answer["error"]) == (status, True), answer


def test_feedback_needs_the_api_token_like_recommend(
        server: tuple[RecommendService, Endpoint]) -> None:
    body = {"model_version": "v1", "items": ["i1"], "item_id": "i1"}
    for route in ("/v1/feedback", "/v1/recommend"):
        code, answer = _call(server[1].http_url + route, body)
        assert code == 401 and "missing bearer token" in answer["error"]
    # gRPC too: the same token, in the call's metadata
    with grpc.insecure_channel(server[1].grpc_target) as channel, \
            pytest.raises(grpc.RpcError) as err:
        pbg.RecommenderStub(channel).Feedback(pb.FeedbackRequest(**body), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "model_version: Field required"),
    ({"model_version": "v1", "item_id": "i1"}, "items: Field required"),
    ({"model_version": "v1", "items": ["i1"] * 101, "item_id": "i1"}, "at most 100 items"),
])
def test_grpc_bad_feedback_is_invalid_argument(server: tuple[RecommendService, Endpoint],
                                               fields: dict[str, Any], message: str) -> None:
    with grpc.insecure_channel(server[1].grpc_target) as channel, \
            pytest.raises(grpc.RpcError) as err:
        pbg.RecommenderStub(channel).Feedback(pb.FeedbackRequest(**fields), timeout=5,
                                              metadata=GRPC_TOKEN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_grpc_malformed_feedback_is_invalid_argument(
        server: tuple[RecommendService, Endpoint]) -> None:
    with grpc.insecure_channel(server[1].grpc_target) as channel, \
            pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/recdrill.v1.Recommender/Feedback")(b"\xff\xff\xff", timeout=5,
                                                                  metadata=GRPC_TOKEN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed protobuf" in err.value.details()


def test_openapi_documents_feedback_and_stats(server: tuple[RecommendService, Endpoint]) -> None:
    with urllib.request.urlopen(server[1].http_url + "/openapi.json", timeout=5) as resp:
        paths = json.loads(resp.read())["paths"]
    post = paths["/v1/feedback"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"model_version", "items", "item_id"}
    assert {"202", "400", "401", "413", "422"} <= set(post["responses"])
    assert "200" in paths["/v1/feedback/stats"]["get"]["responses"]


# -- the canary slot ---------------------------------------------------------------------------

async def _versions(svc: RecommendService, reqs: list[RecommendRequest]) -> list[str]:
    answers = []
    for start in range(0, len(reqs), 32):  # under the admission limit: nothing degrades
        answers += await asyncio.gather(*(svc.recommend(r) for r in reqs[start:start + 32]))
    assert not any(a["degraded"] for a in answers)
    return [a["model_version"] for a in answers]


def _answers(svc: RecommendService, reqs: list[RecommendRequest]) -> list[str]:
    return asyncio.run(_versions(svc, reqs))


def test_canary_answers_its_share_of_users_and_histories(artifacts: Artifacts) -> None:
    svc = _service(artifacts)  # batched: canary and stable queries share model calls
    assert svc.set_canary("v2", 0.3) == "v2"
    assert (svc.version, svc.canary_version, svc.canary_share) == ("v1", "v2", 0.3)
    reqs = [RecommendRequest(user_id=f"u{u}") for u in range(40)] + [
        RecommendRequest(history=[f"i{a}", f"i{b}"]) for a in range(30) for b in range(0, 30, 2)]

    async def scenario() -> tuple[list[str], list[str]]:
        with_canary = await _versions(svc, reqs)
        assert svc.set_canary(None) is None and svc.canary_version is None
        return with_canary, await _versions(svc, reqs)

    versions, after = asyncio.run(scenario())
    expected = ["v2" if in_canary(routing_key(r.user_id, r.history), 0.3) else "v1" for r in reqs]
    assert versions == expected
    assert versions.count("v2") / len(versions) == pytest.approx(0.3, abs=0.06)
    assert set(after) == {"v1"}
    svc.close()


def test_a_refused_canary_leaves_the_stable_version_serving(artifacts: Artifacts) -> None:
    svc = _service(artifacts, batching=False)
    with pytest.raises(ModelLoadError, match="model.onnx"):
        svc.set_canary("bad", 0.5)
    assert (svc.version, svc.canary_version, svc.canary_share) == ("v1", None, 0.0)
    svc.set_canary("v2", 0.5)
    with pytest.raises(ModelLoadError):
        svc.set_canary("bad", 0.9)
    assert (svc.canary_version, svc.canary_share) == ("v2", 0.5)  # kept as it was
    reqs = [RecommendRequest(user_id=f"u{u}") for u in range(40)]
    assert set(_answers(svc, reqs)) == {"v1", "v2"}
    assert "recdrill_versions_refused_total 2.0" in svc.metrics.render().decode()
    with pytest.raises(ValueError, match="share"):
        svc.set_canary("v2", 1.5)
    svc.close()


def test_promoting_the_canary_serves_it_to_everybody(artifacts: Artifacts) -> None:
    svc = _service(artifacts, batching=False)
    svc.set_canary("v2", 0.5)
    assert svc.load("v2") == "v2" and svc.canary_version == "v2"
    reqs = [RecommendRequest(user_id=f"u{u}") for u in range(40)]
    assert set(_answers(svc, reqs)) == {"v2"}
    svc.set_canary(None)
    assert set(_answers(svc, reqs)) == {"v2"} and svc.rollback() == "v1"
    svc.close()


def test_canary_over_http_shows_in_stats_and_answers(
        server: tuple[RecommendService, Endpoint]) -> None:
    svc, ep = server
    svc.set_canary("v2", 0.5)
    try:
        stats = _stats(ep)
        assert (stats["stable"], stats["canary"], stats["canary_share"]) == ("v1", "v2", 0.5)
        for u in range(40):
            code, answer = _call(ep.http_url + "/v1/recommend", {"user_id": f"u{u}"}, TOKEN)
            expected = "v2" if in_canary(f"u{u}", 0.5) else "v1"
            assert code == 200 and answer["model_version"] == expected
    finally:
        svc.set_canary(None)
    assert _stats(ep)["canary"] is None


def test_tallies_are_bounded_but_keep_the_versions_in_service(artifacts: Artifacts) -> None:
    svc = _service(artifacts)
    svc.set_canary("v2", 0.1)
    svc.record_feedback("v1", ["i1"], "i1")
    svc.record_feedback("v2", ["i1"], "i2")
    for n in range(MAX_TALLIES + 5):
        assert svc.record_feedback(f"old{n}", ["i1"], "i1") is False
    tallies = svc.feedback_stats()
    assert len(tallies) == MAX_TALLIES and tallies["v1"] == Tally(1, 1)
    assert tallies["v2"] == Tally(1, 0)
    assert "old0" not in tallies and f"old{MAX_TALLIES + 4}" in tallies
    svc.close()
