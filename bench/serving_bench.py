"""Serving throughput by measurement: which request path, batching on/off, overload.

Open-loop load at a constant arrival rate from one process pinned to one core (aiohttp for
HTTP, grpc.aio for gRPC); latency counts from each request's *intended* send time, so a slow
server cannot hide behind a slow generator. Each step is bounded in requests and seconds.
Saturation = the highest offered rate whose goodput is ≥ 95% of it with p99 ≤ 100 ms.

Paths compared, on an embedded one-node Ray (1 replica, batching on or off):
    direct   the replica's own HTTP/gRPC entry server (recdrill's choice)
    proxy    Ray Serve's standard HTTP proxy → the same replica

Usage:
    python -m bench.serving_bench --artifact /tmp/sample-artifact \
        --public-key /tmp/sample-artifact.pub --out runs/serving_bench.json

Importing this module does no work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["StepResult", "find_saturation", "main", "run_step"]

_BODY = {"user_id": "1", "k": 10}


@dataclass(frozen=True)
class StepResult:
    """One constant-rate step."""

    offered_rps: float
    sent: int
    ok: int
    degraded: int
    shed: int
    failed: int
    goodput_rps: float
    p50_ms: float
    p99_ms: float
    p99_admitted_ms: float
    max_lag_ms: float


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_step(send: Callable[[], Awaitable[str]], rate_rps: float, duration_s: float,
                   timeout_s: float = 1.0) -> StepResult:
    """Send at ``rate_rps`` for ``duration_s``; ``send`` returns "ok"/"degraded"/"shed"/"fail"."""
    n = max(1, int(rate_rps * duration_s))
    lat: list[float] = []
    lat_ok: list[float] = []
    counts = {"ok": 0, "degraded": 0, "shed": 0, "fail": 0}
    max_lag = 0.0
    loop = asyncio.get_running_loop()

    async def one(intended: float) -> None:
        try:
            outcome = await asyncio.wait_for(send(), timeout_s)
        except Exception:
            outcome = "fail"
        done = loop.time()
        counts[outcome] += 1
        latency = (done - intended) * 1000
        lat.append(latency)
        if outcome in ("ok", "degraded"):
            lat_ok.append(latency)

    t0 = loop.time() + 0.05
    tasks = []
    for i in range(n):
        intended = t0 + i / rate_rps
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay * 1000)
        tasks.append(asyncio.ensure_future(one(intended)))
    await asyncio.gather(*tasks)
    elapsed = max(loop.time() - t0, duration_s)
    good = counts["ok"] + counts["degraded"]
    return StepResult(rate_rps, n, counts["ok"], counts["degraded"], counts["shed"],
                      counts["fail"], good / elapsed, _pct(lat, 0.5), _pct(lat, 0.99),
                      _pct(lat_ok, 0.99), max_lag)


def _saturated(step: StepResult) -> bool:
    return step.goodput_rps < 0.95 * step.offered_rps or step.p99_ms > 100


async def find_saturation(send: Callable[[], Awaitable[str]], start_rps: float,
                          duration_s: float, factor: float = 1.25, max_rps: float = 6000
                          ) -> tuple[float, list[StepResult]]:
    """Step the rate up by ``factor`` until a step saturates; the last good rate wins."""
    steps, rate, best = [], start_rps, 0.0
    while rate <= max_rps:
        step = await run_step(send, rate, duration_s)
        steps.append(step)
        if _saturated(step):
            break
        best = rate
        rate *= factor
    return best, steps


def http_sender(url: str) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    import aiohttp
    import orjson

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    body = orjson.dumps(_BODY)
    headers = {"content-type": "application/json"}

    async def send() -> str:
        async with session.post(url, data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status == 200:
                return "degraded" if b'"degraded":true' in data else "ok"
            return "shed" if resp.status == 503 else "fail"

    return send, session.close


def grpc_sender(target: str) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    import grpc

    from serving.proto import recdrill_pb2 as pb

    channel = grpc.aio.insecure_channel(target)
    call = channel.unary_unary("/recdrill.v1.Recommender/Recommend",
                               request_serializer=pb.RecommendRequest.SerializeToString,
                               response_deserializer=pb.RecommendResponse.FromString)
    request = pb.RecommendRequest(**_BODY)

    async def send() -> str:
        try:
            resp = await call(request, timeout=1.0)
        except grpc.aio.AioRpcError as exc:
            return "shed" if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else "fail"
        return "degraded" if resp.degraded else "ok"

    return send, channel.close


async def measure(send: Callable[[], Awaitable[str]], start_rps: float, step_s: float
                  ) -> dict[str, Any]:
    """Saturation, p50/p99 at 50% and 90% of it, and goodput at 2x."""
    for _ in range(2):  # warm-up
        await run_step(send, 100, 1.0)
    sat, steps = await find_saturation(send, start_rps, step_s)
    sat = max(sat, start_rps)
    half = await run_step(send, sat * 0.5, step_s)
    ninety = await run_step(send, sat * 0.9, step_s)
    at_sat = await run_step(send, sat, step_s)
    overload = await run_step(send, sat * 2, step_s)
    return {"saturation_rps": sat, "at_50pct": asdict(half), "at_90pct": asdict(ninety),
            "at_100pct": asdict(at_sat), "at_200pct": asdict(overload),
            "goodput_ratio_at_2x": overload.goodput_rps / max(at_sat.goodput_rps, 1e-9),
            "ramp": [asdict(s) for s in steps]}


def _run_cases(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    import ray
    from ray import serve

    from serving.config import ServeSettings
    from serving.deployment import deploy

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH"))
                                               if p)
    ray.init(include_dashboard=False, object_store_memory=100 * 1024 * 1024, num_cpus=2,
             logging_level=logging.WARNING, log_to_driver=False)
    results: dict[str, Any] = {}
    try:
        for batching in args.batching:
            settings = ServeSettings(artifact=args.artifact, public_key=args.public_key,
                                     replicas=1, num_cpus=1, http_port=args.http_port,
                                     grpc_port=args.grpc_port, proxy_port=args.proxy_port,
                                     batching=batching == "on", app_name="bench")
            endpoints = deploy(settings)
            ep = endpoints[0]
            os.sched_setaffinity(0, {os.cpu_count() - 1 if os.cpu_count() else 0})
            for path in args.paths:
                key = f"{path}/batching-{batching}"
                if path == "direct-http":
                    factory = _partial(http_sender, f"{ep.http_url}/v1/recommend")
                elif path == "direct-grpc":
                    factory = _partial(grpc_sender, ep.grpc_target)
                else:
                    factory = _partial(http_sender, f"http://127.0.0.1:{args.proxy_port}/")
                start = args.start_rps if path != "proxy-http" else 50
                results[key] = asyncio.run(_measure_and_close(factory, start, args.step_s))
                print(json.dumps({key: {k: v for k, v in results[key].items() if k != "ramp"}}),
                      flush=True)
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    return results


def _partial(fn: Callable[[str], Any], arg: str) -> Callable[[], Any]:
    return lambda: fn(arg)


async def _measure_and_close(factory: Callable[[], Any], start: float, step_s: float
                             ) -> dict[str, Any]:
    send, close = factory()
    try:
        return await measure(send, start, step_s)
    finally:
        await close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--paths", nargs="+", default=["direct-http", "direct-grpc", "proxy-http"])
    parser.add_argument("--batching", nargs="+", default=["on", "off"])
    parser.add_argument("--start-rps", type=float, default=400)
    parser.add_argument("--step-s", type=float, default=3.0)
    parser.add_argument("--http-port", type=int, default=28100)
    parser.add_argument("--grpc-port", type=int, default=29100)
    parser.add_argument("--proxy-port", type=int, default=28000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = _run_cases(args)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
