"""Read interactions into one canonical table, whatever the source format.

Canonical interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (float64),
``event_type`` (str, "interaction" when the source has none). Canonical items: ``item_id``,
``title``, ``category`` (all str). Every problem raises :class:`DataError` naming the file,
the column and the 1-based data row.

Files sealed at rest (``security.datadir.seal_data_dir``) are read transparently: decrypted in
memory with the data key (``data_key`` or the default key file), never written out in clear.
``RawDataset.sealed`` lists the files that were decrypted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from security.datadir import is_sealed_file, read_data
from security.errors import SecurityError
from training.errors import DataError

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "event_type")
ITEM_COLUMNS = ("item_id", "title", "category")


@dataclass(frozen=True)
class ColumnMapping:
    """Which source columns hold the canonical fields.

    Example:
        >>> ColumnMapping(user="uid", item="sku", timestamp="ts", event_type="action").user
        'uid'
    """

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    event_type: str | None = None


@dataclass(frozen=True)
class RawDataset:
    """Interactions plus an optional item table, as read from disk."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    source: str
    sealed: tuple[str, ...] = ()  # files decrypted in memory to read them


def _open(path: Path, key: bytes | None) -> tuple[Path | io.BytesIO, bool]:
    """What pandas should read for ``path``: the path when clear, the plaintext in memory when
    sealed; and whether it was sealed."""
    if not path.exists():
        raise DataError(str(path), None, None, "file not found")
    if path.stat().st_size == 0:
        raise DataError(str(path), None, None, "the file is empty; expected a header and rows")
    try:
        if not is_sealed_file(path):
            return path, False
        return io.BytesIO(read_data(path, key)), True
    except SecurityError as exc:
        raise DataError(str(path), None, None, f"cannot be decrypted: {exc}") from exc
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot be read: {exc}") from exc


def read_raw_table(path: Path, *, data_key: bytes | None = None, keep_default_na: bool = True,
                   columns: list[str] | None = None, sealed: list[str] | None = None
                   ) -> pd.DataFrame:
    """One raw data file as a frame, by suffix: Parquet, or text (tab-separated for ``.tsv``
    and RecBole atomic files, else comma; UTF-8, else single-byte) read as strings.

    A sealed file is decrypted in memory with ``data_key`` (default: the data key file) and
    its path appended to ``sealed``. Every failure is a DataError naming the file.
    """
    source, was_sealed = _open(path, data_key)
    if was_sealed and sealed is not None:
        sealed.append(str(path))
    try:
        if path.suffix in (".parquet", ".pq"):
            return pd.read_parquet(source, columns=columns)
        sep = "\t" if path.suffix in (".tsv", ".inter", ".item", ".user") else ","
        try:
            frame = pd.read_csv(source, sep=sep, dtype=str, keep_default_na=keep_default_na,
                                encoding="utf-8")
        except UnicodeDecodeError:
            if isinstance(source, io.BytesIO):
                source.seek(0)
            frame = pd.read_csv(source, sep=sep, dtype=str, keep_default_na=keep_default_na,
                                encoding="latin-1")
        return frame if columns is None else frame[columns]
    except (ValueError, OSError, KeyError, pd.errors.ParserError) as exc:
        raise DataError(str(path), None, None, f"cannot be parsed: {exc}") from exc


def _read_frame(path: Path, key: bytes | None = None, sealed: list[str] | None = None
                ) -> pd.DataFrame:
    return read_raw_table(path, data_key=key, sealed=sealed)


def _numeric_timestamps(frame: pd.DataFrame, column: str, file: str) -> pd.Series:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(file, column, row + 1, f"expected a number, found {raw.iloc[row]!r}")
    return values.astype("float64")


def _as_id(series: pd.Series) -> pd.Series:
    out = series.astype("string")
    return out.where(out.str.strip() != "", other=pd.NA)


