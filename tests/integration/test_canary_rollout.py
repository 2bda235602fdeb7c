"""The bad-model defence on a real multi-node Ray cluster (head + 2 workers, 2 replicas).

One cluster and one deployment (v1) for the module: v2 goes live as a canary on half of the
traffic while a background thread sends recommend requests for many users and feedback that
makes v2 look bad; ``canary_rollout`` must roll it back on every replica (and call the store
rollback) with no failed request. A tampered canary is refused by every replica while v1
keeps serving, and its rollout ends undecided without waiting for the full timeout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from serving_factory import Artifacts, build_artifacts

from serving.canary import CanaryGate
from serving.config import ServeSettings
from serving.server import Endpoint, free_port_base

N_ITEMS = 30




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

    artifacts = build_artifacts(tmp_path_factory.mktemp("canary-it") / "artifacts")
    http_base = free_port_base(2)
    with local_ray_cluster(workers=2, object_store_mb=80) as _:
        settings = ServeSettings(artifact=str(artifacts.root), public_key=str(artifacts.public_key),
                                 version="v1", replicas=2, http_port=http_base,
                                 grpc_port=http_base + 40, app_name="canary-it")
        try:
            yield Env(artifacts, settings, deploy(settings, timeout_s=90))
        finally:
            serve.shutdown()


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def _request(n: int) -> dict[str, Any]:
    """Many routing keys: the 40 known users, then two-item histories."""
    key = n % 400
    if key < 40:
        return {"user_id": f"u{key}"}
    return {"history": [f"i{key % N_ITEMS}", f"i{(key // N_ITEMS + 1) % N_ITEMS}"]}


class FeedbackTraffic:
    """Recommend + feedback from a thread: stable answers are taken at rank 1 (hits), canary
    answers never (an item they did not show), so the canary's online HR@10 is 0."""

    def __init__(self, endpoints: list[str], stable: str) -> None:
        self.endpoints, self.stable = endpoints, stable
        self.versions: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="feedback-traffic")

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            base = self.endpoints[n % len(self.endpoints)]
            try:
                code, answer = _post(base + "/v1/recommend", _request(n))
                if code != 200:
                    self.failures.append(f"recommend {code}: {answer}")
                    continue
                version, items = answer["model_version"], [i["item_id"] for i in answer["items"]]
                self.versions[version] = self.versions.get(version, 0) + 1
                taken = items[0] if version == self.stable else next(
                    f"i{j}" for j in range(N_ITEMS) if f"i{j}" not in items)
                other = self.endpoints[(n + 1) % len(self.endpoints)]  # any replica will do
                code, ack = _post(other + "/v1/feedback", {"model_version": version,
                                                           "items": items, "item_id": taken})
                if code != 202:
                    self.failures.append(f"feedback {code}: {ack}")
            except OSError as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _all_stats(env: Env) -> list[dict[str, Any]]:
    return [_get(url + "/v1/feedback/stats") for url in env.http]


def test_a_bad_canary_is_rolled_back_on_every_replica(env: Env) -> None:
    from serving.rollout import canary_rollout

    store_rollbacks: list[str] = []
    gate = CanaryGate(min_feedback=40, min_ratio=0.8)
    t0 = time.monotonic()
    with FeedbackTraffic(env.http, "v1") as traffic:
        result = canary_rollout(env.settings, "v1", "v2", share=0.5, gate=gate, timeout_s=45,
                                poll_s=0.25, rollback=store_rollbacks.append)
    assert result.outcome == "rolled-back", result
    assert store_rollbacks == ["v1"] and time.monotonic() - t0 < 45
    assert result.canary_tally.shown >= 40 and result.canary_tally.hits == 0
    assert result.stable_tally.shown >= 40 and result.stable_tally.hr == 1.0
    assert result.decided_s is not None and result.canary_started_s <= result.decided_s
    assert traffic.failures == [] and traffic.versions.get("v2", 0) > 0
    for stats in _all_stats(env):
        assert (stats["stable"], stats["canary"], stats["canary_share"]) == ("v1", None, 0.0)
    for url in env.http:
        for n in range(80):
            code, answer = _post(url + "/v1/recommend", _request(n))
            assert code == 200 and answer["model_version"] == "v1"


def test_a_tampered_canary_is_refused_and_v1_keeps_serving(env: Env) -> None:
    from ray import serve

    from serving.rollout import canary_rollout

    store_rollbacks: list[str] = []
    result = canary_rollout(env.settings, "v1", "bad", share=0.5, gate=CanaryGate(),
                            timeout_s=60, start_timeout_s=4, poll_s=0.25,
                            rollback=store_rollbacks.append)
    assert result.outcome == "undecided" and "not in service" in result.reason
    assert result.seconds < 30 and store_rollbacks == []
    handle = serve.get_app_handle(env.settings.app_name)
    statuses = [handle.status.remote().result() for _ in range(6)]  # any replica answers
    assert all(s["canary"] is None for s in statuses)
    assert any("model.onnx" in r for s in statuses for r in s["refusals"])
    for stats in _all_stats(env):
        assert (stats["stable"], stats["canary"]) == ("v1", None)
    for url in env.http:
        assert _post(url + "/v1/recommend", {"user_id": "u1"})[1]["model_version"] == "v1"
