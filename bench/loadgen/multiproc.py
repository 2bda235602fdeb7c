"""Several generator processes (when one core cannot keep the schedule), merged into one run.

Each child gets every n-th request of the schedule (intended times unchanged), warms up, says
it is ready, then all start at one ``time.monotonic()`` instant (CLOCK_MONOTONIC is shared by
the processes of a machine). Children send back their outcome rows and their HdrHistograms
encoded; the parent decodes and merges the histograms and concatenates the rows. Jobs with
``tick_s`` also send live per-second counts while they run (``on_progress``), which drills
use for progress and abort conditions.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench.loadgen.dispatcher import GeneratorStats
from bench.loadgen.errors import GeneratorError
from bench.loadgen.generate import GeneratorJob, run_job
from bench.loadgen.outcomes import Outcomes
from bench.loadgen.recorder import RunHistograms

__all__ = ["START_DELAY_S", "Progress", "run_processes"]

Progress = Callable[[dict[int, dict[str, int]]], None]

START_DELAY_S = 0.2
_READY_TIMEOUT_S = 120.0


def _child(job: GeneratorJob, conn: Any) -> None:
    def wait_start() -> float:
        conn.send(("ready", None))
        return float(conn.recv())

    def tick(buf: Any, elapsed_s: float) -> bool:
        # recent seconds only: older ones were settled and sent already
        first = int(elapsed_s - job.transport.timeout_s) - 3
        conn.send(("progress", buf.live_seconds(first, int(elapsed_s) + 1)))
        return bool(conn.poll() and conn.recv() == "stop")

    try:
        outcomes, stats = run_job(job, wait_start, tick if job.tick_s else None)
        conn.send(("done", (outcomes, RunHistograms.of(outcomes).encode(), stats)))
    except BaseException:  # noqa: BLE001 - report anything to the parent, then exit
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _expect(conn: Any, what: str, timeout_s: float) -> Any:
    if not conn.poll(timeout_s):
        raise GeneratorError(f"a generator process sent no {what!r} within {timeout_s:.0f} s")
    kind, payload = conn.recv()
    if kind == "error":
        raise GeneratorError(f"a generator process failed:\n{payload}")
    if kind != what:
        raise GeneratorError(f"expected {what!r} from a generator process, found {kind!r}")
    return payload


def _collect(pipes: list[Any], timeout_s: float, takers: list[Callable[[Any], None]],
             should_stop: Callable[[], bool] | None = None) -> list[Any]:
    """Every child's "done" payload, forwarding progress from all children as it comes, and
    telling every child to stop sending once ``should_stop()`` is true."""
    from multiprocessing.connection import wait

    results: dict[int, Any] = {}
    deadline, stopped = time.monotonic() + timeout_s, False
    while len(results) < len(pipes):
        if not stopped and should_stop is not None and should_stop():
            stopped = True
            for j, conn in enumerate(pipes):
                if j not in results:
                    conn.send("stop")
        waiting = [c for j, c in enumerate(pipes) if j not in results]
        if time.monotonic() > deadline:
            raise GeneratorError(f"a generator process sent no 'done' within {timeout_s:.0f} s")
        ready = wait(waiting, min(0.5, max(0.0, deadline - time.monotonic())))
        for conn in ready:
            j = pipes.index(conn)
            kind, payload = conn.recv()
            if kind == "progress":
                takers[j](payload)
            elif kind == "done":
                results[j] = payload
            elif kind == "error":
                raise GeneratorError(f"a generator process failed:\n{payload}")
            else:
                raise GeneratorError(f"expected 'done' from a generator process, found {kind!r}")
    return [results[j] for j in range(len(pipes))]


def run_processes(jobs: list[GeneratorJob], run_timeout_s: float, *,
                  on_start: Callable[[float], None] | None = None,
                  on_progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  ) -> tuple[Outcomes, RunHistograms, list[GeneratorStats]]:
    """Run one spawned process per job, started together; merged rows, histograms and stats.

    ``on_start(start_at)`` gets the common ``time.monotonic()`` start instant before the run;
    ``on_progress({second: counts})`` gets the live per-second counts summed over processes;
    once ``should_stop()`` is true the children send no more requests (jobs with ``tick_s``).
    """
    live: list[dict[int, dict[str, int]]] = [{} for _ in jobs]

    def forward(j: int) -> Callable[[Any], None]:
        def take(rows: list[dict[str, int]]) -> None:
            live[j].update({r["second"]: r for r in rows})
            if on_progress is not None:
                merged: dict[int, dict[str, int]] = {}
                for part in live:
                    for sec, row in part.items():
                        acc = merged.setdefault(sec, dict.fromkeys(row, 0) | {"second": sec})
                        for key, value in row.items():
                            if key != "second":
                                acc[key] += value
                on_progress(merged)
        return take

    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    try:
        for job in jobs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(job, child), daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        for conn in pipes:
            _expect(conn, "ready", _READY_TIMEOUT_S)
        start_at = time.monotonic() + START_DELAY_S
        if on_start is not None:
            on_start(start_at)
        for conn in pipes:
            conn.send(start_at)
        results = _collect(pipes, run_timeout_s, [forward(j) for j in range(len(pipes))],
                           should_stop)
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    outcomes = Outcomes.concat([r[0] for r in results])
    merged = RunHistograms.merge(RunHistograms.decode(r[1]) for r in results)
    return outcomes, merged, [r[2] for r in results]
