"""The load generator against real local servers on 127.0.0.1 (bounded: a few seconds each).

- coordinated omission: a server that stalls 300 ms once; the open-loop p99 shows the stall,
  a closed-loop client's p99 hides it;
- the FastAPI + onnxruntime and Flask + PyTorch contenders on an artifact built here, with
  answers scored against the held-out items, in one and in two generator processes;
- the gRPC transport against a minimal servicer of serving's proto.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pytest

from bench.contenders.process import ServerProcess
from bench.loadgen import (
    LoadConfig,
    Status,
    TransportSpec,
    Workload,
    histogram_of,
    load_workload,
    run_load,
    summarize,
)
from bench.loadgen.workload import HeldOutUser
from serving.testing import free_port

ANSWER = (b'{"items": [{"item_id": "a", "title": "A", "score": 1.0}], "model_version": "v", '
          b'"degraded": false, "replica": "r", "node": "n"}')


class StallServer:
    """aiohttp on its own thread and loop; ``arm(at)`` makes the first request after monotonic
    time ``at`` block the whole server for ``stall_s`` (like a GC pause or a stuck replica)."""

    def __init__(self, stall_s: float = 0.3) -> None:
        self.stall_s, self.port = stall_s, free_port()
        self._at: float | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def arm(self, at: float) -> None:
        self._at = at

    async def _handle(self, request: object) -> object:
        from aiohttp import web

        if self._at is not None and time.monotonic() >= self._at:
            self._at = None
            time.sleep(self.stall_s)  # noqa: ASYNC251 - blocks the loop on purpose: every request waits
        return web.Response(body=ANSWER, content_type="application/json")

    def _run(self) -> None:
        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/recommend", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _one_user_workload() -> Workload:
    return Workload((HeldOutUser("u", ("b",), "a"),))


async def _closed_loop(url: str, rate: float, n: int) -> list[int]:
    """The usual benchmark loop: send, wait for the answer, time only that, pace to ``rate``."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        for i in range(n):
            now = time.monotonic()
            if now < start + i / rate:
                await asyncio.sleep(start + i / rate - now)
            sent = time.monotonic()
            async with session.post(url + "/v1/recommend", data=b'{"user_id": "u"}') as resp:
                await resp.read()
            out.append(int((time.monotonic() - sent) * 1e6))
    return out