def canonical_interactions(frame: pd.DataFrame, mapping: ColumnMapping, file: str) -> pd.DataFrame:
    """Map and type-check a source frame into the canonical interaction columns."""
    wanted = [mapping.user, mapping.item, mapping.timestamp]
    if mapping.event_type:
        wanted.append(mapping.event_type)
    for column in wanted:
        if column not in frame.columns:
            raise DataError(file, column, None,
                            f"column is missing; found columns {list(frame.columns)}")
    if len(frame) == 0:
        raise DataError(file, None, None, "no data rows; expected at least one interaction")
    out = pd.DataFrame({
        "user_id": _as_id(frame[mapping.user]),
        "item_id": _as_id(frame[mapping.item]),
        "timestamp": _numeric_timestamps(frame, mapping.timestamp, file),
    })
    if mapping.event_type:
        out["event_type"] = frame[mapping.event_type].astype("string").fillna("interaction")
    else:
        out["event_type"] = pd.Series("interaction", index=out.index, dtype="string")
    return out


def load_table(path: str | Path, mapping: ColumnMapping | None = None,
               items_path: str | Path | None = None, *, data_key: bytes | None = None
               ) -> RawDataset:
    """Load interactions from a CSV / TSV / Parquet file with a column mapping; sealed files
    are opened with ``data_key`` (default: the data key file).

    Example:
        >>> load_table("events.parquet", ColumnMapping(event_type="event_type"))  # doctest: +SKIP
    """
    path, sealed = Path(path), list[str]()
    inter = canonical_interactions(_read_frame(path, data_key, sealed),
                                   mapping or ColumnMapping(), str(path))
    items = _load_items(Path(items_path), data_key, sealed) if items_path else _empty_items()
    return RawDataset(inter, items, str(path), tuple(sealed))


def _atomic_name(column: str) -> str:
    return column.split(":", 1)[0]


def load_atomic(directory: str | Path, *, data_key: bytes | None = None) -> RawDataset:
    """Load a RecBole atomic dataset directory (``<name>.inter`` and optional ``<name>.item``)."""
    directory, sealed = Path(directory), list[str]()
    inters = sorted(directory.glob("*.inter"))
    if not inters:
        raise DataError(str(directory), None, None, "no *.inter file; expected RecBole atomic files")
    frame = _read_frame(inters[0], data_key, sealed)
    frame.columns = [_atomic_name(c) for c in frame.columns]
    inter = canonical_interactions(frame, ColumnMapping(), str(inters[0]))
    item_files = sorted(directory.glob("*.item"))
    items = _load_items(item_files[0], data_key, sealed) if item_files else _empty_items()
    return RawDataset(inter, items, str(directory), tuple(sealed))


def _empty_items() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="string") for c in ITEM_COLUMNS})


def _pick(columns: list[str], *candidates: str) -> str | None:
    for cand in candidates:
        for col in columns:
            if cand in col.lower():
                return col
    return None


def _load_items(path: Path, key: bytes | None = None, sealed: list[str] | None = None
                ) -> pd.DataFrame:
    frame = _read_frame(path, key, sealed)
    frame.columns = [_atomic_name(c) for c in frame.columns]
    if "item_id" not in frame.columns:
        raise DataError(str(path), "item_id", None,
                        f"column is missing; found columns {list(frame.columns)}")
    cols = list(frame.columns)
    title = _pick(cols, "title", "name")
    category = _pick(cols, "category", "categories", "class", "genre")
    ids = _as_id(frame["item_id"])
    return pd.DataFrame({
        "item_id": ids,
        "title": frame[title].astype("string").fillna("") if title else ids,
        "category": frame[category].astype("string").fillna("") if category else "",
    }).dropna(subset=["item_id"]).drop_duplicates("item_id")


def load_any(path: str | Path, mapping: ColumnMapping | None = None, *,
             data_key: bytes | None = None) -> RawDataset:
    """Load a RecBole atomic directory, or a CSV/Parquet file (with ``items.parquet`` beside it);
    sealed files are opened with ``data_key`` (default: the data key file)."""
    path = Path(path)
    if path.is_dir():
        if list(path.glob("*.inter")):
            return load_atomic(path, data_key=data_key)
        events = next((p for p in (path / "events.parquet", path / "events.csv") if p.exists()), None)
        if events is None:
            raise DataError(str(path), None, None,
                            "directory holds neither *.inter nor events.parquet/events.csv")
        items = next((p for p in (path / "items.parquet", path / "items.csv") if p.exists()), None)
        return load_table(events, mapping or ColumnMapping(event_type="event_type"), items,
                          data_key=data_key)
    return load_table(path, mapping, data_key=data_key)
