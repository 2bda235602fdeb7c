"""ONNX Runtime vs PyTorch eager, fp32 vs int8: latency at batch 1/8/32 and NDCG@10.

Each backend runs in its own spawned process (torch's threads wreck onnxruntime timings in a
shared process on 2 cores, see FIELD-NOTES). Run by hand; importing this module does no work::

    python -m bench.export_bench --artifact runs/demo/artifacts/<v> --checkpoint runs/demo/checkpoint
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from export.manifest import Manifest

BATCHES = (1, 8, 32)


def _histories(checkpoint: Path) -> tuple[list[np.ndarray], np.ndarray]:
    from bench.loadgen.workload import checkpoint_sequences  # opens a sealed file in memory

    seqs = list(checkpoint_sequences(checkpoint).values())
    return [s[:-1] for s in seqs], np.array([s[-1] for s in seqs])


def _scorer(backend: str, artifact: Path, checkpoint: Path, threads: int) -> Any:
    if backend == "torch":
        import torch

        from training.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        model = load_checkpoint(checkpoint).model.eval()

        def run_torch(ids: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(ids)).numpy()

        return run_torch
    from export.quantize import ort_scorer

    name = "model.onnx" if backend == "onnx-fp32" else "model.int8.onnx"
    return ort_scorer(artifact / name, threads=threads)


def measure(backend: str, artifact: Path, manifest: Manifest, checkpoint: Path, threads: int,
            repeats: int) -> dict[str, Any]:
    """Latency per batch size and test NDCG@10 for one backend (run in a child process);
    ``manifest`` is the artifact's, read once by the parent."""
    from training.metrics import evaluate
    from training.sequences import left_pad

    max_len = manifest.io["max_seq_len"]
    score = _scorer(backend, artifact, checkpoint, threads)
    histories, targets = _histories(checkpoint)
    padded = left_pad(histories, max_len)
    out: dict[str, Any] = {"backend": backend, "threads": threads}
    for batch in BATCHES:
        ids = padded[:batch]
        for _ in range(10):
            score(ids)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            score(ids)
            times.append((time.perf_counter() - start) * 1e3)
        out[f"batch{batch}_p50_ms"] = round(float(np.percentile(times, 50)), 3)
        out[f"batch{batch}_p99_ms"] = round(float(np.percentile(times, 99)), 3)
    result = evaluate(lambda h: score(left_pad(h, max_len)), histories, targets)
    out["ndcg@10"] = round(result.unfiltered.ndcg, 4)
    out["hr@10"] = round(result.unfiltered.hr, 4)
    return out


def _child(args: tuple[str, Path, Manifest, Path, int, int], queue: Any) -> None:
    queue.put(measure(*args))


def run(artifact: Path, checkpoint: Path, threads: int = 1, repeats: int = 200,
        timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Measure every available backend, each in a fresh process."""
    from export.manifest import read_manifest

    manifest = read_manifest(artifact)
    listed = {entry.path for entry in manifest.files}
    backends = ["torch", "onnx-fp32"] + (["onnx-int8"] if "model.int8.onnx" in listed else [])
    ctx = mp.get_context("spawn")
    rows = []
    for backend in backends:
        queue = ctx.Queue()
        args = (backend, artifact, manifest, checkpoint, threads, repeats)
        proc = ctx.Process(target=_child, args=(args, queue))
        proc.start()
        try:
            rows.append(queue.get(timeout=timeout_s))
        except Empty as exc:
            proc.kill()
            raise RuntimeError(f"{backend}: no result within {timeout_s} s (exit code "
                               f"{proc.exitcode}); see its traceback above") from exc
        finally:
            proc.join(timeout=10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rows = run(args.artifact, args.checkpoint, args.threads, args.repeats)
    base = next(r for r in rows if r["backend"] == "torch")
    print(f"{'backend':<10} " + " ".join(f"b{b} p50/p99 ms".rjust(18) for b in BATCHES)
          + "   speedup@b1  NDCG@10  HR@10")
    for r in rows:
        cells = " ".join(f"{r[f'batch{b}_p50_ms']:.3f}/{r[f'batch{b}_p99_ms']:.3f}".rjust(18)
                         for b in BATCHES)
        speed = base["batch1_p50_ms"] / r["batch1_p50_ms"]
        print(f"{r['backend']:<10} {cells}   {speed:9.2f}x  {r['ndcg@10']:.4f}  {r['hr@10']:.4f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
