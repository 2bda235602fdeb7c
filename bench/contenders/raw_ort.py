"""The limit of this machine: onnxruntime called in process, back to back, batch 1.

Each call does what a server does for one request minus the network: look up the history,
left-pad, run the session, take the top K without seen items, build the answer. Runs in a
spawned process (optionally pinned to one core) so nothing else in the suite's process
(torch threads, the generator) disturbs it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["measure", "run_raw"]


def measure(artifact: Path, workload: Any, duration_s: float, threads: int = 1,
            model_file: str = "model.onnx") -> dict[str, Any]:
    """Calls per second, per-call latency (HdrHistogram) and HR/NDCG@10 over ``duration_s``."""
    import numpy as np
    import onnxruntime as ort

    from bench.contenders.catalog import answer, left_pad_one, load_catalog
    from bench.loadgen.quality import quality_of, rank_of
    from bench.loadgen.recorder import new_histogram, summarize

    catalog = load_catalog(artifact)
    from serving.runner import session_options

    session = ort.InferenceSession(str(artifact / model_file), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    requests, targets = workload.requests(), workload.targets()
    order = workload.order(max(len(requests), 1000), seed=0)
    hist, ranks = new_histogram(), []

    def call(i: int) -> int:
        req = requests[i]
        query = catalog.resolve(req)
        scores = session.run(None, {"input_ids": left_pad_one(query.seq, catalog.max_seq_len)})[0][0]
        body = answer(catalog, scores, query, "raw-ort")
        return rank_of(targets[i], [item["item_id"] for item in body["items"]])

    for i in order[:200]:  # warm-up
        call(int(i))
    calls, cpu0 = 0, time.process_time()
    start = time.perf_counter_ns()
    end = start + int(duration_s * 1e9)
    now = start
    while now < end:
        i = int(order[calls % len(order)])
        t0 = time.perf_counter_ns()
        ranks.append(call(i))
        now = time.perf_counter_ns()
        hist.record_value(max(1, (now - t0) // 1000))
        calls += 1
    wall = (now - start) / 1e9
    return {"contender": "raw-ort", "model_file": model_file, "threads": threads,
            "calls": calls, "throughput_rps": round(calls / wall, 1),
            "cpu_share": round((time.process_time() - cpu0) / wall, 3),
            "latency_ms": asdict(summarize(hist)), "quality": asdict(quality_of(np.array(ranks))),
            "cpus": sorted(os.sched_getaffinity(0))}


def _child(args: tuple[Any, ...], cpu: int | None, conn: Any) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        conn.send(("done", measure(*args)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", repr(exc)))


def run_raw(artifact: Path, workload: Any, duration_s: float = 5.0, threads: int = 1,
            model_file: str = "model.onnx", cpu: int | None = None) -> dict[str, Any]:
    """:func:`measure` in a fresh spawned process (pinned to ``cpu`` if given)."""
    from bench.loadgen.errors import ContenderError

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=((artifact, workload, duration_s, threads, model_file),
                                            cpu, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(duration_s + 120):
            raise ContenderError("raw-ort measurement did not finish")
        kind, payload = parent.recv()
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    if kind != "done":
        raise ContenderError(f"raw-ort measurement failed: {payload}")
    return dict(payload)
