"""Raw interaction files sealed at rest: seal a data directory in place, read any file in memory.

A sealed file keeps its name (``events.parquet`` stays ``events.parquet``) and is recognised by
its header (``security.sealed.MAGIC``), so every reader of raw data calls ``read_data`` and
gets the plaintext bytes whether the file is sealed or not; nothing decrypted is written back
to disk. The key is ``security.paths.data_key_path()`` unless one is passed.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "events.csv").write_text("user_id,item_id,timestamp\\nu1,i1,1\\n")
    >>> key = b"k" * 32
    >>> [p.name for p in seal_data_dir(d, key)], seal_data_dir(d, key)
    (['events.csv'], [])
    >>> read_data(d / "events.csv", key)[:7], is_sealed_file(d / "events.csv")
    (b'user_id', True)
"""

from __future__ import annotations

import os
from pathlib import Path

from security.errors import SealedDataError
from security.keyfiles import ensure_secret, read_secret
from security.paths import data_key_path
from security.sealed import MAGIC, is_sealed, unseal, write_sealed

__all__ = ["RAW_SUFFIXES", "data_key", "is_sealed_file", "read_data", "seal_data_dir"]

#: Files ``seal_data_dir`` seals: what the training loaders read (events, items, queries, RecBole
#: atomic files); metadata such as the generator's ``meta.json`` holds no user data and stays.
RAW_SUFFIXES = frozenset({".csv", ".tsv", ".parquet", ".pq", ".inter", ".item", ".user"})


def data_key(path: str | os.PathLike[str] | None = None, *, create: bool = False
             ) -> bytes | None:
    """The raw-data key in ``path`` (default ``data_key_path()``); None when there is none and
    ``create`` is false (KeyFileError when the file exists but is malformed)."""
    p = Path(path) if path is not None else data_key_path()
    if create:
        return ensure_secret(p).key
    return read_secret(p).key if p.exists() else None


def is_sealed_file(path: str | os.PathLike[str]) -> bool:
    """True when the file at ``path`` starts with the sealed header."""
    with open(path, "rb") as fh:
        return is_sealed(fh.read(len(MAGIC)))


def read_data(path: str | os.PathLike[str], key: bytes | None = None) -> bytes:
    """The plaintext of a raw data file, decrypted in memory when sealed.

    ``key`` defaults to the data key file, read only when the file is sealed. A sealed file
    without any key, under another key, or changed after sealing is a SealedDataError naming it.
    """
    p = Path(path)
    blob = p.read_bytes()
    if not is_sealed(blob):
        return blob
    if key is None:
        key = data_key()
    if key is None:
        raise SealedDataError(f"{p}: sealed, and no data key: expected one at {data_key_path()}"
                              "; set RECDRILL_DATA_KEY to the key the data was sealed with")
    return unseal(blob, key, source=str(p))


def seal_data_dir(directory: str | os.PathLike[str], key: bytes) -> list[Path]:
    """Seal every raw data file under ``directory`` in place; returns the files sealed now.

    Each file is replaced atomically (temp file, fsync, rename) by its sealed form under the
    same name; files already sealed and files that are not raw data (``RAW_SUFFIXES``) are
    left as they are, so running it again seals only what was added since.
    """
    root = Path(directory)
    if not root.is_dir():
        raise SealedDataError(f"{root}: expected a data directory, found none")
    sealed = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.suffix.lower() not in RAW_SUFFIXES or path.name.startswith("."):
            continue
        data = path.read_bytes()
        if is_sealed(data):
            continue
        write_sealed(path, data, key)
        sealed.append(path)
    return sealed
