"""One product-search run: data → split → BM25 / pretrained / fine-tuned on held-out queries →
paired bootstrap → search checkpoint.

Every variant ranks the whole catalog for each held-out query (exact top-10); metrics are
Recall@10 and NDCG@10 with binary relevance (:mod:`retrieval.metrics`), overall and per query
kind. "Fine-tuned beats X" is claimed only when the 95% paired-bootstrap interval of the
per-query NDCG@10 difference lies above zero (:func:`training.stats.paired_bootstrap`).

Example:
    >>> report = run_search("ml-100k", Path("runs/search"), FinetuneConfig(seed=42))  # doctest: +SKIP
    >>> report.metrics["test"]["finetuned"]["ndcg@10"] > report.metrics["test"]["bm25"]["ndcg@10"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from retrieval.bm25 import BM25Index
from retrieval.metrics import per_query_ndcg, per_query_recall
from retrieval.topk import exact_search
from training.errors import DataError
from training.search_data import (
    SearchQuery,
    SearchSplit,
    load_search_data,
    split_queries,
)
from training.search_model import (
    BASE_NAME,
    Encoder,
    FinetuneConfig,
    config_dict,
    finetune,
    load_encoder,
    save_search_checkpoint,
)
from training.stats import paired_bootstrap

__all__ = ["VARIANTS", "K", "SearchReport", "evaluate_rankings", "rank_bm25", "rank_dense",
           "render_search_table", "run_search"]

K = 10
VARIANTS = ("bm25", "pretrained", "finetuned")
_SAVE_RESERVE_S, _MIN_FINETUNE_S = 5.0, 10.0
Ranker = Callable[[Sequence[str]], list[list[int]]]


def rank_bm25(index: BM25Index, texts: Sequence[str], k: int = K) -> list[list[int]]:
    """BM25's top-``k`` item positions for each query (shorter where fewer items match)."""
    return [index.search(t, k)[0].tolist() for t in texts]


def rank_dense(encoder: Encoder, item_emb: np.ndarray, texts: Sequence[str], max_tokens: int,
               k: int = K) -> list[list[int]]:
    """Exact top-``k`` item positions by cosine similarity for each query."""
    if not texts:
        return []
    idx, _ = exact_search(encoder.encode(texts, max_tokens), item_emb, k)
    ranked: list[list[int]] = idx.tolist()
    return ranked


@dataclass(frozen=True)
class Evaluation:
    """Per-query Recall@K / NDCG@K of one variant on one split, with each query's kind."""

    recall: np.ndarray
    ndcg: np.ndarray
    kinds: tuple[str, ...]

    def summary(self) -> dict[str, float]:
        return {f"recall@{K}": float(self.recall.mean()), f"ndcg@{K}": float(self.ndcg.mean())}

    def by_kind(self) -> dict[str, dict[str, float]]:
        kinds = np.array(self.kinds)
        return {kind: {f"recall@{K}": float(self.recall[kinds == kind].mean()),
                       f"ndcg@{K}": float(self.ndcg[kinds == kind].mean()),
                       "queries": int((kinds == kind).sum())}
                for kind in sorted(set(self.kinds))}


def evaluate_rankings(ranked: Sequence[Sequence[int]], relevant: Sequence[set[int]],
                      kinds: Sequence[str]) -> Evaluation:
    """Per-query metrics at :data:`K`.

    Example:
        >>> e = evaluate_rankings([[0, 1], [2]], [{1}, {0}], ["title", "typo"])
        >>> e.summary()["recall@10"], e.by_kind()["typo"]["ndcg@10"]
        (0.5, 0.0)
    """
    return Evaluation(per_query_recall(ranked, relevant, K), per_query_ndcg(ranked, relevant, K),
                      tuple(kinds))


