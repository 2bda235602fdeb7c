"""User rows in stored tables, found and removed in memory: CSV/TSV/atomic text, Parquet, npz.

Pure functions over a file's plaintext bytes, so that sealed files (opened in memory) and blobs
read from a store go through the same code as plain files. A *user column* is one whose name,
before any RecBole ``:type`` suffix, is ``user_id`` (or another name the caller gives); in an
npz, an array of strings whose name mentions ``user`` or ``pseudonym``.

Rewriting keeps everything else as it was: text files keep every other line byte for byte,
Parquet keeps its schema and codec, npz keeps its arrays and dtypes; the ragged layout of
training checkpoints and artifacts (``user_ids`` with ``flat`` + ``offsets``) loses the user's
whole sequence.

Example:
    >>> data = b"user_id:token\\titem_id:token\\n7\\ta\\n8\\tb\\n"
    >>> inspect_bytes(data, "tsv", frozenset({"7"})).rows
    1
    >>> without_users(data, "tsv", frozenset({"7"}))
    (b'user_id:token\\titem_id:token\\n8\\tb\\n', 1)
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from security.pseudonym import PREFIX, is_pseudonym

__all__ = ["DEFAULT_USER_COLUMNS", "Format", "IdForm", "TableError", "TableFacts",
           "format_of", "inspect_bytes", "without_users"]

Format = Literal["csv", "tsv", "parquet", "npz", "other"]
#: How a file holds user ids: in clear, as pseudonyms only, or not at all.
IdForm = Literal["clear", "pseudonymised", "none"]
DEFAULT_USER_COLUMNS = ("user_id",)

_SUFFIXES: dict[str, Format] = {
    ".csv": "csv", ".tsv": "tsv", ".inter": "tsv", ".user": "tsv", ".item": "tsv",
    ".parquet": "parquet", ".pq": "parquet", ".npz": "npz",
}
_SEALED_SUFFIX = ".sealed"
_PSEUDONYM_RE = f"^{PREFIX}[0-9a-f]{{32}}$"  # security.pseudonym.is_pseudonym, vectorised
_FLAT, _OFFSETS = "flat", "offsets"


class TableError(ValueError):
    """A file's bytes do not parse as the format its name says."""


@dataclass(frozen=True)
class TableFacts:
    """What one file holds: ``rows`` of the users asked about, out of ``total`` rows."""

    rows: int
    total: int
    id_form: IdForm
    user_columns: tuple[str, ...]


def format_of(name: str) -> Format:
    """The table format of a file name (a ``.sealed`` suffix is looked through).

    Example:
        >>> format_of("events.parquet.sealed"), format_of("ml-100k.inter"), format_of("x.onnx")
        ('parquet', 'tsv', 'other')
    """
    lower = name.lower().removesuffix(_SEALED_SUFFIX)
    return next((fmt for suffix, fmt in _SUFFIXES.items() if lower.endswith(suffix)), "other")


def _is_user_column(name: str, user_columns: Sequence[str]) -> bool:
    return name.split(":", 1)[0].strip().lower() in {c.lower() for c in user_columns}


def _id_form(values: Iterable[str]) -> IdForm:
    seen = [v for v in values if v]
    if not seen:
        return "none"
    return "pseudonymised" if all(is_pseudonym(v) for v in seen) else "clear"


def inspect_bytes(data: bytes, fmt: Format, ids: frozenset[str],
                  user_columns: Sequence[str] = DEFAULT_USER_COLUMNS) -> TableFacts:
    """Count the rows of ``ids`` in a file of format ``fmt``; say how it holds user ids."""
    if fmt in ("csv", "tsv"):
        header, records = _text_records(data, fmt)
        cols = [i for i, name in enumerate(header) if _is_user_column(name, user_columns)]
        values = [[r[i] if i < len(r) else "" for i in cols] for r, _ in records if r]
        return TableFacts(sum(any(v in ids for v in row) for row in values), len(values),
                          _id_form(v for row in values for v in row),
                          tuple(header[i] for i in cols))
    if fmt == "parquet":
        table = _read_parquet(data)
        names = [n for n in table.column_names if _is_user_column(n, user_columns)]
        return TableFacts(int(_parquet_mask(table, names, ids).sum()), table.num_rows,
                          _parquet_id_form(table, names), tuple(names))
    if fmt == "npz":
        arrays, _ = _read_npz(data)
        names = _npz_id_arrays(arrays)
        stored = [str(v) for n in names for v in arrays[n].tolist()]
        flags = _npz_hits(arrays, names, ids)
        return TableFacts(int(flags.sum()), len(flags), _id_form(stored), tuple(names))
    return TableFacts(0, 0, "none", ())


def without_users(data: bytes, fmt: Format, ids: frozenset[str],
                  user_columns: Sequence[str] = DEFAULT_USER_COLUMNS) -> tuple[bytes, int]:
    """``data`` without the rows of ``ids``, and how many rows went; ``data`` itself when none."""
    if fmt in ("csv", "tsv"):
        return _text_without(data, fmt, ids, user_columns)
    if fmt == "parquet":
        return _parquet_without(data, ids, user_columns)
    if fmt == "npz":
        return _npz_without(data, ids)
    return data, 0


# -- text: CSV, TSV, RecBole atomic files ---------------------------------------------------

def _decode(data: bytes) -> tuple[str, str]:
    # The loaders' rule: UTF-8 (MovieLens' atomic files are), else the legacy single-byte text.
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


_Record = tuple[list[str], str]


