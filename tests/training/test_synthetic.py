"""Unit tests of the synthetic e-commerce generator (small configs, a few seconds in all)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from training import synthetic
from training.synthetic import (
    EVENT_TYPES,
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    QUERIES_SCHEMA,
    SyntheticConfig,
    generate,
)

SMALL = SyntheticConfig(n_items=2_000, n_users=1_500, n_categories=40, seed=11, chunk_users=400)
FILES = ("items.parquet", "events.parquet", "queries.parquet", "meta.json")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(SMALL, out, progress=False)
    return out


@pytest.fixture(scope="module")
def events(dataset: Path) -> pd.DataFrame:
    return pd.read_parquet(dataset / "events.parquet")


def test_public_surface() -> None:
    assert sorted(synthetic.__all__) == sorted([
        "EVENTS_FILE", "EVENTS_SCHEMA", "EVENT_TYPES", "FORMAT", "ITEMS_FILE", "ITEMS_SCHEMA",
        "META_FILE", "QUERIES_FILE", "QUERIES_SCHEMA", "SyntheticConfig", "SyntheticSummary",
        "generate",
    ])


def test_same_seed_gives_byte_identical_files(dataset: Path, tmp_path: Path) -> None:
    summary = generate(SMALL, tmp_path, progress=False)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (dataset / name).read_bytes(), name
    assert summary.n_events == pq.ParquetFile(dataset / "events.parquet").metadata.num_rows


def test_other_seed_gives_other_data(dataset: Path, tmp_path: Path) -> None:
    generate(SyntheticConfig(**{**SMALL.to_dict(), "seed": 12}), tmp_path, progress=False)
    assert (tmp_path / "events.parquet").read_bytes() != (dataset / "events.parquet").read_bytes()


def test_schemas_and_meta_counts(dataset: Path) -> None:
    schemas = {"items.parquet": ITEMS_SCHEMA, "events.parquet": EVENTS_SCHEMA,
               "queries.parquet": QUERIES_SCHEMA}
    for name, schema in schemas.items():
        assert pq.read_schema(dataset / name).remove_metadata().equals(schema), name
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["format"] == "recdrill-synthetic/1"
    assert meta["config"] == SMALL.to_dict()
    counts = meta["counts"]
    assert counts["items"] == pq.ParquetFile(dataset / "items.parquet").metadata.num_rows == 2_000
    assert counts["events"] == pq.ParquetFile(dataset / "events.parquet").metadata.num_rows
    assert counts["queries"] == pq.ParquetFile(dataset / "queries.parquet").metadata.num_rows
    assert sum(counts["events_by_type"].values()) == counts["events"]
    # One row group per chunk of users: the stream never held more than a chunk.
    assert pq.ParquetFile(dataset / "events.parquet").num_row_groups == 1_500 // 400 + 1
    assert not [p.name for p in dataset.iterdir() if p.name not in FILES]  # no temp files left


def test_items_table(dataset: Path) -> None:
    items = pd.read_parquet(dataset / "items.parquet")
    assert items.item_id.is_unique and items.item_id.str.fullmatch(r"i\d{7}").all()
    assert sorted(items.popularity_rank) == list(range(1, 2_001))
    assert (items.price > 0).all()
    assert items.category.nunique() == 40
    nouns = items.category.str.split("/").str[1]
    assert all(noun in title for noun, title in zip(nouns, items.title, strict=True))
    assert items.title.str.split().str.len().min() >= 4  # brand, adjective, colour, noun


def test_event_values(events: pd.DataFrame, dataset: Path) -> None:
    items = set(pd.read_parquet(dataset / "items.parquet").item_id)
    assert set(events.item_id) <= items
    assert set(events.event_type) <= set(EVENT_TYPES)
    assert events.user_id.str.fullmatch(r"u\d{7}").all()
    assert events.user_id.nunique() == 1_500
    assert abs(len(events) / SMALL.expected_events - 1) < 0.1


def test_timestamps_increase_within_each_user(events: pd.DataFrame) -> None:
    assert events.user_id.is_monotonic_increasing  # grouped by user, users in order
    same_user = events.user_id.eq(events.user_id.shift())
    assert (events.timestamp.diff()[same_user] > 0).all()
    assert (events.session_id.diff()[same_user] >= 0).all()
    assert not (events.session_id.diff()[~same_user].iloc[1:] <= 0).any()  # ids never reused


def test_funnel_order_within_a_session(events: pd.DataFrame) -> None:
    step = events.event_type.map({name: k for k, name in enumerate(EVENT_TYPES)})
    prev = events.shift()
    later = step > 0
    # Every click / cart / buy directly follows the previous funnel step of the same item.
    assert (step.shift()[later] == step[later] - 1).all()
    for column in ("user_id", "item_id", "session_id"):
        assert (prev[column][later] == events[column][later]).all(), column
    assert (step.value_counts().sort_index().diff().dropna() < 0).all()  # a narrowing funnel


def test_popularity_is_zipf_skewed(events: pd.DataFrame, dataset: Path) -> None:
    items = pd.read_parquet(dataset / "items.parquet")
    top = set(items.nsmallest(len(items) // 100, "popularity_rank").item_id)
    share = events.item_id.isin(top).mean()
    assert share > 0.25, f"top 1% of items got {share:.1%} of events; Zipf skew expected"


def test_next_item_is_predictable_beyond_popularity(events: pd.DataFrame) -> None:
    views = events.loc[events.event_type == "view", ["user_id", "item_id"]].copy()
    views["prev"] = views.groupby("user_id").item_id.shift()
    last = views.groupby("user_id").tail(1).dropna()
    train = views.drop(last.index).dropna()
    popular = set(train.item_id.value_counts().index[:10])
    pairs = train.groupby(["prev", "item_id"]).size().rename("n").reset_index()
    top = pairs.sort_values(["prev", "n"], ascending=[True, False]).groupby("prev").head(10)
    hits = last.merge(top, on=["prev", "item_id"], how="left").n.notna().mean()
    assert hits > 1.5 * last.item_id.isin(popular).mean()


def test_queries_reference_existing_items_and_users(dataset: Path, events: pd.DataFrame) -> None:
    queries = pd.read_parquet(dataset / "queries.parquet")
    items = pd.read_parquet(dataset / "items.parquet").set_index("item_id")
    assert len(queries) > 100
    assert set(queries.item_id) <= set(items.index)
    users = set(events.user_id)
    assert queries.user_id.map(lambda u: u == "" or u in users).all()
    assert 0 < (queries.user_id == "").mean() < 0.5
    assert (queries["query"].str.strip() == queries["query"]).all()
    assert not queries["query"].str.contains("  ").any()
    # Each query names the item's kind, by its noun or a synonym the title lacks.
    nouns = items.category.loc[queries.item_id].str.split("/").str[1].to_numpy()
    in_title = [noun in q for noun, q in zip(nouns, queries["query"], strict=True)]
    assert 0.2 < np.mean(in_title) < 0.9


def test_interrupted_run_leaves_no_meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate(SMALL, tmp_path, progress=False)
    calls = []

    def failing_chunk(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("disk on fire")
        return real_chunk(*args, **kwargs)

    real_chunk = synthetic.generate_chunk
    monkeypatch.setattr(synthetic, "generate_chunk", failing_chunk)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate(SMALL, tmp_path, progress=False)
    assert not (tmp_path / "meta.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES[:3])  # temps removed


def test_single_item_categories_and_one_user(tmp_path: Path) -> None:
    config = SyntheticConfig(n_items=5, n_users=1, n_categories=5, seed=0,
                             events_per_user_mean=3.0)
    summary = generate(config, tmp_path, progress=False)
    assert summary.n_users == 1 and summary.n_events >= 1 and summary.n_items == 5


@pytest.mark.parametrize("changes", [
    {"n_items": 0}, {"n_users": -1}, {"n_categories": 0}, {"n_items": 10, "n_categories": 11},
    {"zipf_a": 0.0}, {"zipf_a": float("nan")}, {"drift_prob": 1.5}, {"neighbour_prob": -0.1},
    {"chunk_users": 0}, {"seed": -1}, {"events_per_user_mean": 1.0}, {"n_items": 10.5},
    {"n_users": True}, {"interactions_per_session_mean": 0.5}, {"session_gap_mean_s": 0},
])
def test_bad_config_raises(changes: dict[str, object]) -> None:
    name = next(iter(changes))
    with pytest.raises(ValueError, match=name):
        SyntheticConfig(**changes)  # type: ignore[arg-type]
