"""The open-loop dispatcher against the in-memory fake server: no sockets, well under a second."""

from __future__ import annotations

import asyncio

import numpy as np

from bench.loadgen.dispatcher import run_open_loop
from bench.loadgen.fake import FakeTransport
from bench.loadgen.outcomes import Status
from bench.loadgen.recorder import RunHistograms, summarize
from bench.loadgen.schedule import constant


async def _run(fake: FakeTransport, rate: float, duration: float, *, stall_after_s: float = 0.0,
               stall_s: float = 0.0, max_in_flight: int = 1000, drain_s: float = 2.0):  # type: ignore[no-untyped-def]
    await fake.open()
    schedule = constant(rate, duration)
    if stall_s:
        asyncio.get_running_loop().call_later(stall_after_s, fake.stall, stall_s)
    return await run_open_loop(schedule, fake, np.zeros(len(schedule), dtype=np.int64), ["a"],
                               max_in_flight=max_in_flight, drain_s=drain_s)


def test_a_stall_delays_every_request_scheduled_behind_it() -> None:
    fake = FakeTransport(service_s=0.0005, items=("b", "a"))
    outcomes, stats = asyncio.run(_run(fake, 200, 1.0, stall_after_s=0.2, stall_s=0.25))
    h = RunHistograms.of(outcomes)
    assert outcomes.count(Status.OK) == 200
    assert summarize(h.ok).p99_ms > 150            # open loop: ~50 requests waited
    assert summarize(h.service).p50_ms < 50        # while most service times stayed short
    assert (outcomes.rank == 1).all() and stats.wall_s >= 0.99 and stats.cpus


def test_in_flight_cap_drops_instead_of_queueing() -> None:
    fake = FakeTransport(service_s=0.05)
    outcomes, _ = asyncio.run(_run(fake, 200, 0.5, max_in_flight=3))
    assert outcomes.count(Status.DROPPED) > 50 and fake.sent == len(outcomes) - outcomes.count(Status.DROPPED)
    assert (outcomes.latency_us[outcomes.status == Status.DROPPED] == 0).all()


def test_answers_still_missing_after_the_drain_are_timeouts() -> None:
    fake = FakeTransport(service_s=0.2)
    outcomes, _ = asyncio.run(_run(fake, 50, 0.2, drain_s=0.25))
    assert outcomes.count(Status.TIMEOUT) > 0
    late = outcomes.latency_us[outcomes.status == Status.TIMEOUT]
    assert (late >= 200_000).all()


def test_failures_are_recorded_with_their_status() -> None:
    fake = FakeTransport()
    fake.fail_with(Status.SHED)
    outcomes, _ = asyncio.run(_run(fake, 100, 0.2))
    assert outcomes.count(Status.SHED) == 20 and (outcomes.rank == -2).all()


def test_ticks_report_live_counts_and_can_stop_the_run() -> None:
    fake = FakeTransport(service_s=0.0005)
    seen: list[list[dict[str, int]]] = []

    def tick(buf, elapsed_s: float) -> bool:  # type: ignore[no-untyped-def]
        seen.append(buf.live_seconds(0, int(elapsed_s) + 1))
        return elapsed_s > 0.5  # an abort after half a second

    async def main():  # type: ignore[no-untyped-def]
        await fake.open()
        schedule = constant(100, 2.0)
        return await run_open_loop(schedule, fake, np.zeros(len(schedule), dtype=np.int64),
                                   ["a"], drain_s=1.0, on_tick=tick, tick_s=0.2)

    outcomes, _ = asyncio.run(main())
    assert seen and seen[0][0]["offered"] == 100 and seen[0][0]["finished"] > 0
    assert 40 <= outcomes.count(Status.OK) <= 80  # stopped after ~0.6 s of 2 s
    assert outcomes.count(Status.DROPPED) == len(outcomes) - outcomes.count(Status.OK)
