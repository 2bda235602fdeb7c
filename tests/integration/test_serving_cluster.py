"""recdrill serving on a real multi-node Ray cluster (head + 2 workers, one replica per node).

One cluster and one deployment for the module: answers equal the in-process runner over HTTP
and gRPC; a killed replica actor and a version swap under steady traffic cost zero failed
client requests; a tampered version is refused while the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from serving_factory import Artifacts, build_artifacts

from serving.client import Client
from serving.config import ServeSettings
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.retry import RetryPolicy
from serving.runner import ModelRunner
from serving.schemas import RecommendRequest
from serving.server import Endpoint
from serving.source import DirectorySource
from serving.testing import free_port_base, wait_until


class Env:
    def __init__(self, artifacts: Artifacts, settings: ServeSettings,
                 endpoints: list[Endpoint]) -> None:
        self.artifacts, self.settings, self.endpoints = artifacts, settings, endpoints

    @property
    def http(self) -> list[str]:
        return [e.http_url for e in self.endpoints]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from ray import serve

    from replication.localcluster import local_ray_cluster
    from serving.deployment import deploy

    artifacts = build_artifacts(tmp_path_factory.mktemp("serving-it") / "artifacts")
    http_base = free_port_base(2)
    grpc_base = http_base + 40
    with local_ray_cluster(workers=2, object_store_mb=80) as _:
        settings = ServeSettings(artifact=str(artifacts.root), public_key=str(artifacts.public_key),
                                 version="v1", replicas=2, http_port=http_base,
                                 grpc_port=grpc_base, app_name="it")
        try:
            yield Env(artifacts, settings, deploy(settings, timeout_s=90))
        finally:
            serve.shutdown()


class Traffic:
    """Steady open-loop traffic through serving.client from a background thread."""

    def __init__(self, endpoints: list[str], rate_rps: float = 60.0) -> None:
        self.endpoints, self.rate_rps = endpoints, rate_rps
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self.degraded = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        policy = RetryPolicy(deadline_s=3.0, attempt_timeout_s=1.0, retries=2)
        async with Client(self.endpoints, policy=policy) as client:
            tasks = []
            while not self._stop.is_set():
                tasks.append(asyncio.ensure_future(self._one(client)))
                await asyncio.sleep(1 / self.rate_rps)
            await asyncio.gather(*tasks)

    async def _one(self, client: Client) -> None:
        try:
            answer = await client.recommend(RecommendRequest(user_id="u1", k=5))
        except Exception as exc:  # noqa: BLE001 - every failure is a test failure
            self.failures.append(repr(exc))
            return
        self.ok += 1
        self.degraded += answer.degraded
        self.versions.append(answer.model_version)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _post(url: str, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/v1/recommend", data=data,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _answers(env: Env, version: str) -> bool:
    try:
        return all(_post(url, {"user_id": "u1"})[1].get("model_version") == version
                   for url in env.http)
    except OSError:
        return False


def test_http_and_grpc_equal_the_runner_and_replicas_spread(env: Env) -> None:
    artifact = DirectorySource(str(env.artifacts.root),
                               str(env.artifacts.public_key)).fetch_verified("v1")
    runner = ModelRunner.load(artifact, threads=1)
    nodes = set()
    for ep in env.endpoints:
        with grpc.insecure_channel(ep.grpc_target) as channel:
            stub = pbg.RecommenderStub(channel)
            for req in (RecommendRequest(user_id="u5", k=10),
                        RecommendRequest(history=["i3", "i4", "i9"], k=4, exclude_seen=False)):
                expected = [i["item_id"] for i in runner.items_json(
                    runner.score([runner.resolve(req)])[0])]
                code, answer = _post(ep.http_url, req.model_dump(exclude_none=True))
                assert code == 200 and not answer["degraded"]
                assert [i["item_id"] for i in answer["items"]] == expected
                g = stub.Recommend(pb.RecommendRequest(**req.model_dump(exclude_none=True)),
                                   timeout=10)
                assert [i.item_id for i in g.items] == expected and g.model_version == "v1"
                nodes.add(answer["node"])
    assert len(nodes) == 2, "the two replicas must run on two different nodes"


@pytest.mark.parametrize(("body", "status"), [
    (b"{oops", 400), ({"user_id": "u1", "k": 101}, 422), ({"history": []}, 422),
    ({"history": ["nope"]}, 422), ({"user_id": "u1", "extra": 1}, 422),
    (b'{"history": ["' + b"x" * 1_600_000 + b'"]}', 413)])
def test_bad_input_gets_its_documented_error(env: Env, body: Any, status: int) -> None:
    code, answer = _post(env.http[0], body)
    assert code == status and answer["error"]
    with (grpc.insecure_channel(env.endpoints[0].grpc_target) as channel,
          pytest.raises(grpc.RpcError) as err):
        pbg.RecommenderStub(channel).Recommend(pb.RecommendRequest(k=500, user_id="u1"),
                                               timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _post(env.http[0], {"user_id": "u1"})[0] == 200  # the replica is alive


def test_killing_a_replica_under_traffic_fails_no_request(env: Env) -> None:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if "RecommenderReplica" in a["name"]]
    assert len(names) == 2
    victim = ray.get_actor(names[0], namespace="serve")
    with Traffic(env.http) as traffic:
        wait_until(lambda: traffic.ok >= 60, 30, 0.2, what="steady traffic")
        ray.kill(victim, no_restart=True)
        killed_at = traffic.ok
        wait_until(lambda: len([a for a in ray.util.list_named_actors(all_namespaces=True)
                                if "RecommenderReplica" in a["name"]]) == 2
                   and _answers(env, "v1"), 60, 0.2, what="the replica to be replaced")
        wait_until(lambda: traffic.ok >= killed_at + 60, 30, 0.2, what="traffic after the restart")
    assert traffic.failures == []
    assert traffic.ok > 120


def test_version_swap_under_traffic_fails_no_request(env: Env) -> None:
    from serving.deployment import set_version

    with Traffic(env.http) as traffic:
        wait_until(lambda: traffic.ok >= 30, 30, 0.2, what="steady traffic")
        set_version(env.settings, "v2")
        wait_until(lambda: _answers(env, "v2"), 60, 0.2, what="every replica to serve v2")
        swapped = traffic.ok
        wait_until(lambda: traffic.ok >= swapped + 30, 30, 0.2, what="traffic after the swap")
    assert traffic.failures == []
    assert {"v1", "v2"} <= set(traffic.versions) and traffic.versions[-1] == "v2"


def test_tampered_version_is_refused_and_the_old_one_keeps_serving(env: Env) -> None:
    from ray import serve

    from serving.deployment import set_version

    set_version(env.settings.model_copy(update={"version": "v2"}), "bad")
    handle = serve.get_app_handle(env.settings.app_name)
    wait_until(lambda: any("model.onnx" in r for r in handle.status.remote().result()["refusals"]),
               30, 0.2, what="the refusal to be recorded")
    assert _answers(env, "v2")
    with urllib.request.urlopen(env.http[0] + "/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'recdrill_model_version_info{model_version="v2"} 1.0' in metrics


def test_registry_is_kept_fresh_and_a_version_swap_keeps_the_replica_processes(env: Env) -> None:
    from serving.deployment import list_replicas, set_version

    before = list_replicas(env.settings.app_name)
    assert [r["rank"] for r in before] == [0, 1]
    assert all(r["age_s"] < 10 for r in before)  # refreshed by each replica's heartbeat
    set_version(env.settings, "v1")
    wait_until(lambda: _answers(env, "v1"), 60, 0.2, what="every replica to serve v1")
    wait_until(lambda: all(r["version"] == "v1" for r in list_replicas(env.settings.app_name)),
               15, 0.2, what="the registry to show v1")
    after = list_replicas(env.settings.app_name)
    assert [r["pid"] for r in after] == [r["pid"] for r in before]  # reconfigured in place
