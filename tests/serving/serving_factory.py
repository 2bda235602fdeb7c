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
