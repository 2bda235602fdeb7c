"""Standard gRPC health (grpc.health.v1) and server reflection on a replica's entry server,
checked with real grpc clients (no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from serving_factory import Artifacts

from serving.app import AppConfig
from serving.grpc_server import health_status
from serving.server import EntryServer
from serving.service import RecommendService
from serving.source import DirectorySource

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture()
def entry(artifacts: Artifacts) -> Iterator[EntryServer]:
    """A replica's entry server whose service has no version loaded yet."""
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0")
    srv = EntryServer(svc, AppConfig(), "127.0.0.1", 0, 0)
    srv.start()
    yield srv
    srv.stop()
    assert not srv.alive


@pytest.fixture()
def unloaded(entry: EntryServer) -> tuple[RecommendService, str]:
    """The entry server's service and its gRPC target."""
    assert entry.endpoint is not None
    return entry.service, entry.endpoint.grpc_target


def _check(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(answer.status)


def test_health_status_follows_readiness() -> None:
    assert (health_status(True), health_status(False)) == (SERVING, NOT_SERVING)


def test_not_serving_until_a_verified_version_is_loaded(
        unloaded: tuple[RecommendService, str]) -> None:
    svc, target = unloaded
    assert [_check(target, s) for s in ("", "recdrill.v1.Recommender")] == [NOT_SERVING] * 2
    svc.load("v1")
    assert [_check(target, s) for s in ("", "recdrill.v1.Recommender")] == [SERVING] * 2


def test_unknown_service_is_not_found(unloaded: tuple[RecommendService, str]) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _check(unloaded[1], "no.such.Service")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_streams_the_change_to_serving(unloaded: tuple[RecommendService, str]) -> None:
    svc, target = unloaded
    with grpc.insecure_channel(target) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="recdrill.v1.Recommender"), timeout=10)
        first = next(stream)
        svc.load("v1")
        second = next(stream)  # within one poll (HEALTH_POLL_S), well inside the timeout
        stream.cancel()
    assert (first.status, second.status) == (NOT_SERVING, SERVING)


def test_stop_with_a_watch_open_ends_it_cleanly(entry: EntryServer) -> None:
    assert entry.endpoint is not None
    with grpc.insecure_channel(entry.endpoint.grpc_target) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(stream).status == NOT_SERVING
        entry.stop()
        with pytest.raises(grpc.RpcError):
            next(stream)
    assert not entry.alive and entry._loop is not None
    pending = [t for t in asyncio.all_tasks(entry._loop) if not t.done()]
    assert not pending, pending  # each would log "Task was destroyed but it is pending!"


def test_reflection_lists_every_service_and_describes_ours(
        unloaded: tuple[RecommendService, str]) -> None:
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="recdrill.v1.Recommender")]
    with grpc.insecure_channel(unloaded[1]) as channel:
        answers = list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter(requests), timeout=5))
    listed = {s.name for s in answers[0].list_services_response.service}
    assert listed == {"recdrill.v1.Recommender", "recdrill.v1.Health", "grpc.health.v1.Health",
                      "grpc.reflection.v1alpha.ServerReflection"}
    assert answers[1].file_descriptor_response.file_descriptor_proto  # grpcurl describe works
