"""The open-loop dispatcher: fire each request at its scheduled time, never wait for answers.

One coroutine walks the schedule; each request runs as its own task, so a slow answer never
delays the next send. When ``max_in_flight`` requests are outstanding at a send time, that
request is *dropped* (counted, not queued: queueing would hide the overload). Latency runs
from the intended send time; the lag of the actual send is recorded beside it.

Request indexes follow the workload: below ``len(targets)`` a recommend, scored by the rank of
its held-out item; from there on a search, scored by Recall@10 / NDCG@10 against
``relevant[index - len(targets)]``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from bench.loadgen.outcomes import OutcomeBuffer, Outcomes, RequestKind, Status
from bench.loadgen.quality import UNSCORED, rank_of, search_scores
from bench.loadgen.schedule import Schedule
from bench.loadgen.transports import Transport

__all__ = ["GeneratorStats", "run_open_loop"]


@dataclass(frozen=True)
class GeneratorStats:
    """The generator's own cost: CPU seconds over wall seconds, on which cores."""

    wall_s: float
    cpu_s: float
    cpu_share: float
    cpus: tuple[int, ...]


async def run_open_loop(schedule: Schedule, transport: Transport, picks: np.ndarray,
                        targets: Sequence[str | None], *, max_in_flight: int = 1000,
                        drain_s: float = 5.0, start_at: float | None = None,
                        on_tick: Callable[[OutcomeBuffer, float], bool | None] | None = None,
                        tick_s: float = 1.0, relevant: Sequence[Collection[str]] = ()
                        ) -> tuple[Outcomes, GeneratorStats]:
    """Run ``schedule`` against an opened ``transport``; request ``i`` replays ``picks[i]``.

    ``targets`` holds the held-out item of each recommend request, ``relevant`` the relevant
    items of each search request (indexed after the recommends).

    ``start_at`` is a ``time.monotonic()`` instant shared by generator processes (default:
    now). After the last send, answers get ``drain_s`` more seconds; the rest are timeouts.
    ``on_tick(buffer, elapsed_s)`` is called every ``tick_s`` while the run lasts (live
    progress; it must be quick); when it returns True no further request is sent (the rest are
    counted as dropped): a drill's abort.
    """
    buf = OutcomeBuffer(schedule.offsets_s)
    n_recommend = len(targets)
    kinds = np.asarray(picks[:len(buf.kind)]) >= n_recommend  # dropped searches count too
    buf.kind[:len(kinds)] = np.where(kinds, RequestKind.SEARCH, RequestKind.RECOMMEND)
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, intended: float) -> None:
        nonlocal in_flight
        sent = time.monotonic()
        index = int(picks[i])
        try:
            answer = await transport.send(index)
        except asyncio.CancelledError:
            end = time.monotonic()
            buf.done(i, Status.TIMEOUT, sent - intended, end - intended, end - sent)
            raise
        finally:
            in_flight -= 1
        end = time.monotonic()
        ok = answer.status == Status.OK
        if index >= n_recommend:
            rank = UNSCORED
            if ok:
                buf.searched(i, *search_scores(relevant[index - n_recommend], answer.item_ids))
        else:
            rank = rank_of(targets[index], answer.item_ids) if ok else UNSCORED
        buf.done(i, answer.status, sent - intended, end - intended, end - sent,
                 answer.degraded, rank)

    cpu0, wall0 = time.process_time(), time.monotonic()
    start = time.monotonic() if start_at is None else start_at
    loop = asyncio.get_running_loop()

    stop = False

    async def ticker() -> None:
        nonlocal stop
        assert on_tick is not None
        while True:
            await asyncio.sleep(tick_s)
            stop = bool(on_tick(buf, time.monotonic() - start)) or stop

    ticks = loop.create_task(ticker()) if on_tick is not None else None
    for i, offset in enumerate(schedule.offsets_s.tolist()):
        intended = start + offset
        delay = intended - time.monotonic()
        await asyncio.sleep(max(0, delay))
        if stop:
            for rest in range(i, len(schedule.offsets_s)):
                buf.drop(rest)
            break
        if in_flight >= max_in_flight:
            buf.drop(i)
            continue
        in_flight += 1
        task = loop.create_task(one(i, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if ticks is not None:
        ticks.cancel()
        await asyncio.gather(ticks, return_exceptions=True)
        on_tick(buf, time.monotonic() - start)  # type: ignore[misc]
    wall, cpu = time.monotonic() - max(start, wall0), time.process_time() - cpu0
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    return buf.freeze(), GeneratorStats(round(wall, 3), round(cpu, 3),
                                        round(cpu / wall, 3) if wall > 0 else 0.0, cpus)
