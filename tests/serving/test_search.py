"""Product search on one replica (no Ray): the real exporter's encoder, HTTP and gRPC, every
bad input, personalisation, truncation, the BM25 degraded tier and versions without search."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from serving_factory import Artifacts, build_search_artifact

from serving.app import AppConfig
from serving.errors import InvalidRequest, ModelLoadError, NoSearchModel
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.schemas import SearchRequest, parse_search
from serving.search import blend
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource


@pytest.fixture(scope="module")
def search_root(artifacts: Artifacts) -> Path:
    return build_search_artifact(artifacts).parent


def _service(root: Path, artifacts: Artifacts, **config: Any) -> RecommendService:
    # Unbatched: each asyncio.run below is a new event loop, and a batcher keeps its first.
    config.setdefault("batching", False)
    svc = RecommendService(DirectorySource(str(root), str(artifacts.public_key)),
                           replica="r0", node="n0", config=ServiceConfig(**config))
    svc.load("s1")
    return svc


@pytest.fixture(scope="module")
def server(search_root: Path, artifacts: Artifacts) -> Iterator[Endpoint]:
    srv = EntryServer(_service(search_root, artifacts, batching=True), AppConfig(), "127.0.0.1",
                      0, 0)
    endpoint = srv.start()
    yield endpoint
    srv.stop()


def _search(svc: RecommendService, **body: Any) -> dict[str, Any]:
    return asyncio.run(svc.search(parse_search(body)))


def _ids(answer: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in answer["items"]]


def test_queries_in_other_words_find_their_product(search_root: Path,
                                                    artifacts: Artifacts) -> None:
    svc = _service(search_root, artifacts)
    for query, item in [("wireless earbuds", "i14"), ("something to boil water for tea", "i6"),
                        ("shoes for jogging", "i0"), ("a tent for camping", "i18")]:
        answer = _search(svc, query=query, k=3)
        assert item in _ids(answer), (query, answer)
        assert not answer["degraded"] and not answer["truncated"]
        assert answer["model_version"] == "s1" and len(answer["items"]) == 3
        scores = [i["score"] for i in answer["items"]]
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_history_personalises_and_says_so(search_root: Path, artifacts: Artifacts) -> None:
    plain = _service(search_root, artifacts, search_blend=0.0)
    heavy = _service(search_root, artifacts, search_blend=5.0)
    history = ["i3", "i7", "i11"]
    alone = _search(plain, query="kitchen", k=10, history=history)
    blended = _search(heavy, query="kitchen", k=10, history=history)
    assert not alone["personalised"] and blended["personalised"]
    assert _ids(alone) != _ids(blended)  # a heavy blend reorders by the recommender
    by_user = _search(heavy, query="kitchen", k=10, user_id="u0")
    assert by_user["personalised"] and len(by_user["items"]) == 10
    assert not _search(heavy, query="kitchen", k=10)["personalised"]


def test_blend_standardises_the_recommender_scores() -> None:
    cos = np.array([[0.2, 0.1, 0.0]], np.float32)
    rec = np.array([[10.0, 20.0, 30.0]], np.float32)
    np.testing.assert_allclose(blend(cos, rec, 0.0), cos)
    np.testing.assert_allclose(blend(cos, rec * 100 + 7, 0.5), blend(cos, rec, 0.5), rtol=1e-5)


def test_an_over_long_query_is_cut_and_the_answer_says_so(search_root: Path,
                                                           artifacts: Artifacts) -> None:
    svc = _service(search_root, artifacts)
    answer = _search(svc, query="wireless headphones " + "with many words " * 30, k=5)
    assert answer["truncated"] and not answer["degraded"] and "i14" in _ids(answer)


@pytest.mark.parametrize(("body", "message"), [
    ({"query": ""}, "query: String should have at least 1 character"),
    ({"query": "   "}, "query: expected some text, found only whitespace"),
    ({"query": "x" * 1001}, "query: String should have at most 1000 characters"),
    ({"query": "mug", "k": 0}, "k: Input should be greater than or equal to 1"),
    ({"query": "mug", "k": 101}, "k: Input should be less than or equal to 100"),
    ({"query": "mug", "user_id": "u0", "history": ["i1"]}, "at most one of user_id or history"),
    ({"k": 5}, "query: Field required"),
    ({"query": 5}, "query: Input should be a valid string"),
])
def test_bad_search_input_names_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(")):
        parse_search(body)


def test_unknown_user_or_item_is_the_callers_error(search_root: Path,
                                                   artifacts: Artifacts) -> None:
    svc = _service(search_root, artifacts)
    with pytest.raises(InvalidRequest, match="user_id 'ghost' is unknown"):
        _search(svc, query="mug", user_id="ghost")
    with pytest.raises(InvalidRequest, match="unknown item id"):
        _search(svc, query="mug", history=["nope"])


def test_a_version_without_search_says_so(artifacts: Artifacts) -> None:
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0")
    svc.load("v1")
    with pytest.raises(NoSearchModel, match="carries no search model"):
        _search(svc, query="mug")


def test_a_stalled_encoder_degrades_to_bm25(search_root: Path, artifacts: Artifacts) -> None:
    svc = _service(search_root, artifacts, deadline_s=0.05)
    svc.set_stall(0.5)
    answer = _search(svc, query="cast iron skillet", k=5)
    assert answer["degraded"] and _ids(answer)[0] == "i8" and len(answer["items"]) == 5
    nothing_matches = _search(svc, query="zzzz qqqq", k=4)  # popular items fill the answer
    assert nothing_matches["degraded"] and len(nothing_matches["items"]) == 4
    svc.set_stall(0.0)
    text = svc.metrics.render().decode()
    assert 'recdrill_fallbacks_total{reason="deadline"} 2.0' in text


def _post(url: str, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_search_answers_and_refuses_with_4xx(server: Endpoint) -> None:
    code, answer = _post(server.http_url + "/v1/search", {"query": "wireless earbuds", "k": 3})
    assert code == 200 and "i14" in _ids(answer)
    assert set(answer) == set(SearchRequest.model_fields) - {"query", "k", "user_id",
                                                             "history"} | {
        "items", "model_version", "degraded", "truncated", "personalised", "replica", "node"}
    for body, status in [({"query": ""}, 422), (b"{oops", 400), ({"query": "a", "k": 500}, 422),
                         ({"query": "a", "user_id": "ghost"}, 422)]:
        code, answer = _post(server.http_url + "/v1/search", body)
        assert code == status and answer["error"], (body, answer)


def test_grpc_search_answers_and_refuses_with_invalid_argument(server: Endpoint) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pbg.RecommenderStub(channel)
        reply = stub.Search(pb.SearchRequest(query="a tent for camping", k=3), timeout=10)
        assert "i18" in [i.item_id for i in reply.items] and reply.model_version == "s1"
        for bad in [pb.SearchRequest(), pb.SearchRequest(query="a", k=500),
                    pb.SearchRequest(query="a", user_id="ghost")]:
            with pytest.raises(grpc.RpcError) as err:
                stub.Search(bad, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details()


def test_openapi_documents_search(server: Endpoint) -> None:
    with urllib.request.urlopen(server.http_url + "/openapi.json", timeout=10) as resp:
        doc = json.loads(resp.read())
    op = doc["paths"]["/v1/search"]["post"]
    assert {"200", "404", "422"} <= set(op["responses"])
    assert op["requestBody"]["content"]["application/json"]["schema"]["required"] == ["query"]


def test_a_version_whose_search_is_broken_is_refused_by_the_probe(
        search_root: Path, artifacts: Artifacts, tmp_path: Path) -> None:
    from drills.artifacts import derive_version, shuffle_search_embeddings

    root = tmp_path / "versions"
    for version, mutate in (("s1", None), ("s2-broken", shuffle_search_embeddings(1))):
        derive_version(search_root / "s1", root, version, artifacts.private_key,
                       artifacts.public_key, mutate)
    svc = _service(root, artifacts)
    with pytest.raises(ModelLoadError, match="search probe"):
        svc.load("s2-broken")  # validly signed, yet its own items' texts do not find them
    assert svc.version == "s1" and not _search(svc, query="mug")["degraded"]


def test_truncation_shortcut_agrees_with_the_tokenizer(search_root: Path,
                                                       artifacts: Artifacts) -> None:
    model = _service(search_root, artifacts).runner.search
    assert model is not None
    # "!" is one token per character: the tightest case for the character-count shortcut.
    for n in range(1, 3 * model.max_query_tokens):
        for text in ("!" * n, ("ab " * n)[:n]):
            assert model.truncated(text) == bool(model._tokenizer.encode(text).overflowing), n
    assert model.truncated("!" * (model.max_query_tokens - 1))
