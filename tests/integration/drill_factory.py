"""A tiny signed artifact plus its checkpoint (held-out items) for drill tests (~3 s)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DrillFiles:
    artifact: Path
    checkpoint: Path
    private_key: Path
    public_key: Path


def build_drill_files(root: Path, n_items: int = 30, n_users: int = 60,
                      search: Path | None = None) -> DrillFiles:
    """Sign an untrained SASRec over ``n_items`` items; 10 of 30 items per answer gives a
    non-zero NDCG@10 baseline even untrained. With ``search`` (a search checkpoint), the
    artifact also carries product search, and item titles come from ``PRODUCTS``."""
    import pandas as pd
    import torch

    from export.package import package_recommender
    from export.signing import generate_signing_key
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.clean import SequenceData
    from training.model import ModelConfig, SASRec

    rng = np.random.default_rng(0)
    seqs = tuple(rng.integers(1, n_items + 1, size=int(rng.integers(4, 12)))
                 for _ in range(n_users))
    data = SequenceData(tuple(f"i{i}" for i in range(n_items)),
                        tuple(f"u{u}" for u in range(n_users)), seqs)
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_seq_len=10)
    model = SASRec(n_items, config).eval()
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "title": [f"Title {i}" for i in range(n_items)],
                          "category": ["c"] * n_items})
    if search is not None:
        from serving_factory import PRODUCTS

        items["title"] = [p[0].title() for p in PRODUCTS[:n_items]]
        items["category"] = [p[1] for p in PRODUCTS[:n_items]]
    root.mkdir(parents=True, exist_ok=True)
    ckpt = save_checkpoint(root / "checkpoint", model, data, items, {"metrics": {}, "config": {"model": asdict(config)}})
    keys = root / "keys"
    keys.mkdir(exist_ok=True)
    generate_signing_key(keys / "k", keys / "k.pub")
    package_recommender(load_checkpoint(ckpt), root / "artifacts" / "v1", keys / "k",
                        keys / "k.pub", version="v1", quantize=False, search=search)
    return DrillFiles(root / "artifacts" / "v1", ckpt, keys / "k", keys / "k.pub")