@dataclass
class SearchReport:
    """Held-out results of the three variants, how sure the comparison is, and what it cost."""

    dataset: str
    n_items: int
    n_queries: dict[str, int]
    results: dict[str, dict[str, Evaluation]]  # split -> variant -> evaluation
    comparisons: dict[str, dict[str, Any]]
    finetune: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        return {split: {v: e.summary() for v, e in by_variant.items()}
                for split, by_variant in self.results.items()}

    def beats_baselines(self) -> bool:
        """Fine-tuned ahead of both baselines on test NDCG@10 (bootstrap interval above 0)."""
        return all(c["beats"] for c in self.comparisons.values())

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "n_items": self.n_items, "n_queries": self.n_queries,
                "metrics": self.metrics,
                "test_by_kind": {v: e.by_kind() for v, e in self.results["test"].items()},
                "vs_baselines": self.comparisons, "beats_baselines": self.beats_baselines(),
                "finetune": {k: v for k, v in self.finetune.items() if k != "history"},
                "seconds": self.seconds}


def _evaluate_split(rank: Ranker, queries: Sequence[SearchQuery],
                    relevant: Sequence[set[int]]) -> Evaluation:
    return evaluate_rankings(rank([q.text for q in queries]), relevant, [q.kind for q in queries])


def _evaluate_dense(encoder: Encoder, item_emb: np.ndarray, queries: Sequence[SearchQuery],
                    relevant: Sequence[set[int]], config: FinetuneConfig) -> Evaluation:
    return _evaluate_split(
        lambda texts: rank_dense(encoder, item_emb, texts, config.max_query_tokens),
        queries, relevant)


def _queries_frame(split: SearchSplit) -> pd.DataFrame:
    rows = [(q.text, side, list(q.relevant), q.kind)
            for side, qs in (("validation", split.validation), ("test", split.test)) for q in qs]
    return pd.DataFrame(rows, columns=["query", "split", "relevant", "kind"])


