"""Hypothesis against a real grpc.aio server (``start_grpc_server`` inside a replica's entry
server, no Ray): every method of recdrill.v1.Recommender and Health gets random bytes and
well-formed messages with extreme values, sent as raw bytes. Only the expected statuses come
back (never INTERNAL or UNKNOWN), and the server is healthy and answering afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from serving_factory import Artifacts

from security.fuzzing import SUITE_SEED, FuzzResult, examples_from_env, seed_from_env
from serving.app import AppConfig
from serving.fuzzing import GRPC_METHODS, fuzz_grpc, known_ids
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource

EXAMPLES = examples_from_env(1500)  # about 10 s here


@pytest.fixture(scope="module")
def server(artifacts: Artifacts) -> Iterator[tuple[EntryServer, Endpoint, RecommendService]]:
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0", config=ServiceConfig())
    svc.load("v1")
    srv = EntryServer(svc, AppConfig(), "127.0.0.1", 0, 0)
    endpoint = srv.start()
    yield srv, endpoint, svc
    srv.stop()


def test_grpc_fuzz_gets_only_expected_statuses_and_the_server_survives(
        server: tuple[EntryServer, Endpoint, RecommendService],
        fuzz_report: list[FuzzResult]) -> None:
    srv, ep, svc = server
    result = fuzz_grpc(ep.grpc_target, examples=EXAMPLES, ids=known_ids(svc.runner),
                       seed=seed_from_env(SUITE_SEED))
    fuzz_report.append(result)
    print(result.summary_line())
    assert not result.failures, "\n\n".join(f"{f.message}\n{f.reproduce}"
                                            for f in result.failures)
    assert {name.rsplit("/", 1)[1] for name in GRPC_METHODS} <= set(result.cases)
    assert {"OK", "INVALID_ARGUMENT", "UNIMPLEMENTED"} <= set(result.outcomes)
    srv.ping()
    with grpc.insecure_channel(ep.grpc_target) as channel:
        health = pbg.HealthStub(channel).Check(pb.HealthCheckRequest(), timeout=5)
        answer = pbg.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id="u3", k=4),
                                                        timeout=5)
    assert health.status == pb.HealthCheckResponse.SERVING
    assert (len(answer.items), answer.model_version) == (4, "v1")


def test_known_ids_are_ones_the_version_answers_for(
        server: tuple[EntryServer, Endpoint, RecommendService]) -> None:
    ids = known_ids(server[2].runner, n=3)
    assert len(ids.items) == 3
    with grpc.insecure_channel(server[1].grpc_target) as channel:
        stub = pbg.RecommenderStub(channel)
        assert stub.Recommend(pb.RecommendRequest(history=ids.items, k=2), timeout=5).items
        for user in ids.users:
            assert stub.Recommend(pb.RecommendRequest(user_id=user, k=2), timeout=5).items


@pytest.mark.parametrize("request_", [
    pb.RecommendRequest(history=["x" * 60_000]),
    pb.SearchRequest(query="mug", history=["y" * 30_000, "z" * 30_000]),
], ids=["recommend", "search"])
def test_a_huge_unknown_id_is_refused_in_a_message_that_fits(
        server: tuple[EntryServer, Endpoint, RecommendService], request_: Any) -> None:
    """Found by the fuzzer: the 422 message quoted unknown ids in full; over gRPC the status
    outgrew the client's 16 KiB metadata limit and arrived as RESOURCE_EXHAUSTED."""
    method = "/recdrill.v1.Recommender/" + type(request_).__name__.removesuffix("Request")
    with (grpc.insecure_channel(server[1].grpc_target) as channel,
          pytest.raises(grpc.RpcError) as err):
        channel.unary_unary(method)(request_.SerializeToString(), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "at most 256 characters" in err.value.details()
    assert len(err.value.details()) < 400
