"""The replica's service without Ray: version swaps, refusals, deadlines, admission."""

from __future__ import annotations

import asyncio

import pytest
from serving_factory import Artifacts

from serving.admission import AdmissionPolicy
from serving.errors import ModelLoadError, NotReady, Overloaded
from serving.schemas import RecommendRequest
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource

REQ = RecommendRequest(history=["i1", "i2", "i3"], k=5)


def _service(artifacts: Artifacts, **config: object) -> RecommendService:
    source = DirectorySource(str(artifacts.root), str(artifacts.public_key))
    return RecommendService(source, replica="r0", node="n0", config=ServiceConfig(**config))


def test_not_ready_until_a_version_is_loaded(artifacts: Artifacts) -> None:
    svc = _service(artifacts)
    assert not svc.ready
    with pytest.raises(NotReady):
        asyncio.run(svc.recommend(REQ))


def test_swap_refuse_and_rollback(artifacts: Artifacts) -> None:
    svc = _service(artifacts)
    assert svc.load("v1") == "v1"
    assert svc.load("v2") == "v2"
    with pytest.raises(ModelLoadError, match="model.onnx"):
        svc.load("bad")
    assert svc.version == "v2"
    assert asyncio.run(svc.recommend(REQ))["model_version"] == "v2"
    assert svc.rollback() == "v1"
    text = svc.metrics.render().decode()
    assert 'recdrill_model_version_info{model_version="v1"} 1.0' in text
    assert 'recdrill_model_version_info{model_version="v2"}' not in text  # removed, not 0
    assert "recdrill_versions_refused_total 1.0" in text


def test_batched_and_unbatched_answers_agree(artifacts: Artifacts) -> None:
    on, off = _service(artifacts), _service(artifacts, batching=False)
    on.load("v1")
    off.load("v1")

    async def many(svc: RecommendService) -> list[dict[str, object]]:
        reqs = [RecommendRequest(history=[f"i{i}", f"i{i + 1}"], k=3) for i in range(20)]
        return list(await asyncio.gather(*(svc.recommend(r) for r in reqs)))

    a, b = asyncio.run(many(on)), asyncio.run(many(off))
    assert [x["items"] for x in a] == [x["items"] for x in b]
    assert not any(x["degraded"] for x in a)
    assert "recdrill_batch_size_count" in on.metrics.render().decode()


def test_stalled_model_answers_from_the_fallback_tier_in_time(artifacts: Artifacts) -> None:
    svc = _service(artifacts, deadline_s=0.05)
    svc.load("v1")
    svc.set_stall(0.5)

    async def timed() -> tuple[dict[str, object], float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        answer = await svc.recommend(REQ)
        return answer, loop.time() - t0

    answer, took = asyncio.run(timed())
    assert answer["degraded"] is True and len(answer["items"]) == 5  # type: ignore[arg-type]
    assert took < 0.2
    assert 'recdrill_fallbacks_total{reason="deadline"} 1.0' in svc.metrics.render().decode()


def test_overload_degrades_then_sheds_fast(artifacts: Artifacts) -> None:
    svc = _service(artifacts, admission=AdmissionPolicy(max_in_flight=2, max_degraded=0,
                                                        retry_after_s=2.0))
    svc.load("v1")
    svc.set_stall(0.2)

    async def burst() -> list[object]:
        return list(await asyncio.gather(*(svc.recommend(REQ) for _ in range(5)),
                                         return_exceptions=True))

    results = asyncio.run(burst())
    shed = [r for r in results if isinstance(r, Overloaded)]
    assert len(shed) == 3 and all(r.retry_after_s == 2.0 for r in shed)
    assert sum(isinstance(r, dict) for r in results) == 2

    degrading = _service(artifacts, admission=AdmissionPolicy(max_in_flight=1, max_degraded=8))
    degrading.load("v1")
    degrading.set_stall(0.2)

    async def burst2() -> list[dict[str, object]]:
        return list(await asyncio.gather(*(degrading.recommend(REQ) for _ in range(4))))

    answers = asyncio.run(burst2())
    assert sum(bool(a["degraded"]) for a in answers) == 3
