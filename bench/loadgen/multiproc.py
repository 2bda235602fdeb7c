"""Several generator processes (when one core cannot keep the schedule), merged into one run.

Each child gets every n-th request of the schedule (intended times unchanged), warms up, says
it is ready, then all start at one ``time.monotonic()`` instant (CLOCK_MONOTONIC is shared by
the processes of a machine). Children send back their outcome rows and their HdrHistograms
encoded; the parent decodes and merges the histograms and concatenates the rows.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from typing import Any

from bench.loadgen.dispatcher import GeneratorStats
from bench.loadgen.errors import GeneratorError
from bench.loadgen.generate import GeneratorJob, run_job
from bench.loadgen.outcomes import Outcomes
from bench.loadgen.recorder import RunHistograms

__all__ = ["START_DELAY_S", "run_processes"]

START_DELAY_S = 0.2
_READY_TIMEOUT_S = 120.0


def _child(job: GeneratorJob, conn: Any) -> None:
    def wait_start() -> float:
        conn.send(("ready", None))
        return float(conn.recv())

    try:
        outcomes, stats = run_job(job, wait_start)
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


def run_processes(jobs: list[GeneratorJob], run_timeout_s: float
                  ) -> tuple[Outcomes, RunHistograms, list[GeneratorStats]]:
    """Run one spawned process per job, started together; merged rows, histograms and stats."""
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
        for conn in pipes:
            conn.send(start_at)
        results = [_expect(conn, "done", run_timeout_s) for conn in pipes]
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    outcomes = Outcomes.concat([r[0] for r in results])
    merged = RunHistograms.merge(RunHistograms.decode(r[1]) for r in results)
    return outcomes, merged, [r[2] for r in results]
