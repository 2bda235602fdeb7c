"""Search load: held-out queries, the mixed order, transports' routes, per-request search
quality, timeline and summary fields. Pure or on 127.0.0.1 in-process servers; no Ray."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.loadgen.dispatcher import run_open_loop
from bench.loadgen.errors import ConfigError, WorkloadError
from bench.loadgen.outcomes import OutcomeBuffer, Outcomes, RequestKind, Status
from bench.loadgen.quality import search_quality_of, search_scores
from bench.loadgen.recorder import RunHistograms
from bench.loadgen.runner import LoadConfig, LoadResult, search_summary
from bench.loadgen.schedule import constant
from bench.loadgen.timeline import Phase, WindowStats, per_phase, per_second, window_stats
from bench.loadgen.transports import Answer, TransportSpec, make_transport
from bench.loadgen.workload import HeldOutQuery, HeldOutUser, Workload, load_search_queries
from retrieval.metrics import per_query_ndcg, per_query_recall
from serving.schemas import RecommendRequest, SearchRequest

USERS = tuple(HeldOutUser(f"u{i}", ("a",), "t") for i in range(4))
QUERIES = (HeldOutQuery("red shoes", ("s1",)), HeldOutQuery("blue hat", ("s2", "s3")))


def _mixed(share: float = 0.25) -> Workload:
    return Workload(USERS, searches=QUERIES, search_share=share)


# --- workload -------------------------------------------------------------------------------


def _old_order(users: int, n: int, seed: int) -> np.ndarray:
    """The recommend-only order as it was before searches existed."""
    rng = np.random.default_rng(seed)
    reps = -(-n // users)
    return np.concatenate([rng.permutation(users) for _ in range(reps)])[:n]


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (7, 1), (1000, 3)])
def test_order_without_searches_is_bit_identical(n: int, seed: int) -> None:
    plain = Workload(USERS).order(n, seed)
    with_unused = Workload(USERS, searches=QUERIES).order(n, seed)  # share 0: never sent
    assert np.array_equal(plain, _old_order(len(USERS), n, seed))
    assert np.array_equal(with_unused, plain) and plain.dtype == np.int64


def test_mixed_order_sends_the_share_seeded_and_covers_every_query() -> None:
    order = _mixed(0.3).order(1000, seed=5)
    search = order >= len(USERS)
    assert int(search.sum()) == 300 and order.dtype == np.int64
    assert set(order[search].tolist()) == {4, 5} and set(order[~search].tolist()) == {0, 1, 2, 3}
    assert np.array_equal(order, _mixed(0.3).order(1000, seed=5))
    assert not np.array_equal(order, _mixed(0.3).order(1000, seed=6))
    halves = [int(search[:500].sum()), int(search[500:].sum())]
    assert all(100 < h < 200 for h in halves), halves  # spread over the run, not bunched
    assert (_mixed(1.0).order(10) >= len(USERS)).all()
    assert _mixed(0.5).order(0).tolist() == []


def test_requests_are_recommends_then_searches() -> None:
    requests = _mixed().requests()
    assert [type(r) for r in requests] == [RecommendRequest] * 4 + [SearchRequest] * 2
    search = requests[4]
    assert isinstance(search, SearchRequest)
    assert (search.query, search.k, search.user_id, search.history) == ("red shoes", 10, None,
                                                                          None)
    w = _mixed()
    assert w.targets() == ["t"] * 4 and w.relevant() == [("s1",), ("s2", "s3")]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"search_share": 1.5, "searches": QUERIES}, r"search_share must be in \[0, 1\]"),
    ({"search_share": -0.1, "searches": QUERIES}, r"search_share must be in \[0, 1\]"),
    ({"search_share": 0.2}, "needs held-out searches"),
])
def test_bad_search_share_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Workload(USERS, **kwargs)


def _artifact(tmp_path: Path, *, search: bool = True, rows: list[tuple[str, str, list[str]]]
              | None = None) -> Path:
    art = tmp_path / "art"
    (art / "search").mkdir(parents=True)
    io = {"search": {"queries": "search/queries.parquet"}} if search else {}
    (art / "manifest.json").write_text(json.dumps({"version": "v1", "io": io}))
    rows = rows if rows is not None else [("red shoes", "test", ["s1"]),
                                          ("blue hat", "test", ["s2", "s3"]),
                                          ("tuning only", "validation", ["s4"]),
                                          ("nothing relevant", "test", [])]
    pd.DataFrame(rows, columns=["query", "split", "relevant"]).to_parquet(
        art / "search" / "queries.parquet")
    pd.DataFrame({"index": [1, 2, 3, 4], "item_id": ["s1", "s2", "s3", "s4"]}).to_parquet(
        art / "items.parquet")
    return art


def test_load_search_queries_reads_one_split(tmp_path: Path) -> None:
    art = _artifact(tmp_path)
    assert load_search_queries(art) == QUERIES
    assert load_search_queries(art, "validation") == (HeldOutQuery("tuning only", ("s4",)),)
    assert load_search_queries(art, limit=1) == QUERIES[:1]


def test_relevant_ids_outside_the_catalogue_are_not_scored(tmp_path: Path) -> None:
    art = _artifact(tmp_path, rows=[("red shoes", "test", ["s1", "gone"]),
                                    ("only gone", "test", ["gone"])])
    assert load_search_queries(art) == (HeldOutQuery("red shoes", ("s1",)),)


def test_an_artifact_without_search_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="carries no search model"):
        load_search_queries(_artifact(tmp_path, search=False))
    with pytest.raises(WorkloadError, match="cannot read manifest.json"):
        load_search_queries(tmp_path / "missing")


def test_a_split_without_queries_is_refused(tmp_path: Path) -> None:
    art = _artifact(tmp_path, rows=[("q", "validation", ["s1"])])
    with pytest.raises(WorkloadError, match=r"split 'test', found none \(splits present: "
                                            r"\['validation'\]\)"):
        load_search_queries(art)
    (art / "search" / "queries.parquet").write_bytes(b"not parquet")
    with pytest.raises(WorkloadError, match="cannot read the held-out queries"):
        load_search_queries(art)


# --- quality --------------------------------------------------------------------------------


def test_search_scores_match_retrieval_metrics() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        ranked = rng.permutation(30)[:rng.integers(0, 15)].tolist()
        relevant = set(rng.choice(30, rng.integers(1, 6), replace=False).tolist())
        recall, ndcg = search_scores({str(i) for i in relevant}, [str(i) for i in ranked])
        assert recall == pytest.approx(per_query_recall([ranked], [relevant])[0])
        assert ndcg == pytest.approx(per_query_ndcg([ranked], [relevant])[0])


def test_search_scores_edge_cases() -> None:
    assert search_scores({"a"}, ["a"]) == (1.0, 1.0)
    assert search_scores({"a"}, []) == (0.0, 0.0)
    assert search_scores({"a"}, ["x"] * 10 + ["a"]) == (0.0, 0.0)  # beyond k
    assert all(np.isnan(search_scores(set(), ["a"])))
    assert search_scores({"a"}, ["a", "a"]) == (1.0, 1.0)  # a repeat is not found twice
    assert search_quality_of(np.array([np.nan]), np.array([np.nan])).recall is None


# --- outcomes -------------------------------------------------------------------------------


def test_outcomes_default_to_unscored_recommends_and_keep_kinds_through_select() -> None:
    zeros = np.zeros(3)
    legacy = Outcomes(zeros, zeros, zeros, zeros, np.zeros(3, np.int8), np.zeros(3, bool),
                      np.full(3, -2))
    assert legacy.kind.tolist() == [0, 0, 0] and np.isnan(legacy.search_ndcg10).all()
    assert not legacy.searches.any()
    buf = OutcomeBuffer(np.array([0.1, 0.2, 0.3]))
    buf.done(1, Status.OK, 0, 0.001, 0.001)
    buf.searched(1, 0.5, 0.25)
    frozen = buf.freeze()
    assert frozen.select(frozen.searches).search_ndcg10.tolist() == [0.25]
    merged = Outcomes.concat([frozen, legacy])
    assert merged.kind.tolist() == [0, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="column kind: expected 3 rows, found 2"):
        Outcomes(zeros, zeros, zeros, zeros, zeros, zeros, zeros, np.zeros(2))


# --- dispatcher -----------------------------------------------------------------------------


class _Scripted:
    """A transport answering request ``index`` with ``answers[index]`` at once."""

    def __init__(self, answers: dict[int, Answer]) -> None:
        self.answers, self.sent = answers, list[int]()

    async def open(self) -> None:
        return None

    async def send(self, index: int) -> Answer:
        self.sent.append(index)
        return self.answers[index]

    async def close(self) -> None:
        return None


def test_dispatcher_scores_recommends_by_rank_and_searches_by_recall_and_ndcg() -> None:
    answers = {0: Answer(Status.OK, item_ids=("x", "t")),        # recommend: target at rank 1
               1: Answer(Status.OK, item_ids=("s2", "x", "s3")),  # search 0: both relevant found
               2: Answer(Status.OK, degraded=True, item_ids=("x",)),  # search 1: BM25, a miss
               3: Answer(Status.ERROR)}                        # search 2: failed, unscored
    picks = np.array([0, 1, 2, 3, 0, 1])
    transport = _Scripted(answers)
    outcomes, _ = asyncio.run(run_open_loop(
        constant(100, 0.06), transport, picks, ["t"],
        relevant=[("s2", "s3"), ("s9",), ("s1",)]))
    assert outcomes.kind.tolist() == [0, 1, 1, 1, 0, 1]
    assert outcomes.rank.tolist() == [1, -2, -2, -2, 1, -2]
    np.testing.assert_allclose(outcomes.search_recall10, [np.nan, 1, 0, np.nan, np.nan, 1])
    expected_ndcg = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert outcomes.search_ndcg10[1] == pytest.approx(expected_ndcg, rel=1e-6)
    assert outcomes.degraded.tolist() == [False, False, True, False, False, False]


def test_dropped_searches_still_count_as_searches() -> None:
    class Slow(_Scripted):
        async def send(self, index: int) -> Answer:
            await asyncio.sleep(0.2)
            return Answer(Status.OK, item_ids=("s1",))

    picks = np.array([1, 1, 1, 0])
    outcomes, _ = asyncio.run(run_open_loop(constant(200, 0.02), Slow({}), picks, ["t"],
                                            max_in_flight=1, relevant=[("s1",)]))
    assert outcomes.status.tolist()[1:] == [Status.DROPPED] * 3
    assert outcomes.kind.tolist() == [1, 1, 1, 0]


# --- timeline and summary -------------------------------------------------------------------


def _mixed_outcomes() -> Outcomes:
    """2 s at 10/s: even rows recommend (hit at rank 0), odd rows search; second 1's searches
    are BM25 answers that find nothing and take 30 ms."""
    buf = OutcomeBuffer(np.arange(20) / 10)
    for i in range(20):
        if i % 2 == 0:
            buf.done(i, Status.OK, 0, 0.001, 0.001, rank=0)
        elif i < 10:
            buf.done(i, Status.OK, 0, 0.002, 0.002)
            buf.searched(i, 1.0, 0.8)
        else:
            buf.done(i, Status.OK, 0, 0.030, 0.030, degraded=True)
            buf.searched(i, 0.0, 0.0)
    buf.kind[19] = RequestKind.SEARCH
    buf.done(19, Status.TIMEOUT, 0, 2.0, 2.0)  # an unanswered search: not scored
    buf.search_recall10[19] = buf.search_ndcg10[19] = np.nan
    return buf.freeze()


def test_windows_score_searches_beside_the_recommender() -> None:
    first, second = per_second(_mixed_outcomes(), 2)
    assert (first.offered, first.ok, first.hr10, first.ndcg10, first.scored) == (10, 10, 1.0,
                                                                                  1.0, 5)
    assert (first.searches, first.search_ok, first.search_scored) == (5, 5, 5)
    assert (first.search_recall10, first.search_ndcg10) == (1.0, 0.8)
    assert first.search_p99_ms == pytest.approx(2.0, rel=0.01)
    assert (second.searches, second.search_ok, second.search_scored) == (5, 4, 4)
    assert (second.search_recall10, second.search_ndcg10, second.hr10) == (0.0, 0.0, 1.0)
    assert second.search_p99_ms == pytest.approx(30.0, rel=0.01)
    whole, = per_phase(_mixed_outcomes(), [Phase("whole", 0, 2)])
    assert (whole.search_ndcg10, whole.search_scored, whole.success_ratio) == (0.4444, 9, 0.95)


def test_windows_without_searches_keep_the_defaults() -> None:
    buf = OutcomeBuffer(np.array([0.1]))
    buf.done(0, Status.OK, 0, 0.001, 0.001, rank=0)
    w = window_stats(buf.freeze(), "0", 0, 1)
    assert (w.searches, w.search_ok, w.search_scored) == (0, 0, 0)
    assert (w.search_p99_ms, w.search_recall10, w.search_ndcg10) == (None, None, None)
    positional = WindowStats("0", 0, 1, 1, 1, 0, 0, 0, 0, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)
    assert positional.searches == 0 and positional.search_ndcg10 is None


def test_summary_splits_recommend_quality_from_search() -> None:
    outcomes = _mixed_outcomes()
    config = LoadConfig(TransportSpec("http", ("http://127.0.0.1:9",)), 10, 2,
                        phases=(Phase("all", 0, 2),))
    summary = LoadResult(config, outcomes, RunHistograms.of(outcomes), (), "now").summary()
    assert summary["quality"] == {"scored": 10, "hr": 1.0, "ndcg": 1.0, "k": 10}
    search = summary["search"]
    assert (search["offered"], search["ok"], search["errors"], search["success_ratio"]) == (
        10, 9, 1, 0.9)
    assert search["quality"] == {"scored": 9, "recall": 0.5556, "ndcg": 0.4444, "k": 10}
    assert search["degraded_share"] == 0.4444 and search["latency_ms"]["count"] == 9
    assert summary["phases"][0]["search_ndcg10"] == 0.4444
    assert search_summary(outcomes) == search
    plain = OutcomeBuffer(np.array([0.1]))
    plain.done(0, Status.OK, 0, 0.001, 0.001, rank=0)
    frozen = plain.freeze()
    no_search = LoadResult(config, frozen, RunHistograms.of(frozen), (), "now").summary(False)
    assert "search" not in no_search


# --- transports -----------------------------------------------------------------------------


def _answer(items: list[str], **extra: Any) -> dict[str, Any]:
    return {"items": [{"item_id": i, "title": i.upper(), "score": 1.0} for i in items],
            "model_version": "v1", "degraded": False, "replica": "r0", "node": "n0", **extra}


@asynccontextmanager
async def _http_server(with_search: bool = True) -> AsyncIterator[tuple[str, list[Any]]]:
    """A tiny serving look-alike on 127.0.0.1 recording (path, body) of each call."""
    from aiohttp import web

    seen: list[tuple[str, dict[str, Any]]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.path, body))
        if request.path == "/v1/recommend":
            return web.json_response(_answer(["t", "x"]))
        if request.path == "/v1/search" and with_search:
            return web.json_response(_answer(["s1"], truncated=False, personalised=False))
        if request.path == "/v1/feedback":
            return web.json_response({"recorded": True})
        return web.json_response({"detail": "no search model"}, status=404)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _requests() -> list[RecommendRequest | SearchRequest]:
    return [RecommendRequest(user_id="u0"), SearchRequest(query="red shoes", k=5)]


SpecOf = Callable[[str], TransportSpec]


async def _send_all(spec: SpecOf, with_search: bool = True,
                    targets: list[str | None] | None = None
                    ) -> tuple[list[Answer], list[Any]]:
    async with _http_server(with_search) as (base, seen):
        transport = make_transport(spec(base), _requests(), targets)
        await transport.open()
        try:
            answers = [await transport.send(0), await transport.send(1)]
        finally:
            await transport.close()
        return answers, seen


@pytest.mark.parametrize("spec", [
    pytest.param(lambda base: TransportSpec("http", (base,)), id="http"),
    pytest.param(lambda base: TransportSpec("http", (base,), validate=True), id="http-validate"),
    pytest.param(lambda base: TransportSpec("client-http", (base,)), id="client-http"),
])
def test_http_kinds_post_searches_to_the_search_route(spec: SpecOf) -> None:
    answers, seen = asyncio.run(_send_all(spec))
    assert [path for path, _ in seen] == ["/v1/recommend", "/v1/search"]
    assert seen[1][1] == {"query": "red shoes", "k": 5}
    assert [a.status for a in answers] == [Status.OK, Status.OK]
    assert answers[0].item_ids == ("t", "x") and answers[1].item_ids == ("s1",)


@pytest.mark.parametrize("kind", ["http", "client-http"])
def test_a_version_without_search_is_an_error_outcome(kind: str) -> None:
    answers, _ = asyncio.run(_send_all(lambda base: TransportSpec(kind, (base,)),
                                       with_search=False))
    assert [a.status for a in answers] == [Status.OK, Status.ERROR]


def test_feedback_is_replayed_for_recommend_answers_only() -> None:
    _, seen = asyncio.run(_send_all(
        lambda base: TransportSpec("http", (base,), feedback=True), targets=["t"]))
    assert [path for path, _ in seen] == ["/v1/recommend", "/v1/search", "/v1/feedback"]
    assert seen[2][1] == {"model_version": "v1", "items": ["t", "x"], "item_id": "t"}


@asynccontextmanager
async def _grpc_server(with_search: bool = True) -> AsyncIterator[tuple[str, list[str]]]:
    import grpc

    from serving.proto import recdrill_pb2

    pb: Any = recdrill_pb2  # generated, without type stubs
    seen: list[str] = []

    def reply(items: list[str]) -> list[Any]:
        return [pb.Item(item_id=i, title=i.upper(), score=1.0) for i in items]

    async def recommend(request: Any, context: Any) -> Any:
        seen.append(f"Recommend {request.user_id}")
        return pb.RecommendResponse(items=reply(["t"]), model_version="v1", replica="r0")

    async def search(request: Any, context: Any) -> Any:
        seen.append(f"Search {request.query} k={request.k}")
        if not with_search:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no search model")
        return pb.SearchResponse(items=reply(["s1", "s2"]), model_version="v1", truncated=True)

    handlers = {
        "Recommend": grpc.unary_unary_rpc_method_handler(
            recommend, request_deserializer=pb.RecommendRequest.FromString,
            response_serializer=pb.RecommendResponse.SerializeToString),
        "Search": grpc.unary_unary_rpc_method_handler(
            search, request_deserializer=pb.SearchRequest.FromString,
            response_serializer=pb.SearchResponse.SerializeToString)}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("recdrill.v1.Recommender", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        await server.stop(None)


@pytest.mark.parametrize("kind", ["grpc", "client-grpc"])
def test_grpc_kinds_call_search(kind: str) -> None:
    async def run(with_search: bool) -> tuple[list[Answer], list[str]]:
        async with _grpc_server(with_search) as (target, seen):
            transport = make_transport(TransportSpec(kind, (target,)), _requests())
            await transport.open()
            try:
                return [await transport.send(0), await transport.send(1)], seen
            finally:
                await transport.close()

    answers, seen = asyncio.run(run(True))
    assert seen == ["Recommend u0", "Search red shoes k=5"]
    assert [a.item_ids for a in answers] == [("t",), ("s1", "s2")]
    answers, _ = asyncio.run(run(False))
    assert [a.status for a in answers] == [Status.OK, Status.ERROR]


def test_client_search_raw_returns_the_search_fields_over_grpc() -> None:
    from serving.client import Client

    async def run() -> dict[str, Any]:
        async with _grpc_server() as (target, _), Client([target], transport="grpc") as client:
            return await client.search_raw({"query": "red shoes", "k": 2})

    data = asyncio.run(run())
    assert [i["item_id"] for i in data["items"]] == ["s1", "s2"]
    assert (data["truncated"], data["personalised"], data["degraded"]) == (True, False, False)


# --- docstring examples ---------------------------------------------------------------------


@pytest.mark.parametrize("module", ["bench.loadgen.workload", "bench.loadgen.quality",
                                    "bench.loadgen.timeline", "bench.loadgen.runner"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
