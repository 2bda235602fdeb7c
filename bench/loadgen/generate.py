"""One generator: open the transport, warm up, (wait for the common start), run, close.

Shared by the in-process path and each child of :mod:`bench.loadgen.multiproc`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from bench.loadgen.dispatcher import GeneratorStats, run_open_loop
from bench.loadgen.outcomes import OutcomeBuffer, Outcomes
from bench.loadgen.schedule import Schedule, constant
from bench.loadgen.transports import TransportSpec, make_transport
from bench.loadgen.workload import Workload

__all__ = ["GeneratorJob", "run_event_loop", "run_job"]

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class GeneratorJob:
    """Everything one generator needs (picklable): its share of the schedule and of the users."""

    transport: TransportSpec
    workload: Workload
    schedule: Schedule
    picks: np.ndarray
    max_in_flight: int = 1000
    warmup_s: float = 1.0
    cpu: int | None = None
    tick_s: float | None = None


Tick = Callable[[OutcomeBuffer, float], bool | None]


async def _run(job: GeneratorJob, wait_start: Callable[[], float | None],
               on_tick: Tick | None = None) -> tuple[Outcomes, GeneratorStats]:
    targets, relevant = job.workload.targets(), job.workload.relevant()
    transport = make_transport(job.transport, job.workload.requests(), targets)
    await transport.open()
    try:
        if job.warmup_s > 0:
            warm = constant(min(job.schedule.rate_rps, 200.0), job.warmup_s)
            picks = job.workload.order(len(warm), seed=7)
            await run_open_loop(warm, transport, picks, targets, max_in_flight=job.max_in_flight,
                                drain_s=job.transport.timeout_s + 1, relevant=relevant)
        start_at = wait_start()
        return await run_open_loop(job.schedule, transport, job.picks, targets,
                                   max_in_flight=job.max_in_flight,
                                   drain_s=job.transport.timeout_s + 1, start_at=start_at,
                                   on_tick=on_tick if job.tick_s else None,
                                   tick_s=job.tick_s or 1.0, relevant=relevant)
    finally:
        await transport.close()


def run_event_loop(main: Coroutine[Any, Any, T], uvloop_ok: bool = True) -> T:
    """Run ``main`` on uvloop when installed and allowed, else on asyncio's default loop."""
    factory = None
    if uvloop_ok:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover
            factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def run_job(job: GeneratorJob, wait_start: Callable[[], float | None] = lambda: None,
            on_tick: Tick | None = None) -> tuple[Outcomes, GeneratorStats]:
    """Run one generator to completion in this process (pinned to ``job.cpu`` if set).

    gRPC runs on asyncio's own loop (grpc.aio does not support uvloop); HTTP on uvloop.
    """
    if job.cpu is not None:
        os.sched_setaffinity(0, {job.cpu})
    return run_event_loop(_run(job, wait_start, on_tick),
                          uvloop_ok="grpc" not in job.transport.kind)
