"""Product search figures: encoder latency, top-K catalogue scaling, quality, blend effect.

Four parts, each measured in spawned processes with one thread (torch-free; onnxruntime with
spinning off, BLAS limited by ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` set before numpy is
imported there, see FIELD-NOTES):

* ``encoder``: tokenise + encode at batch 1, 8, 32 over the artifact's held-out queries, fp32
  and int8 (when shipped), end-to-end ``SearchModel.rank`` at batch 1, the BM25 fallback, and
  batch 1 "under load": ``--load-procs`` such processes ranking at once (one per core);
* ``scaling``: exact top-10 by matrix product (``retrieval.exact_search``) over 10^4..10^6
  random unit vectors, batch 1 and 32, against the bare matrix product as baseline; BM25 build
  and query time over synthetic item texts;
* ``quality``: Recall@10 / NDCG@10 on the test queries of BM25, fp32 and int8, beside the
  figures the artifact's manifest recorded at export;
* ``blend``: HR@10 / NDCG@10 of each held-out user's next item when searching its genre
  (or whole category) with the user's history blended in at several weights
  (``--checkpoint`` needed for the held-out items).

Run by hand; importing this module does no work::

    python -m bench.search_bench --artifact /tmp/bench-search-art \\
        --checkpoint runs/demo/checkpoint --out runs/figures/search

Prints the results as JSON on stdout (progress on stderr) and writes ``search_bench.json``
and ``search_scaling.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.search_stats import (
    DIM,
    QUERY_KINDS,
    K,
    best_weight,
    bm25_estimate_s,
    per_query,
    personal_query,
    scaling_repeats,
    summarize,
    synthetic_items,
    synthetic_queries,
    target_metrics,
    timed,
    timed_interleaved,
    unit_vectors,
    windows,
)

if TYPE_CHECKING:
    import pandas as pd

    from export.manifest import Manifest

BATCHES = (1, 8, 32)
SIZES = (10_000, 100_000, 1_000_000)
BM25_SIZES = (10_000, 100_000, 1_000_000)
BM25_BUDGET_S = 60.0  # a BM25 size whose build is estimated longer than this is skipped
BLEND_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5)
MIN_QUERIES = 300
PARTS = ("encoder", "scaling", "quality", "blend")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def measure_topk(n_items: int, dim: int = DIM, k: int = K, batches: Sequence[int] = (1, 32),
                 seed: int = 0) -> dict[str, Any]:
    """Exact top-``k`` over ``n_items`` random unit vectors: per call and per query, and the
    bare matrix product at batch 1 as the baseline it is compared with."""
    from retrieval import exact_search

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    items = unit_vectors(rng, n_items, dim)
    out: dict[str, Any] = {"n_items": n_items, "dim": dim, "k": k,
                           "catalogue_mb": round(items.nbytes / 2**20, 1),
                           "generate_s": round(time.perf_counter() - t0, 2)}
    for b in batches:
        calls = scaling_repeats(n_items, b)
        queries = unit_vectors(rng, calls * b, dim).reshape(calls, b, dim)
        times = timed(lambda q: exact_search(q, items, k), list(queries), warmup=3)
        out[f"batch{b}"] = per_query(summarize(times), b)
    queries = unit_vectors(rng, scaling_repeats(n_items, 1), dim)[:, None, :]
    out["matmul_batch1"] = summarize(timed(lambda q: q @ items.T, list(queries), warmup=3))
    out["topk_over_matmul_p50"] = round(out["batch1"]["p50_ms"] / out["matmul_batch1"]["p50_ms"],
                                        2)
    return out


def measure_bm25(n_items: int, n_queries: int = 200, seed: int = 0) -> dict[str, Any]:
    """BM25 build time and query latency over ``n_items`` synthetic item texts."""
    from retrieval import BM25Index

    t0 = time.perf_counter()
    texts = synthetic_items(n_items, seed)
    generate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = BM25Index.build(texts)
    build_s = time.perf_counter() - t0
    queries = synthetic_queries(texts, n_queries, seed)
    times = timed(lambda q: index.search(q, K), queries)
    return {"n_items": n_items, "generate_s": round(generate_s, 2), "build_s": round(build_s, 2),
            "vocab": len(index.vocab), "postings": len(index.docs), "query": summarize(times)}


def measure_encoder(artifact: Path, manifest: Manifest, variant: str, queries: list[str],
                    test: list[tuple[str, list[int]]]) -> dict[str, Any]:
    """Latency of one encoder variant (``fp32``/``int8``) and its test quality; fp32 also
    times the BM25 fallback and measures BM25 quality."""
    from tokenizers import Tokenizer

    from serving.search import SEARCH_DIR, SearchModel, SearchQuery

    model = SearchModel.load(artifact, manifest, threads=1, providers=["CPUExecutionProvider"],
                             use_int8=variant == "int8")
    tokenizer = Tokenizer.from_file(str(artifact / SEARCH_DIR / "tokenizer.json"))
    one = [[q] for q in queries]
    single: dict[str, Callable[[Any], object]] = {
        "tokenise_batch1": tokenizer.encode_batch, "encode_batch1": model.encode,
        "rank_batch1": lambda q: model.rank([SearchQuery(q[0], K)])}
    if variant == "fp32":
        single["fallback_batch1"] = lambda q: model.fallback(SearchQuery(q[0], K))
    out: dict[str, Any] = {"variant": variant, "queries": len(queries)}
    for name, times in timed_interleaved(single, one).items():
        out[name] = summarize(times)
    for b in BATCHES[1:]:
        calls = windows(queries, b, max(40, MIN_QUERIES // b))
        out[f"encode_batch{b}"] = per_query(summarize(timed(model.encode, calls)), b)
    texts, relevant = [t for t, _ in test], [set(r) for _, r in test]
    ranked = [r.indices.tolist() for w in windows(texts, 32, math.ceil(len(texts) / 32))
              for r in model.rank([SearchQuery(t, K) for t in w])][:len(texts)]
    out["quality"] = _quality(ranked, relevant)
    if variant == "fp32":
        from retrieval import BM25Index

        index = BM25Index.build(model.texts)
        out["bm25_quality"] = _quality([(index.search(t, K)[0] + 1).tolist() for t in texts],
                                       relevant)
    return out


def _quality(ranked: list[list[int]], relevant: list[set[int]]) -> dict[str, float]:
    from retrieval import ndcg_at_k, recall_at_k

    return {"recall@10": round(recall_at_k(ranked, relevant, K), 4),
            "ndcg@10": round(ndcg_at_k(ranked, relevant, K), 4), "queries": len(ranked)}


def load_worker(artifact: Path, manifest: Manifest, variant: str, queries: list[str],
                barrier: Any, duration_s: float) -> dict[str, Any]:
    """Rank batch-1 queries for ``duration_s`` once every worker is loaded (``barrier``)."""
    from serving.search import SearchModel, SearchQuery

    model = SearchModel.load(artifact, manifest, threads=1, providers=["CPUExecutionProvider"],
                             use_int8=variant == "int8")
    for q in queries[:5]:
        model.rank([SearchQuery(q, K)])
    barrier.wait(timeout=300)
    times, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < duration_s:
        t0 = time.perf_counter()
        model.rank([SearchQuery(queries[i % len(queries)], K)])
        times.append((time.perf_counter() - t0) * 1e3)
        i += 1
    return {"times_ms": times, "elapsed_s": time.perf_counter() - start}


def blend_splits(histories: Sequence[np.ndarray], targets: Sequence[int]
                 ) -> dict[str, tuple[list[np.ndarray], list[int]]]:
    """Histories and next items to choose the blend weight on (``validation``: each history
    less its last item, which is the target) and to report it on (``test``: the held-out item).

    Example:
        >>> s = blend_splits([np.array([1, 2]), np.array([3])], [7, 8])
        >>> [h.tolist() for h in s["validation"][0]], s["validation"][1], s["test"][1]
        ([[1]], [2], [7, 8])
    """
    valid = [h for h in histories if len(h) >= 2]
    test = [(h, t) for h, t in zip(histories, targets, strict=True) if len(h)]
    return {"validation": ([h[:-1] for h in valid], [int(h[-1]) for h in valid]),
            "test": ([h for h, _ in test], [int(t) for _, t in test])}


def _search_all(runner: Any, queries: Sequence[Any], weight: float, batch: int
                ) -> list[list[int]]:
    ranked: list[list[int]] = []
    for start in range(0, len(queries), batch):
        ranked += [r.indices.tolist()
                   for r in runner.search_batch(queries[start:start + batch], weight)]
    return ranked


def measure_blend(artifact: Path, public_key: Path, checkpoint: Path,
                  weights: Sequence[float] = BLEND_WEIGHTS, batch: int = 32) -> dict[str, Any]:
    """For each query kind, HR@10 / NDCG@10 of each user's next item when searching its genre
    (or category) with the user's history blended in at each weight, on validation (to pick
    the weight) and test; the recommender alone is the baseline. Also what each weight costs
    the held-out search queries when a (random) user's history is blended into them."""
    import pandas as pd

    from bench.loadgen.workload import artifact_pseudonymiser, load_targets
    from serving.runner import ModelRunner
    from serving.search import SearchQuery
    from serving.source import DirectorySource

    runner = ModelRunner.load(DirectorySource(str(artifact), str(public_key)).fetch_verified(),
                              threads=1, providers=["CPUExecutionProvider"])
    if runner.search is None:
        raise RuntimeError(f"{artifact} carries no search model (no io.search in its manifest)")
    with np.load(artifact / "histories.npz", allow_pickle=False) as npz:
        user_ids = npz["user_ids"].tolist()
        histories = np.split(npz["flat"], npz["offsets"])
    items = pd.read_parquet(artifact / "items.parquet").sort_values("index")
    categories = items["category"].astype(str).tolist()
    key_id, pseudonymiser = artifact_pseudonymiser(artifact)
    if key_id is not None and pseudonymiser is None:
        raise RuntimeError(f"{artifact}: user ids are pseudonymised with key id {key_id} and the "
                           "pseudonym key at hand is missing or another; set "
                           "RECDRILL_PSEUDONYM_KEY to the key the artifact was exported with")
    splits = blend_splits(histories, load_targets(checkpoint, user_ids, histories, pseudonymiser))
    out: dict[str, Any] = {"users": {s: len(g) for s, (_, g) in splits.items()},
                           "recommender_only": {}}
    for split, (seqs, goal) in splits.items():
        ranked = []
        for start in range(0, len(seqs), batch):
            scores = runner.item_scores(seqs[start:start + batch])
            ranked += (np.argsort(-scores, axis=1, kind="stable")[:, :K] + 1).tolist()
        out["recommender_only"][split] = target_metrics(ranked, goal)
    for kind in QUERY_KINDS:
        out[kind] = {}
        for split, (seqs, goal) in splits.items():
            texts = [personal_query(categories[t - 1], kind) or "movie" for t in goal]
            queries = [SearchQuery(text, K, seq) for text, seq in zip(texts, seqs, strict=True)]
            rows = [{"weight": w, **target_metrics(_search_all(runner, queries, w, batch), goal)}
                    for w in weights]
            _say(f"blend {kind} {split}: {[(r['weight'], r['ndcg@10']) for r in rows]}")
            out[kind][split] = rows
            out[kind]["distinct_queries"] = len(set(texts))
        out[kind]["best_weight_validation"] = best_weight(out[kind]["validation"])
    _, test = read_queries(artifact, items)
    rng = np.random.default_rng(0)
    seqs = splits["test"][0]
    queries = [SearchQuery(text, K, seqs[int(rng.integers(len(seqs)))]) for text, _ in test]
    relevant = [set(rel) for _, rel in test]
    out["search_queries_with_history"] = [
        {"weight": w, **_quality(_search_all(runner, queries, w, batch), relevant)}
        for w in weights]
    return out


