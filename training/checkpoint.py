"""The torch checkpoint that joins training/ to export/: weights, configs, data and metrics.

Layout of a checkpoint directory::

    model.pt         state_dict of :class:`~training.model.SASRec`
    meta.json        model/train/clean configs, n_items, metrics, data source
    items.parquet    index (1..N), item_id, title, category
    sequences.npz    every user's full chronological sequence (flat + offsets) and user ids

Each file is written atomically; ``meta.json`` last, so a directory without it is incomplete.
The checkpoint is in the private training zone and keeps clear user ids; with a seal key,
``sequences.npz`` (the only file holding them) is sealed at rest under the same name
(``security.sealed``, AES-256-GCM) and ``meta.json`` lists it under ``sealed``. Readers open it
in memory, transparently (``read_sequences``).
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
from security.datadir import read_data
from security.errors import SecurityError
from security.sealed import write_sealed
from training.clean import SequenceData
from training.errors import DataError
from training.model import ModelConfig, SASRec

CHECKPOINT_FORMAT = "recdrill-checkpoint/1"
SEQUENCES_FILE = "sequences.npz"


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
                    meta: dict[str, Any], *, seal_key: bytes | None = None) -> Path:
    """Write a checkpoint directory; returns it. With ``seal_key``, the user ids
    (``sequences.npz``) are sealed at rest."""
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
    if seal_key is None:
        atomic_write_bytes(directory / SEQUENCES_FILE, buf.getvalue())
    else:
        write_sealed(directory / SEQUENCES_FILE, buf.getvalue(), seal_key)
    full_meta = {"format": CHECKPOINT_FORMAT, "n_items": data.n_items,
                 "sealed": [SEQUENCES_FILE] if seal_key is not None else [], **meta}
    atomic_write_text(directory / "meta.json", json.dumps(full_meta, indent=2, sort_keys=True))
    return directory


def read_sequences(directory: Path, data_key: bytes | None = None
                   ) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """User ids and full sequences of a checkpoint, opened in memory when sealed (``data_key``
    or the data key file); DataError naming the file when it cannot be opened."""
    path = directory / SEQUENCES_FILE
    try:
        blob = read_data(path, data_key)
    except SecurityError as exc:
        raise DataError(str(path), None, None, f"cannot be decrypted: {exc}") from exc
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot be read: {exc}") from exc
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return tuple(npz["user_ids"].tolist()), tuple(np.split(npz["flat"], npz["offsets"]))


def load_checkpoint(directory: Path, data_key: bytes | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (sealed files with ``data_key``,
    default: the data key file)."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        raise DataError(str(meta_path), None, None,
                        "missing: the checkpoint is incomplete; run `recdrill train` again")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(str(meta_path), "format", None,
                        f"expected {CHECKPOINT_FORMAT!r}, found {meta.get('format')!r}")
    items = pd.read_parquet(directory / "items.parquet")
    user_ids, seqs = read_sequences(directory, data_key)
    data = SequenceData(item_ids=tuple(items["item_id"].astype(str)), user_ids=user_ids,
                        sequences=seqs)
    model = SASRec(data.n_items, ModelConfig(**meta["config"]["model"]))
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
    model.eval()
    return Checkpoint(model, data, items, meta)
