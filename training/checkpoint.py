"""The torch checkpoint that joins training/ to export/: weights, configs, data and metrics.

Layout of a checkpoint directory::

    model.pt         state_dict of :class:`~training.model.SASRec`
    meta.json        model/train/clean configs, n_items, metrics, data source
    items.parquet    index (1..N), item_id, title, category
    sequences.npz    every user's full chronological sequence (flat + offsets) and user ids

Each file is written atomically; ``meta.json`` last, so a directory without it is incomplete.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from durable import atomic_write_bytes, atomic_write_text
from training.clean import SequenceData
from training.errors import DataError
from training.model import ModelConfig, SASRec

CHECKPOINT_FORMAT = "recdrill-checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    """Everything export/ needs from a finished training run."""

    model: SASRec
    data: SequenceData
    items: pd.DataFrame
    meta: dict[str, Any]


def item_table(data: SequenceData, items: pd.DataFrame) -> pd.DataFrame:
    """Item rows in index order (1..N), with titles and categories where the source had them."""
    table = pd.DataFrame({"index": np.arange(1, data.n_items + 1, dtype=np.int64),
                          "item_id": list(data.item_ids)})
    if len(items):
        table = table.merge(items[["item_id", "title", "category"]].astype(str),
                            on="item_id", how="left")
    for column in ("title", "category"):
        if column not in table:
            table[column] = ""
    table["title"] = table["title"].fillna(table["item_id"])
    table["category"] = table["category"].fillna("")
    return table[["index", "item_id", "title", "category"]]


def save_checkpoint(directory: Path, model: SASRec, data: SequenceData, items: pd.DataFrame,
                    meta: dict[str, Any]) -> Path:
    """Write a checkpoint directory; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").unlink(missing_ok=True)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(directory / "model.pt", buf.getvalue())
    buf = io.BytesIO()
    item_table(data, items).to_parquet(buf, index=False)
    atomic_write_bytes(directory / "items.parquet", buf.getvalue())
    buf = io.BytesIO()
    lengths = np.array([len(s) for s in data.sequences], dtype=np.int64)
    np.savez(buf, flat=np.concatenate(data.sequences), offsets=np.cumsum(lengths)[:-1],
             user_ids=np.array(data.user_ids, dtype=str))
    atomic_write_bytes(directory / "sequences.npz", buf.getvalue())
    full_meta = {"format": CHECKPOINT_FORMAT, "n_items": data.n_items, **meta}
    atomic_write_text(directory / "meta.json", json.dumps(full_meta, indent=2, sort_keys=True))
    return directory


def load_checkpoint(directory: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        raise DataError(str(meta_path), None, None,
                        "missing: the checkpoint is incomplete; run `recdrill train` again")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(str(meta_path), "format", None,
                        f"expected {CHECKPOINT_FORMAT!r}, found {meta.get('format')!r}")
    items = pd.read_parquet(directory / "items.parquet")
    with np.load(directory / "sequences.npz", allow_pickle=False) as npz:
        seqs = tuple(np.split(npz["flat"], npz["offsets"]))
        user_ids = tuple(npz["user_ids"].tolist())
    data = SequenceData(item_ids=tuple(items["item_id"].astype(str)), user_ids=user_ids,
                        sequences=seqs)
    model = SASRec(data.n_items, ModelConfig(**meta["config"]["model"]))
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
    model.eval()
    return Checkpoint(model, data, items, meta)