def _text_records(data: bytes, fmt: Format) -> tuple[list[str], list[_Record]]:
    """The header and each record with the exact text it came from (quoted newlines included)."""
    text, _ = _decode(data)
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(iter(lines), delimiter="\t" if fmt == "tsv" else ",")
    out: list[_Record] = []
    consumed = 0
    try:
        for record in reader:
            out.append((record, "".join(lines[consumed:reader.line_num])))
            consumed = reader.line_num
    except csv.Error as exc:
        raise TableError(f"line {reader.line_num}: {exc}") from exc
    return (out[0][0], out[1:]) if out else ([], [])


def _text_without(data: bytes, fmt: Format, ids: frozenset[str],
                  user_columns: Sequence[str]) -> tuple[bytes, int]:
    text, encoding = _decode(data)
    header, records = _text_records(data, fmt)
    cols = [i for i, name in enumerate(header) if _is_user_column(name, user_columns)]
    if not cols:
        return data, 0
    kept, removed = [], 0
    for record, raw in records:
        if any(i < len(record) and record[i] in ids for i in cols):
            removed += 1
        else:
            kept.append(raw)
    if not removed:
        return data, 0
    head = text[:len(text) - sum(len(raw) for _, raw in records)]
    return (head + "".join(kept)).encode(encoding), removed


# -- Parquet ------------------------------------------------------------------------------------

def _read_parquet(data: bytes):  # type: ignore[no-untyped-def]  # pyarrow ships no stubs
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"not readable as Parquet: {exc}") from exc


def _strings(table, name: str):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(name)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _parquet_mask(table, names: list[str], ids: frozenset[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """One flag per row: does a user column hold one of ``ids``? (vectorised: large tables)"""
    import pyarrow as pa
    import pyarrow.compute as pc

    hits = np.zeros(table.num_rows, dtype=bool)
    for name in names:
        found = pc.is_in(_strings(table, name), value_set=pa.array(sorted(ids), pa.string()))
        hits |= found.to_numpy(zero_copy_only=False).astype(bool)
    return hits


def _parquet_id_form(table, names: list[str]) -> IdForm:  # type: ignore[no-untyped-def]
    import pyarrow.compute as pc

    forms = set()
    for name in names:
        values = pc.drop_null(_strings(table, name))
        values = values.filter(pc.not_equal(values, ""))
        if len(values):
            shaped = pc.all(pc.match_substring_regex(values, _PSEUDONYM_RE)).as_py()
            forms.add("pseudonymised" if shaped else "clear")
    return "clear" if "clear" in forms else "pseudonymised" if forms else "none"


def _parquet_without(data: bytes, ids: frozenset[str],
                     user_columns: Sequence[str]) -> tuple[bytes, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _read_parquet(data)
    names = [n for n in table.column_names if _is_user_column(n, user_columns)]
    hits = _parquet_mask(table, names, ids)
    if not hits.any():
        return data, 0
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    codec = (meta.row_group(0).column(0).compression.lower()
             if meta.num_row_groups and meta.num_columns else "snappy")
    buf = io.BytesIO()
    pq.write_table(table.filter(pa.array(~hits)), buf, compression=codec)
    return buf.getvalue(), int(hits.sum())


# -- npz ----------------------------------------------------------------------------------------

def _read_npz(data: bytes) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays, and whether the archive was compressed."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            compressed = any(i.compress_type != zipfile.ZIP_STORED for i in archive.infolist())
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}, compressed
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise TableError(f"not readable as npz: {exc}") from exc


def _npz_id_arrays(arrays: dict[str, np.ndarray]) -> list[str]:
    return [name for name, a in arrays.items()
            if a.ndim == 1 and a.dtype.kind in "US"
            and ("user" in name.lower() or "pseudonym" in name.lower())]


def _npz_hits(arrays: dict[str, np.ndarray], names: list[str], ids: frozenset[str]
              ) -> np.ndarray:
    """One flag per user row: does any user-id array name one of ``ids`` there?"""
    n = len(arrays[names[0]]) if names else 0
    if any(len(arrays[name]) != n for name in names):
        raise TableError(f"user-id arrays {names} differ in length; expected one row per user")
    hits = np.zeros(n, dtype=bool)
    for name in names:
        hits |= np.isin(arrays[name].astype(str), sorted(ids))
    return hits


def _npz_without(data: bytes, ids: frozenset[str]) -> tuple[bytes, int]:
    arrays, compressed = _read_npz(data)
    names = _npz_id_arrays(arrays)
    hits = _npz_hits(arrays, names, ids)
    n = len(hits)
    if not hits.any():
        return data, 0
    out = dict(arrays)
    if _FLAT in arrays and _OFFSETS in arrays:
        # Ragged layout: user i's sequence is flat[bounds[i]:bounds[i + 1]].
        segments = np.split(arrays[_FLAT], arrays[_OFFSETS])
        if len(segments) != n:
            raise TableError(f"{len(segments)} sequences for {n} users in flat/offsets; "
                             "expected one sequence per user")
        kept = [s for s, hit in zip(segments, hits, strict=True) if not hit]
        lengths = np.array([len(s) for s in kept], dtype=arrays[_OFFSETS].dtype)
        out[_FLAT] = (np.concatenate(kept).astype(arrays[_FLAT].dtype, copy=False) if kept
                      else arrays[_FLAT][:0])
        out[_OFFSETS] = np.cumsum(lengths)[:-1].astype(arrays[_OFFSETS].dtype, copy=False)
    for name, array in arrays.items():
        if name not in (_FLAT, _OFFSETS) and array.ndim >= 1 and len(array) == n:
            out[name] = array[~hits]
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, **out)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    return buf.getvalue(), int(hits.sum())
