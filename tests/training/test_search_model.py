"""The search encoder: real all-MiniLM-L6-v2, tiny fine-tune, checkpoint round trip."""

from __future__ import annotations

import doctest
import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from training.errors import ConfigError, DataError
from training.search_model import (
    CHECKPOINT_FORMAT,
    Encoder,
    FinetuneConfig,
    FinetuneResult,
    finetune,
    info_nce_loss,
    load_encoder,
    load_search_checkpoint,
    save_search_checkpoint,
)

ITEMS = ["Toy Story (Animation Children's Comedy)", "Heat (Action Crime Thriller)",
         "Alien (Action Horror Sci-Fi Thriller)", "Fargo (Crime Drama Thriller)",
         "Casablanca (Drama Romance War)", "Babe (Children's Comedy Drama)"]
QUERIES = ["cartoon for kids", "bank robbery shootout", "monster on a spaceship",
           "snowy kidnapping noir", "wartime love story", "talking pig"]
CONFIG = FinetuneConfig(batch_size=6, lr=1e-4, warmup_steps=1, max_epochs=4, seed=0, threads=1)


@pytest.mark.parametrize("module", ["training.search_model", "training.search_train"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _loss(enc: Encoder) -> float:
    enc.model.eval()
    with torch.no_grad():
        q, d = enc.embed(QUERIES, 32), enc.embed(ITEMS, 64)
        return info_nce_loss(q, d, torch.zeros(6, 6, dtype=torch.bool), 0.05).item()


@pytest.fixture(scope="module")
def tuned() -> Iterator[tuple[Encoder, float, FinetuneResult]]:
    torch.set_num_threads(1)
    enc = load_encoder()
    before = _loss(enc)
    result = finetune(enc, QUERIES, [[i] for i in range(6)], ITEMS, CONFIG, progress=False)
    yield enc, before, result


def test_encode_gives_unit_rows_in_input_order(tuned: tuple[Encoder, float, FinetuneResult]
                                               ) -> None:
    enc = tuned[0]
    emb = enc.encode(ITEMS, 64, batch=4)
    assert emb.dtype == np.float32 and emb.shape == (6, enc.dim) == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode(ITEMS[::-1], 64)[::-1], emb, atol=1e-5)


def test_a_few_steps_lower_the_training_loss(tuned: tuple[Encoder, float, FinetuneResult]
                                             ) -> None:
    enc, before, result = tuned
    assert result.steps == 4 and result.stopped == "max_epochs"
    assert _loss(enc) < before * 0.8


def test_weights_passed_in_are_kept_unless_an_epoch_beats_them() -> None:
    enc = load_encoder()
    before = enc.encode(ITEMS, 64)
    config = FinetuneConfig(batch_size=6, lr=1e-3, max_epochs=2, patience=2, seed=0, threads=1)
    result = finetune(enc, QUERIES, [[i] for i in range(6)], ITEMS, config,
                      validate=lambda _: 0.5, progress=False, initial_valid=0.5)
    assert result.best_epoch == 0 and result.stopped == "patience" and result.steps == 2
    np.testing.assert_array_equal(enc.encode(ITEMS, 64), before)


def test_masked_negatives_do_not_count() -> None:
    torch.manual_seed(0)
    q, d = F.normalize(torch.randn(3, 8), dim=1), F.normalize(torch.randn(3, 8), dim=1)
    ignore = torch.zeros(3, 3, dtype=torch.bool)
    ignore[0, 2] = True  # item 2 is relevant to query 0 as well
    got = F.cross_entropy((q @ d.T / 0.05)[0:1].masked_fill(ignore[0:1], float("-inf")),
                          torch.tensor([0]))
    want = F.cross_entropy((q[0:1] @ d[:2].T) / 0.05, torch.tensor([0]))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert info_nce_loss(q, d, ignore, 0.05, symmetric=False).item() < \
        info_nce_loss(q, d, torch.zeros_like(ignore), 0.05, symmetric=False).item()


def test_config_rejects_single_pair_batches() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        FinetuneConfig(batch_size=1)


def test_checkpoint_round_trips(tuned: tuple[Encoder, float, FinetuneResult],
                                tmp_path: Path) -> None:
    enc = tuned[0]
    out = tmp_path / "search"
    meta = {"base": "all-MiniLM-L6-v2", "max_query_tokens": 32, "max_item_tokens": 64}
    queries = pd.DataFrame({"query": ["talking pig"], "split": ["test"], "relevant": [["6"]]})
    save_search_checkpoint(out, enc, {"stale": True}, queries)
    save_search_checkpoint(out, enc, meta, queries)  # replaces the first one
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "vocab.txt", "special_tokens_map.json", "search_meta.json",
            "queries.parquet"} <= names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search"]  # no staging left over
    loaded, got_meta = load_search_checkpoint(out)
    assert got_meta == {"format": CHECKPOINT_FORMAT, **meta}
    texts = ITEMS + QUERIES
    np.testing.assert_allclose(loaded.encode(texts, 64), enc.encode(texts, 64), atol=1e-6)
    assert pd.read_parquet(out / "queries.parquet")["relevant"].tolist()[0].tolist() == ["6"]
    assert json.loads((out / "search_meta.json").read_text())["format"] == CHECKPOINT_FORMAT


def test_loading_a_non_checkpoint_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a search checkpoint"):
        load_search_checkpoint(tmp_path)


def test_run_search_writes_the_checkpoint_format(tmp_path: Path) -> None:
    from training.search_train import run_search
    from training.synthetic import SyntheticConfig, generate

    generate(SyntheticConfig(n_items=100, n_users=200, n_categories=6, seed=1),
             tmp_path / "syn", progress=False)
    config = FinetuneConfig(max_epochs=1, max_time_s=120, seed=3, threads=1)
    report = run_search(str(tmp_path / "syn"), tmp_path / "search", config, progress=False)
    meta = json.loads((tmp_path / "search" / "search_meta.json").read_text())
    assert {k: meta[k] for k in ("format", "base", "dataset", "seed", "max_query_tokens",
                                 "max_item_tokens", "pooling", "normalized")} == {
        "format": CHECKPOINT_FORMAT, "base": "all-MiniLM-L6-v2", "dataset": "syn", "seed": 3,
        "max_query_tokens": 32, "max_item_tokens": 64, "pooling": "mean", "normalized": True}
    assert meta["config"]["temperature"] == 0.05 and meta["n_queries"] == report.n_queries
    for split in ("validation", "test"):
        assert set(meta["metrics"][split]) == {"bm25", "pretrained", "finetuned"}
        for scores in meta["metrics"][split].values():
            assert set(scores) == {"recall@10", "ndcg@10"}
            assert all(0.0 <= v <= 1.0 for v in scores.values())
    queries = pd.read_parquet(tmp_path / "search" / "queries.parquet")
    assert set(queries["split"]) == {"validation", "test"}
    assert len(queries) == report.n_queries["validation"] + report.n_queries["test"]
    assert all(len(r) >= 1 and all(isinstance(i, str) for i in r) for r in queries["relevant"])
