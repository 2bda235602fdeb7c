"""Pure parts of the product-search bench (``bench.search_bench``): percentiles, timing
loops, held-out target metrics, the personalisation query maker, synthetic catalogues.

Example:
    >>> summarize([1.0, 2.0, 3.0])["p50_ms"]
    2.0
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

K = 10
DIM = 384
QUERY_KINDS = ("genre", "category")

# -- pure parts -----------------------------------------------------------------------------

def summarize(times_ms: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99 and mean of latencies in milliseconds.

    Example:
        >>> summarize([1.0, 2.0, 3.0, 4.0])
        {'n': 4, 'p50_ms': 2.5, 'p99_ms': 3.97, 'mean_ms': 2.5}
    """
    if len(times_ms) == 0:
        raise ValueError("expected at least one latency to summarise, found none")
    values = np.asarray(times_ms, np.float64)
    return {"n": len(values), "p50_ms": round(float(np.percentile(values, 50)), 4),
            "p99_ms": round(float(np.percentile(values, 99)), 4),
            "mean_ms": round(float(values.mean()), 4)}


def per_query(summary: dict[str, float], batch: int) -> dict[str, float]:
    """A per-call summary with per-query p50/p99 added (the call's time over ``batch``).

    Example:
        >>> per_query({"n": 2, "p50_ms": 8.0, "p99_ms": 16.0, "mean_ms": 9.0}, 8)["query_p99_ms"]
        2.0
    """
    return {**summary, "query_p50_ms": round(summary["p50_ms"] / batch, 4),
            "query_p99_ms": round(summary["p99_ms"] / batch, 4)}


def timed(fn: Callable[[Any], object], inputs: Sequence[Any], warmup: int = 5) -> list[float]:
    """Milliseconds of ``fn(x)`` for each input, after ``warmup`` untimed calls."""
    for x in inputs[:warmup]:
        fn(x)
    out = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def timed_interleaved(fns: dict[str, Callable[[Any], object]], inputs: Sequence[Any],
                      warmup: int = 5) -> dict[str, list[float]]:
    """Milliseconds of each named function on each input, taking turns per input, so that
    load from other work on the machine falls on all of them alike.

    Example:
        >>> out = timed_interleaved({"a": len, "b": str}, ["x", "yy"], warmup=1)
        >>> sorted(out), [len(v) for v in out.values()]
        (['a', 'b'], [2, 2])
    """
    for x in inputs[:warmup]:
        for fn in fns.values():
            fn(x)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for x in inputs:
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            out[name].append((time.perf_counter() - start) * 1e3)
    return out


def windows(items: Sequence[Any], size: int, count: int) -> list[list[Any]]:
    """``count`` consecutive windows of ``size`` items, wrapping around ``items``.

    Example:
        >>> windows(["a", "b", "c"], 2, 3)
        [['a', 'b'], ['c', 'a'], ['b', 'c']]
    """
    if not items:
        raise ValueError("expected items to cut windows from, found none")
    return [[items[(w * size + j) % len(items)] for j in range(size)] for w in range(count)]


def target_metrics(ranked: Sequence[Sequence[int]], targets: Sequence[int],
                   k: int = K) -> dict[str, float]:
    """HR@k and NDCG@k of one held-out item per ranking (1/log2(rank + 2) when found).

    Example:
        >>> target_metrics([[5, 7], [1, 2]], [7, 9])
        {'hr@10': 0.5, 'ndcg@10': 0.3155, 'users': 2}
    """
    gains = []
    for rank, target in zip(ranked, targets, strict=True):
        top = list(rank)[:k]
        gains.append(1.0 / math.log2(top.index(target) + 2) if target in top else 0.0)
    hits = [g > 0 for g in gains]
    return {f"hr@{k}": round(float(np.mean(hits)), 4) if hits else 0.0,
            f"ndcg@{k}": round(float(np.mean(gains)), 4) if gains else 0.0,
            "users": len(gains)}


def personal_query(category: str, kind: str = "genre") -> str:
    """The query a user looking for more of an item would type: its first genre word
    (``genre``) or its whole category (``category``); a path category keeps its last part.

    Example:
        >>> personal_query("Animation Children's Comedy")
        'animation'
        >>> personal_query("Sci-Fi War", "category"), personal_query("shoes/trainers")
        ('sci-fi war', 'trainers')
    """
    if kind not in QUERY_KINDS:
        raise ValueError(f"expected a query kind in {QUERY_KINDS}, found {kind!r}")
    text = str(category).strip().rsplit("/", 1)[-1].lower()
    parts = text.split()
    if not parts:
        return ""
    return parts[0] if kind == "genre" else " ".join(parts)


