"""Search data: generated queries are valid, the split holds out intents, all deterministic."""

from __future__ import annotations

import doctest
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from training import search_data
from training.cli import app
from training.errors import DataError
from training.search_data import (
    MAX_RELEVANT,
    SearchQuery,
    load_search_data,
    movielens_items,
    movielens_queries,
    normalize_query,
    split_queries,
    synthetic_queries,
)
from training.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def ml_items(ml100k_dir: Path) -> pd.DataFrame:
    return movielens_items(ml100k_dir)


@pytest.fixture(scope="module")
def ml_queries(ml_items: pd.DataFrame) -> list[SearchQuery]:
    return movielens_queries(ml_items, seed=42)


def test_docstring_examples() -> None:
    result = doctest.testmod(search_data, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_movielens_item_table_has_years(ml_items: pd.DataFrame) -> None:
    assert len(ml_items) == 1682 and ml_items["item_id"].is_unique
    assert ml_items["year"].notna().mean() > 0.99
    assert ml_items.loc[ml_items["item_id"] == "1", "category"].item() == \
        "Animation Children's Comedy"


def test_movielens_queries_are_valid(ml_items: pd.DataFrame,
                                     ml_queries: list[SearchQuery]) -> None:
    ids = set(ml_items["item_id"])
    texts = [q.text for q in ml_queries]
    assert len(ml_queries) > 2000 and len(set(texts)) == len(texts)
    for q in ml_queries:
        assert q.text and q.text == normalize_query(q.text)
        assert 1 <= len(q.relevant) <= MAX_RELEVANT
        assert set(q.relevant) <= ids and list(q.relevant) == sorted(set(q.relevant))
    kinds = Counter(q.kind for q in ml_queries)
    assert set(kinds) == {"title", "partial", "typo", "title+genre", "genre", "genre+decade"}
    assert min(kinds.values()) >= 50


def test_movielens_relevance_follows_titles_and_genres(ml_items: pd.DataFrame,
                                                        ml_queries: list[SearchQuery]) -> None:
    by_id = ml_items.set_index("item_id")
    for q in ml_queries:
        if q.kind == "genre+decade":
            decades = {int(by_id.loc[i, "year"]) // 10 * 10 for i in q.relevant}
            assert len(decades) == 1, q
        if q.kind == "typo":
            titles = by_id.loc[list(q.relevant), "title"]
            assert q.text not in {" ".join(search_data._title_words(t)) for t in titles}
    toy = next(q for q in ml_queries if q.kind in ("title", "typo") and "1" in q.relevant)
    assert toy.relevant == ("1",)


def test_movielens_queries_are_deterministic(ml_items: pd.DataFrame,
                                             ml_queries: list[SearchQuery]) -> None:
    assert movielens_queries(ml_items, seed=42) == ml_queries
    assert movielens_queries(ml_items, seed=7) != ml_queries


def test_split_holds_out_intents_and_is_deterministic(ml_queries: list[SearchQuery]) -> None:
    split = split_queries(ml_queries, seed=42)
    sides = (split.train, split.validation, split.test)
    assert sum(len(s) for s in sides) == len(ml_queries)
    texts = [{q.text for q in s} for s in sides]
    intents = [{q.relevant for q in s} for s in sides]
    for a in range(3):
        for b in range(a + 1, 3):
            assert texts[a].isdisjoint(texts[b]) and intents[a].isdisjoint(intents[b])
    shares = np.array([len(s) for s in sides]) / len(ml_queries)
    assert np.allclose(shares, [0.7, 0.1, 0.2], atol=0.05)
    assert split_queries(list(reversed(ml_queries)), seed=42) == split
    assert split_queries(ml_queries, seed=1).test != split.test


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="validation"):
        split_queries([SearchQuery("q", ("1",), "title")], seed=0, validation=0.5, test=0.5)


def test_synthetic_queries_widen_to_matching_items(tmp_path: Path) -> None:
    generate(SyntheticConfig(n_items=400, n_users=300, n_categories=10, seed=3), tmp_path,
             progress=False)
    data = load_search_data(str(tmp_path), seed=0)
    items = pd.read_parquet(tmp_path / "items.parquet").set_index("item_id")
    log = pd.read_parquet(tmp_path / "queries.parquet")
    assert data.queries and len(data.item_texts) == 400
    logged = log.assign(query=log["query"].map(normalize_query)).groupby("query")["item_id"].agg(set)
    for q in data.queries:
        assert logged[q.text] <= set(q.relevant)
        assert len({items.loc[i, "category"] for i in q.relevant}) == 1
    assert {q.kind for q in data.queries} == {"verbatim", "synonym"}


def test_synthetic_queries_reject_unknown_items() -> None:
    items = pd.DataFrame({"item_id": ["a"], "title": ["red boots"], "category": ["x/boots"]})
    with pytest.raises(DataError, match="'zz'"):
        synthetic_queries(items, pd.DataFrame({"query": ["boots"], "item_id": ["zz"]}))


def test_cli_search_bad_data_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["search", "--data", str(tmp_path / "nope"),
                                      "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 2
    assert "error:" in result.output and "items.parquet" in result.output
    assert not (tmp_path / "out").exists()