# -- orchestration --------------------------------------------------------------------------

@contextmanager
def _single_threaded_env() -> Iterator[None]:
    """BLAS/OpenMP limited to one thread in children spawned inside (they inherit os.environ
    at start, before they import numpy)."""
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    os.environ.update({v: "1" for v in THREAD_VARS})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _child(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], slot: int,
           queue: Any) -> None:
    try:
        load_before = os.getloadavg()[0]
        result = fn(*args)
        result["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        queue.put((slot, result, None))
    except BaseException as exc:
        queue.put((slot, None, f"{type(exc).__name__}: {exc}"))
        raise


def spawn(jobs: Sequence[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]],
          timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """Run ``fn(*args)`` of every job in its own spawned, single-threaded process, all at
    once; their results in job order. RuntimeError names a job that failed or timed out."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with _single_threaded_env():
        procs = [ctx.Process(target=_child, args=(fn, args, slot, queue))
                 for slot, (fn, args) in enumerate(jobs)]
        for proc in procs:
            proc.start()
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    deadline = time.monotonic() + timeout_s
    try:
        for _ in jobs:
            slot, result, error = queue.get(timeout=max(1.0, deadline - time.monotonic()))
            if error is not None:
                raise RuntimeError(f"{jobs[slot][0].__name__}{jobs[slot][1][:1]}: {error}")
            results[slot] = result
    except Empty as exc:
        raise RuntimeError(f"no result within {timeout_s} s (exit codes "
                           f"{[p.exitcode for p in procs]}); see the traceback above") from exc
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return [r for r in results if r is not None]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def read_queries(artifact: Path, items: pd.DataFrame) -> tuple[list[str],
                                                               list[tuple[str, list[int]]]]:
    """Held-out query texts (test first, then validation) and the test queries with their
    relevant items as 1-based indices (queries none of whose items exist are left out)."""
    import pandas as pd

    frame = pd.read_parquet(artifact / "search" / "queries.parquet")
    index_of = dict(zip(items["item_id"].astype(str), items["index"].astype(int), strict=True))
    frame = frame.assign(order=(frame["split"] != "test").astype(int)).sort_values(
        "order", kind="stable")
    texts = frame["query"].astype(str).tolist()
    test = []
    for text, split, relevant in zip(frame["query"], frame["split"], frame["relevant"],
                                     strict=True):
        rows = [index_of[str(i)] for i in relevant if str(i) in index_of]
        if split == "test" and rows:
            test.append((str(text), rows))
    return texts, test


RATIO_KEYS = tuple(f"encode_batch{b}" for b in BATCHES) + ("rank_batch1",)


def median_ratios(rounds: Sequence[dict[str, dict[str, Any]]], over: str = "fp32",
                  under: str = "int8", keys: Sequence[str] = RATIO_KEYS) -> dict[str, float]:
    """Median over rounds of ``under``'s p50 over ``over``'s p50, per key: each round ran the
    two back to back, so a ratio compares like with like on a shared machine.

    Example:
        >>> r = [{"fp32": {"a": {"p50_ms": 2.0}}, "int8": {"a": {"p50_ms": 1.0}}},
        ...      {"fp32": {"a": {"p50_ms": 4.0}}, "int8": {"a": {"p50_ms": 3.0}}}]
        >>> median_ratios(r, keys=["a"])
        {'a': 0.625}
    """
    return {key: round(float(np.median([r[under][key]["p50_ms"] / r[over][key]["p50_ms"]
                                        for r in rounds])), 3) for key in keys}


def run_encoder(artifact: Path, manifest: Manifest, load_procs: int = 2, load_s: float = 10.0,
                rounds: int = 1) -> dict[str, Any]:
    """Encoder, rank and fallback latency plus quality, each variant in its own process, the
    variants alternating for ``rounds`` rounds; then batch-1 ranking with ``load_procs``
    processes at once."""
    import pandas as pd

    items = pd.read_parquet(artifact / "items.parquet", columns=["index", "item_id"])
    texts, test = read_queries(artifact, items)
    queries = (texts * math.ceil(MIN_QUERIES / max(1, len(texts))))[:max(MIN_QUERIES, len(texts))]
    variants = ["fp32"] + (["int8"] if (artifact / "search" / "encoder.int8.onnx").exists()
                           else [])
    out: dict[str, Any] = {"held_out_queries": len(texts), "timed_queries": len(queries),
                           "test_queries": len(test), "variants": {}, "rounds": []}
    for r in range(rounds):
        this: dict[str, dict[str, Any]] = {}
        for variant in variants:
            _say(f"encoder {variant}, round {r + 1}/{rounds}: {len(queries)} queries at "
                 f"batch {BATCHES}")
            this[variant] = spawn([(measure_encoder,
                                    (artifact, manifest, variant, queries, test))])[0]
            out["variants"].setdefault(variant, this[variant])
        out["rounds"].append({v: {k: x for k, x in res.items() if k in RATIO_KEYS}
                              for v, res in this.items()})
    if "int8" in variants:
        out["int8_over_fp32_p50"] = median_ratios(out["rounds"])
    if load_procs > 0:
        _say(f"under load: {load_procs} processes ranking batch-1 queries for {load_s} s")
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(load_procs)
        parts = spawn([(load_worker, (artifact, manifest, "fp32", queries[p::load_procs],
                                      barrier, load_s)) for p in range(load_procs)])
        merged = [t for p in parts for t in p["times_ms"]]
        out["under_load"] = {"processes": load_procs, "variant": "fp32",
                             "rank_batch1": summarize(merged),
                             "throughput_qps": round(len(merged) / max(
                                 p["elapsed_s"] for p in parts), 1)}
    return out


def run_scaling(sizes: Sequence[int] = SIZES, bm25_sizes: Sequence[int] = BM25_SIZES,
                budget_s: float = BM25_BUDGET_S) -> dict[str, Any]:
    """Top-K per catalogue size, then BM25 per size while its build fits ``budget_s``."""
    topk = []
    for n in sizes:
        _say(f"top-K scaling: {n} items × {DIM}")
        topk.append(spawn([(measure_topk, (n,))])[0])
    bm25: list[dict[str, Any]] = []
    for n in bm25_sizes:
        if bm25:
            estimate = bm25_estimate_s(bm25[-1], n)
            if estimate > budget_s:
                bm25.append({"n_items": n, "skipped": f"estimated {estimate:.0f} s > "
                                                       f"{budget_s:.0f} s"})
                break
        _say(f"BM25 scaling: {n} synthetic items")
        bm25.append(spawn([(measure_bm25, (n,))], timeout_s=budget_s * 3)[0])
    return {"topk": topk, "bm25": bm25}


def plot_scaling(scaling: dict[str, Any], path: Path) -> Path:
    """Per-query latency (p50 solid, p99 dashed) against catalogue size, log–log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    rows = scaling["topk"]
    n = [r["n_items"] for r in rows]
    for i, (key, label) in enumerate((("batch1", "exact top-10, batch 1"),
                                      ("batch32", "exact top-10, batch 32 (per query)"))):
        if all(key in r for r in rows):
            ax.plot(n, [r[key]["query_p50_ms"] for r in rows], "o-", color=f"C{i}", label=label)
            ax.plot(n, [r[key]["query_p99_ms"] for r in rows], "x--", color=f"C{i}", alpha=0.6)
    ax.plot(n, [r["matmul_batch1"]["p50_ms"] for r in rows], ":", color="grey",
            label="matrix product alone, batch 1")
    done = [r for r in scaling.get("bm25", []) if "query" in r]
    if done:
        ax.plot([r["n_items"] for r in done], [r["query"]["p50_ms"] for r in done], "s-",
                color="C2", label="BM25 query (synthetic texts)")
        ax.plot([r["n_items"] for r in done], [r["query"]["p99_ms"] for r in done], "x--",
                color="C2", alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel=f"catalogue size (items, dim {DIM})",
           ylabel="ms per query (solid p50, dashed p99)",
           title="Search: top-K cost vs catalogue size, 1 thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def encoder_kind(metrics: dict[str, float]) -> str:
    """What the shipped encoder is, from the manifest's metrics.

    Example:
        >>> encoder_kind({"search_test_ndcg@10": 0.4}), encoder_kind({})
        ('fine-tuned', 'pretrained or unknown (no search_test_* metrics)')
    """
    return ("fine-tuned" if "search_test_ndcg@10" in metrics
            else "pretrained or unknown (no search_test_* metrics)")


def run(artifact: Path, public_key: Path, checkpoint: Path | None = None,
        parts: Sequence[str] = PARTS, sizes: Sequence[int] = SIZES,
        bm25_sizes: Sequence[int] = BM25_SIZES, load_procs: int = 2,
        rounds: int = 1) -> dict[str, Any]:
    """Verify the artifact once, then measure the asked ``parts``."""
    from export.verify import verify_artifact
    from serving.search import has_search

    manifest = verify_artifact(artifact, public_key)
    if not has_search(manifest):
        raise SystemExit(f"{artifact}: the artifact carries no search model (no io.search in "
                         "its manifest); build one with `python -m export build --search`")
    metrics = {k: v for k, v in manifest.metrics.items() if k.startswith("search_")}
    out: dict[str, Any] = {"artifact": str(artifact), "version": manifest.version,
                           "encoder": encoder_kind(metrics), "n_items": manifest.io["n_items"],
                           "cpus": len(os.sched_getaffinity(0)),
                           "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    encoder: dict[str, Any] | None = None
    if "encoder" in parts or "quality" in parts:
        encoder = run_encoder(artifact, manifest, load_procs if "encoder" in parts else 0,
                              rounds=rounds if "encoder" in parts else 1)
        if "encoder" in parts:
            out["encoder_latency"] = encoder
    if "quality" in parts and encoder is not None:
        fresh = {"bm25": encoder["variants"]["fp32"]["bm25_quality"],
                 **{v: r["quality"] for v, r in encoder["variants"].items()}}
        out["quality"] = {"manifest": metrics, "fresh": fresh}
    if "scaling" in parts:
        out["scaling"] = run_scaling(sizes, bm25_sizes)
    if "blend" in parts:
        if checkpoint is None:
            out["blend"] = {"skipped": "pass --checkpoint (the training checkpoint) for "
                                       "held-out items"}
        else:
            _say("personalisation blend: every held-out user × weights × query kinds")
            out["blend"] = spawn([(measure_blend, (artifact, public_key, checkpoint))],
                                 timeout_s=1800)[0]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    from export.keys import public_key_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True,
                        help="artifact directory that carries search/")
    parser.add_argument("--public-key", type=Path, default=None,
                        help="public key that signed it (default: the local signing key's)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="training checkpoint (sequences.npz) for the blend part")
    parser.add_argument("--out", type=Path, default=Path("runs/figures/search"))
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="catalogue sizes of the top-K scaling")
    parser.add_argument("--bm25-sizes", default=",".join(map(str, BM25_SIZES)))
    parser.add_argument("--load-procs", type=int, default=2,
                        help="processes ranking at once for the under-load figure (0: none)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="encoder rounds, fp32 and int8 alternating (ratios: median)")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; expected some of {list(PARTS)}")
    result = run(args.artifact, args.public_key or public_key_path(), args.checkpoint, parts,
                 [int(s) for s in args.sizes.split(",") if s],
                 [int(s) for s in args.bm25_sizes.split(",") if s], args.load_procs,
                 args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    if "scaling" in result:
        result["plot"] = str(plot_scaling(result["scaling"], args.out / "search_scaling.png"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