def test_open_loop_p99_shows_a_stall_that_closed_loop_hides() -> None:
    rate, duration = 200.0, 2.0
    with StallServer(0.3) as server:
        url = f"http://127.0.0.1:{server.port}"
        spec = TransportSpec("http", (url,), timeout_s=5.0)
        server.arm(time.monotonic() + 1.0)
        result = run_load(LoadConfig(spec, rate, duration, warmup_s=0, max_lag_p99_ms=1000),
                          _one_user_workload())
        server.arm(time.monotonic() + 1.0)
        closed = summarize(histogram_of(asyncio.run(_closed_loop(url, rate, int(rate * duration)))))
    summary = result.summary()
    open_p99 = summary["latency_ms"]["p99_ms"]
    assert summary["ok"] == 400 and summary["quality"]["hr"] == 1.0
    assert open_p99 >= 200, summary["latency_ms"]              # ~60 requests waited behind it
    assert summary["latency_ms"]["max_ms"] >= 290
    assert closed.p99_ms is not None and closed.p99_ms < 100   # one sample of 400 saw it
    assert closed.max_ms is not None and closed.max_ms >= 290
    # the stall lands in the second whose requests it delayed
    assert max(w["p99_ms"] for w in summary["timeline"]) >= 200


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny trained-shape checkpoint on disk and its signed artifact, built from code."""
    import torch

    from export.package import package_recommender
    from export.signing import generate_signing_key
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.clean import SequenceData
    from training.model import ModelConfig, SASRec

    rng = np.random.default_rng(0)
    seqs = tuple(rng.integers(1, 31, size=int(rng.integers(4, 12))) for _ in range(40))
    data = SequenceData(tuple(f"i{i}" for i in range(30)), tuple(f"u{u}" for u in range(40)), seqs)
    torch.manual_seed(0)
    model = SASRec(30, ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_seq_len=10)).eval()
    items = pd.DataFrame({"item_id": ["i3"], "title": ["Three"], "category": ["c"]})
    root = tmp_path_factory.mktemp("bench")
    meta = {"config": {"model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                 "max_seq_len": 10}}, "metrics": {}}
    save_checkpoint(root / "ck", model, data, items, meta)
    generate_signing_key(root / "k", root / "k.pub")
    package_recommender(load_checkpoint(root / "ck"), root / "art", root / "k", root / "k.pub",
                        version="v1")
    return root / "art", root / "ck"


def _check(summary: dict[str, object], offered: int) -> None:
    assert summary["offered"] == offered and summary["ok"] == offered, summary
    quality = summary["quality"]
    assert isinstance(quality, dict) and quality["scored"] == offered
    assert 0.0 <= quality["hr"] <= 1.0


def test_fastapi_ort_contender_in_one_and_two_generator_processes(
        model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    artifact, checkpoint = model_dirs
    workload = load_workload(artifact, checkpoint)
    with ServerProcess("bench.contenders.fastapi_ort", ["--artifact", str(artifact)],
                       tmp_path / "fastapi.log") as server:
        spec = TransportSpec("http", (server.url,))
        one = run_load(LoadConfig(spec, 100, 2, warmup_s=0.5, max_lag_p99_ms=1000), workload)
        two = run_load(LoadConfig(spec, 100, 2, warmup_s=0.5, processes=2, schedule="poisson",
                                  max_lag_p99_ms=1000), workload)
    _check(one.summary(), 200)
    s2 = two.summary(timeline=False)
    _check(s2, len(two.outcomes))
    assert s2["generator"]["processes"] == 2
    assert two.histograms.ok.get_total_count() == s2["ok"]   # merged from both processes
    assert np.all(np.diff(two.outcomes.intended_s) >= 0)


def test_flask_torch_contender(model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    artifact, checkpoint = model_dirs
    workload = Workload(load_workload(artifact, checkpoint).users, mode="history")
    with ServerProcess("bench.contenders.flask_torch", ["--checkpoint", str(checkpoint)],
                       tmp_path / "flask.log", ready_timeout_s=120) as server:
        result = run_load(LoadConfig(TransportSpec("http", (server.url,)), 20, 1, warmup_s=0,
                                     max_lag_p99_ms=1000), workload)
    _check(result.summary(), 20)


@pytest.fixture()
def grpc_server() -> Iterator[str]:
    import grpc

    from serving.proto import recdrill_pb2, recdrill_pb2_grpc

    class Servicer(recdrill_pb2_grpc.RecommenderServicer):
        def Recommend(self, request, context):  # type: ignore[no-untyped-def]
            if request.user_id == "shed":
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")
            return recdrill_pb2.RecommendResponse(
                items=[recdrill_pb2.Item(item_id="a", title="A", score=1.0)], model_version="v",
                degraded=True)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    recdrill_pb2_grpc.add_RecommenderServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_grpc_transport(grpc_server: str) -> None:
    users = (HeldOutUser("u", ("b",), "a"), HeldOutUser("shed", ("b",), "a"))
    result = run_load(LoadConfig(TransportSpec("grpc", (grpc_server,)), 50, 1, warmup_s=0,
                                 max_lag_p99_ms=1000), Workload(users))
    o = result.outcomes
    assert o.count(Status.OK) + o.count(Status.SHED) == 50 and o.count(Status.SHED) > 0
    summary = result.summary(timeline=False)
    assert summary["degraded_share"] == 1.0 and summary["quality"]["hr"] == 1.0
