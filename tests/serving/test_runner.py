"""The Ray-free runner against onnxruntime directly, and version loading through sources."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from serving_factory import Artifacts

from serving.errors import InvalidRequest, ModelLoadError
from serving.runner import ModelRunner, Query, choose_providers
from serving.schemas import RecommendRequest
from serving.source import DirectorySource, make_source


@pytest.fixture(scope="module")
def runner(artifacts: Artifacts) -> ModelRunner:
    artifact = DirectorySource(str(artifacts.root), str(artifacts.public_key)).fetch_verified("v1")
    r = ModelRunner.load(artifact, threads=1)
    r.probe()
    return r


def _reference(artifacts: Artifacts, seq: list[int], k: int, exclude: bool) -> list[int]:
    sess = ort.InferenceSession(str(artifacts.path("v1") / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    scores = sess.run(None, {"input_ids": np.array([seq[-10:]], dtype=np.int64)})[0][0]
    order = [int(i) + 1 for i in np.argsort(-scores, kind="stable")]
    return [i for i in order if not (exclude and i in seq)][:k]


def test_top_k_matches_full_sort(runner: ModelRunner, artifacts: Artifacts) -> None:
    seq = [3, 7, 7, 12, 1, 5, 9, 22, 4, 8, 15, 2]
    for exclude in (True, False):
        ranked = runner.score([Query(np.array(seq), 5, exclude)])[0]
        assert ranked.indices.tolist() == _reference(artifacts, seq, 5, exclude)
        assert (np.diff(ranked.scores) <= 0).all() and not ranked.degraded


def test_batch_equals_single_calls(runner: ModelRunner) -> None:
    queries = [Query(np.array(s), 4, True) for s in ([1], [2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])]
    batched = runner.score(queries)
    for q, b in zip(queries, batched, strict=True):
        single = runner.score([q])[0]
        assert single.indices.tolist() == b.indices.tolist()
        np.testing.assert_allclose(single.scores, b.scores, rtol=1e-5, atol=1e-5)


def test_k_is_clamped_to_the_catalog(runner: ModelRunner) -> None:
    assert len(runner.score([Query(np.array([1, 2]), 100, True)])[0].indices) == 28
    assert len(runner.score([Query(np.array([1, 2]), 100, False)])[0].indices) == 30


def test_resolve_users_histories_and_unknown_ids(runner: ModelRunner) -> None:
    q = runner.resolve(RecommendRequest(user_id="u0", k=3))
    assert len(q.seq) > 0 and q.k == 3
    assert runner.resolve(RecommendRequest(history=["i0", "i5"])).seq.tolist() == [1, 6]
    with pytest.raises(InvalidRequest, match="user_id 'nobody' is unknown"):
        runner.resolve(RecommendRequest(user_id="nobody"))
    with pytest.raises(InvalidRequest, match=r"unknown item id\(s\).*'zz'"):
        runner.resolve(RecommendRequest(history=["i1", "zz"]))


def test_fallback_is_degraded_and_excludes_seen(runner: ModelRunner) -> None:
    ranked = runner.fallback(Query(np.array([1, 2, 3]), 5, True))
    assert ranked.degraded and len(ranked.indices) == 5
    assert not {1, 2, 3} & set(ranked.indices.tolist())
    items = runner.items_json(ranked)
    assert items[0]["item_id"].startswith("i") and items[0]["title"].startswith("Title")


def test_probe_refuses_a_model_that_answers_nan(runner: ModelRunner,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    class NaNSession:
        def run(self, *_: object, **__: object) -> list[np.ndarray]:
            return [np.full((1, 30), np.nan, dtype=np.float32)]

    monkeypatch.setattr(runner, "_session", NaNSession())
    with pytest.raises(ModelLoadError, match="probe prediction is malformed"):
        runner.probe()


def test_tampered_artifact_is_refused(artifacts: Artifacts) -> None:
    src = DirectorySource(str(artifacts.root), str(artifacts.public_key))
    with pytest.raises(ModelLoadError, match="model.onnx"):
        src.fetch("bad")
    with pytest.raises(ModelLoadError, match="no manifest.json"):
        src.fetch(None)
    assert src.fetch("v2")[0] == "v2"
    assert DirectorySource(str(artifacts.path("v1")), str(artifacts.public_key)).fetch()[0] == "v1"
    with pytest.raises(ModelLoadError, match="exactly one"):
        make_source(artifact=None, store=None, public_key_path="k")


def test_cpu_is_always_the_last_provider() -> None:
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