def best_weight(rows: Sequence[dict[str, Any]], metric: str = "ndcg@10") -> float:
    """The blend weight of the row with the highest ``metric`` (the smaller weight on ties).

    Example:
        >>> best_weight([{"weight": 0.0, "ndcg@10": 0.1}, {"weight": 0.1, "ndcg@10": 0.3}])
        0.1
    """
    return float(max(rows, key=lambda r: (r[metric], -r["weight"]))["weight"])


def unit_vectors(rng: np.random.Generator, n: int, dim: int,
                 chunk: int = 65_536) -> np.ndarray:
    """``n`` random L2-normalised float32 rows, normalised in chunks (no full-size temporary).

    Example:
        >>> v = unit_vectors(np.random.default_rng(0), 5, 3)
        >>> v.dtype.name, np.allclose(np.linalg.norm(v, axis=1), 1.0)
        ('float32', True)
    """
    out = rng.standard_normal((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        part = out[start:start + chunk]
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return out


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "po", "qua", "bri",
              "den", "fal", "gor", "hin", "jus", "mor", "nel", "tor")
_CATEGORIES = ("footwear", "apparel", "kitchen", "home", "electronics", "outdoor", "sports",
               "beauty", "toys", "garden", "pet", "books", "music", "office", "baby")


def synthetic_items(n: int, seed: int = 0, vocab: int = 20_000) -> list[str]:
    """``n`` item texts ``title (category)``: 2–6 title words drawn Zipf-like from a
    pseudo-word vocabulary, 1–2 category words; deterministic under ``seed``.

    Example:
        >>> synthetic_items(2, seed=1) == synthetic_items(2, seed=1), len(synthetic_items(3))
        (True, 3)
    """
    from retrieval import item_text

    rng = np.random.default_rng(seed)
    syl = len(_SYLLABLES)
    words = [_SYLLABLES[i % syl] + _SYLLABLES[(i // syl) % syl] + _SYLLABLES[(i // syl**2) % syl]
             + (str(i // syl**3) if i >= syl**3 else "") for i in range(vocab)]
    ranks = np.minimum(rng.zipf(1.2, size=n * 6), vocab) - 1
    lengths = rng.integers(2, 7, size=n)
    first = rng.integers(0, len(_CATEGORIES), size=n)
    second = (first + rng.integers(1, len(_CATEGORIES), size=n)) % len(_CATEGORIES)
    two = rng.random(n) < 0.3
    out, pos = [], 0
    for i in range(n):
        title = " ".join(words[r] for r in ranks[pos:pos + lengths[i]])
        pos += int(lengths[i])
        category = _CATEGORIES[first[i]] + (f" {_CATEGORIES[second[i]]}" if two[i] else "")
        out.append(item_text(title, category))
    return out


def synthetic_queries(texts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` two-word queries: a title word of a random item and its category word.

    Example:
        >>> synthetic_queries(["kalo (toys)"], 1)
        ['kalo toys']
    """
    from retrieval import words

    rng = np.random.default_rng(seed + 1)
    out = []
    for row in rng.integers(0, len(texts), size=n):
        tokens = words(texts[int(row)])
        out.append(f"{tokens[int(rng.integers(0, max(1, len(tokens) - 1)))]} {tokens[-1]}")
    return out


def scaling_repeats(n_items: int, batch: int) -> int:
    """Timed calls for one catalogue size and batch: about 3·10^8 item-queries, 20–300 calls.

    Example:
        >>> scaling_repeats(10_000, 1), scaling_repeats(1_000_000, 32)
        (300, 20)
    """
    return int(min(300, max(20, 3e8 // (n_items * batch))))


def bm25_estimate_s(last: dict[str, Any], n_items: int, margin: float = 1.3) -> float:
    """Seconds to generate and index ``n_items`` texts, extrapolated linearly from the last
    size measured, with a ``margin``.

    Example:
        >>> bm25_estimate_s({"n_items": 1000, "build_s": 1.0, "generate_s": 0.0}, 10_000, 1.0)
        10.0
    """
    return float((last["build_s"] + last["generate_s"]) * n_items / last["n_items"] * margin)


# -- measurements (each runs in a spawned child) --------------------------------------------