def run_search(source: str, out_dir: Path, config: FinetuneConfig | None = None,
               progress: bool = True) -> SearchReport:
    """Evaluate BM25 and the pretrained encoder, fine-tune, evaluate it, write the checkpoint.

    ``config.seed`` seeds the query generator (ml-100k), the split and the fine-tuning;
    ``config.max_time_s`` bounds the whole run (fine-tuning stops early enough to finish
    the test evaluation and the checkpoint within it).
    """
    config = config or FinetuneConfig()
    started = clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 1)
        clock = now

    data = load_search_data(source, config.seed)
    split = split_queries(data.queries, config.seed)
    sides = {"validation": split.validation, "test": split.test}
    if not split.train or not split.validation or not split.test:
        raise DataError(source, None, None, f"too few queries to split: {split.sizes()}; "
                        "generate more (a larger synthetic dataset)")
    relevant = {s: data.relevant_positions(qs) for s, qs in sides.items()}
    lap("data")
    results: dict[str, dict[str, Evaluation]] = {s: {} for s in sides}
    index = BM25Index.build(data.item_texts)
    for s, qs in sides.items():
        results[s]["bm25"] = _evaluate_split(lambda t: rank_bm25(index, t), qs, relevant[s])
    lap("bm25")

    import torch

    torch.set_num_threads(config.threads)
    encoder = load_encoder()
    lap("load_encoder")
    item_emb = encoder.encode(data.item_texts, config.max_item_tokens)
    results["validation"]["pretrained"] = _evaluate_dense(encoder, item_emb, split.validation,
                                                          relevant["validation"], config)
    validate_s = time.perf_counter() - clock  # what one validation pass costs
    results["test"]["pretrained"] = _evaluate_dense(encoder, item_emb, split.test,
                                                    relevant["test"], config)
    lap("pretrained")
    # The epoch with the best validation NDCG is the one fine-tuning keeps (same strict rule,
    # the pretrained weights being epoch 0): keeping its item embeddings and validation
    # result saves encoding them again.
    pretrained_valid = results["validation"]["pretrained"]
    best: dict[str, Any] = {"ndcg": float(pretrained_valid.ndcg.mean()), "item_emb": item_emb,
                            "evaluation": pretrained_valid}

    def validate(enc: Encoder) -> float:
        emb = enc.encode(data.item_texts, config.max_item_tokens)
        ev = _evaluate_dense(enc, emb, split.validation, relevant["validation"], config)
        if float(ev.ndcg.mean()) > best["ndcg"]:
            best.update(ndcg=float(ev.ndcg.mean()), item_emb=emb, evaluation=ev)
        return float(ev.ndcg.mean())

    # max_time_s bounds the whole run: fine-tuning gets what the rest leaves (the final test
    # pass costs about what the pretrained one did; saving a few seconds), but never less
    # than a floor: a tiny cap still yields a checkpoint, a little late.
    budget_s = max(config.max_time_s - (time.perf_counter() - started) - seconds["pretrained"]
                   - _SAVE_RESERVE_S, _MIN_FINETUNE_S)
    train_rel = data.relevant_positions(split.train)
    tuned = finetune(encoder, [q.text for q in split.train], [sorted(r) for r in train_rel],
                     data.item_texts, replace(config, max_time_s=budget_s), validate, progress,
                     validate_s, initial_valid=best["ndcg"])
    lap("finetune")
    results["validation"]["finetuned"] = best["evaluation"]
    results["test"]["finetuned"] = _evaluate_dense(encoder, best["item_emb"], split.test,
                                                   relevant["test"], config)
    lap("finetuned_test")

    comparisons = {}
    for baseline in ("bm25", "pretrained"):
        boot = paired_bootstrap(results["test"]["finetuned"].ndcg, results["test"][baseline].ndcg,
                                seed=config.seed).as_dict()
        boot["queries"] = boot.pop("users")
        comparisons[baseline] = boot
    report = SearchReport(source if source == "ml-100k" else Path(source).name,
                          len(data.item_ids), split.sizes(), results, comparisons,
                          {**tuned.summary(), "budget_s": round(budget_s, 1)}, seconds)
    meta = {"base": BASE_NAME, "dataset": report.dataset, "seed": config.seed,
            "max_query_tokens": config.max_query_tokens,
            "max_item_tokens": config.max_item_tokens, "pooling": "mean", "normalized": True,
            "config": config_dict(config), "metrics": report.metrics,
            "n_queries": report.n_queries, "n_items": report.n_items,
            "test_by_kind": report.as_dict()["test_by_kind"], "vs_baselines": comparisons,
            "finetune": {**tuned.summary(), "budget_s": round(budget_s, 1)}}
    save_search_checkpoint(out_dir, encoder, meta, _queries_frame(split))
    lap("save")
    seconds["total"] = round(sum(seconds.values()), 1)
    return report


def render_search_table(report: SearchReport, console: Console | None = None) -> None:
    """Print the held-out test table (overall and per query kind) to stderr."""
    table = Table(title=f"{report.dataset}: product search, {report.n_queries['test']} held-out "
                        f"test queries, full ranking over {report.n_items} items")
    table.add_column("queries", justify="left")
    for variant in VARIANTS:
        table.add_column(f"{variant} R@{K}", justify="right")
        table.add_column(f"{variant} NDCG@{K}", justify="right")
    test = report.results["test"]
    rows = {"all": {v: test[v].summary() for v in VARIANTS}}
    kinds = {v: test[v].by_kind() for v in VARIANTS}
    for kind in kinds["bm25"]:
        rows[f"{kind} ({kinds['bm25'][kind]['queries']})"] = {v: kinds[v][kind] for v in VARIANTS}
    for name, by_variant in rows.items():
        table.add_row(name, *(f"{by_variant[v][m]:.4f}" for v in VARIANTS
                              for m in (f"recall@{K}", f"ndcg@{K}")))
    console = console or Console(stderr=True, width=140)
    console.print(table)
    for baseline, boot in report.comparisons.items():
        verdict = "ahead" if boot["beats"] else "not ahead"
        console.print(f"finetuned − {baseline}, NDCG@{K}: {boot['mean_diff']:+.4f} "
                      f"({boot['level']:.0%} CI {boot['ci_low']:+.4f} to {boot['ci_high']:+.4f}; "
                      f"paired bootstrap over {boot['queries']:,} queries): {verdict}",
                      highlight=False, soft_wrap=True)
