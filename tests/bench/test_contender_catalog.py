"""Baselines answer through serving's own Catalog (no second catalog class in bench/)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.contenders.catalog import answer, left_pad_one, load_catalog, top_k
from export.manifest import build_manifest, write_manifest
from serving.catalog import Catalog
from serving.errors import InvalidRequest
from serving.schemas import RecommendRequest

IO = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}],
      "outputs": [{"name": "scores", "dtype": "float32", "shape": ["batch", 3]}],
      "max_seq_len": 4, "n_items": 3}


def _artifact(root: Path) -> Path:
    root.mkdir()
    items = pd.DataFrame({"index": [1, 2, 3], "item_id": ["a", "b", "c"], "title": list("ABC")})
    buf = io.BytesIO()
    items.to_parquet(buf, index=False)
    (root / "items.parquet").write_bytes(buf.getvalue())
    with open(root / "histories.npz", "wb") as fh:
        np.savez(fh, user_ids=np.array(["u"]), flat=np.array([2]), offsets=np.array([], int))
    with open(root / "fallback.npz", "wb") as fh:
        np.savez(fh, popular=np.array([1, 2, 3]), covisit=np.full((4, 1), -1))
    write_manifest(root, build_manifest(root, version="v7", kind="sequential-recommender",
                                        io=IO, metrics={}))
    return root


def test_answers_in_the_serving_contract(tmp_path: Path) -> None:
    catalog = load_catalog(_artifact(tmp_path / "art"))
    assert isinstance(catalog, Catalog) and (catalog.version, catalog.max_seq_len) == ("v7", 4)
    query = catalog.resolve(RecommendRequest(user_id="u", k=2))
    body = answer(catalog, np.array([0.1, 0.9, 0.5], dtype=np.float32), query, "r")
    assert [i["item_id"] for i in body["items"]] == ["c", "a"]
    assert (body["model_version"], body["degraded"], body["replica"]) == ("v7", False, "r")
    assert catalog.resolve(RecommendRequest(history=["c", "a"])).seq.tolist() == [3, 1]
    with pytest.raises(InvalidRequest, match="unknown"):
        catalog.resolve(RecommendRequest(user_id="nobody"))
    assert left_pad_one(np.arange(1, 7), 4).tolist() == [[3, 4, 5, 6]]
    assert top_k(np.array([3.0, 2.0, 1.0]), None, 5).tolist() == [1, 2, 3]
